"""The clients against the real broker: round trip, version, and a broker that is down."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest
from kafka import KafkaAdminClient, TopicPartition

from churnstream.contract.events import encode_event, utc_now_iso
from churnstream.errors import BrokerUnavailable
from churnstream.kafka.clients import make_admin, make_consumer, make_producer
from churnstream.kafka.group import group_offsets
from churnstream.kafka.reading import dating_options, first_records
from churnstream.kafka.topics import (
    DEADLETTER_MAX_MESSAGE_BYTES,
    broker_version,
    ensure_topics,
    topic_max_message_bytes,
)
from churnstream.observability.lag import LagProbe, LagTracker
from churnstream.settings import Settings, settings_from
from tests.helpers import free_port, make_rows, telco_contract, telco_event

pytestmark = pytest.mark.integration


def test_the_broker_is_apache_kafka_4_3(admin: KafkaAdminClient) -> None:
    assert broker_version(admin) == "4.3"


def test_events_round_trip_through_the_real_broker(pipeline_settings: Settings) -> None:
    settings = pipeline_settings
    admin = make_admin(settings)
    try:
        assert ensure_topics(admin, settings, [settings.topic_raw]) == [settings.topic_raw]
        assert ensure_topics(admin, settings, [settings.topic_raw]) == []  # existing: left alone
        partitions = admin.describe_topics([settings.topic_raw])[0]["partitions"]
        assert len(partitions) == settings.topic_partitions
    finally:
        admin.close()

    events = [telco_event(row, event_id=f"rt-{i}", event_ts=utc_now_iso()) for i, row in enumerate(make_rows(50))]
    producer = make_producer(settings)
    try:
        for event in events:
            producer.send(settings.topic_raw, key=event["customerID"].encode(), value=encode_event(event))
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumer = make_consumer(
        settings, settings.topic_raw, group_id=settings.consumer_group, auto_offset_reset="earliest"
    )
    received = {}
    deadline = time.monotonic() + 30
    try:
        while len(received) < len(events) and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    valid = telco_contract().decode(record.value)
                    assert record.key == valid.key.encode()
                    received[valid.event_id] = valid
    finally:
        consumer.close()
    assert sorted(received) == sorted(e["event_id"] for e in events)


def test_whoever_creates_the_dead_letter_topic_gives_it_room_for_a_full_raw_value(
    pipeline_settings: Settings,
) -> None:
    """--verify-only, the harness and the producer create topics through ensure_topics, not only the
    consumer: a dead-letter topic created with the broker's 1 MB default could not hold a raw
    value near 1 MB plus its headers, and the consumer would stop on it at every restart."""
    settings = pipeline_settings
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw, settings.topic_predictions, settings.topic_deadletter])
        assert topic_max_message_bytes(admin, settings.topic_deadletter) == DEADLETTER_MAX_MESSAGE_BYTES
        assert topic_max_message_bytes(admin, settings.topic_raw) < DEADLETTER_MAX_MESSAGE_BYTES  # broker default
    finally:
        admin.close()


def test_a_broker_that_is_down_is_one_line_within_ten_seconds() -> None:
    port = free_port()
    settings = settings_from({"KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}"})
    start = time.monotonic()
    with pytest.raises(BrokerUnavailable) as caught:
        make_admin(settings)
    assert time.monotonic() - start < 10
    assert str(caught.value) == (
        f"no Kafka broker answers at localhost:{port} (KAFKA_BOOTSTRAP_SERVERS); start the local broker "
        "with 'make kafka-up', or point KAFKA_BOOTSTRAP_SERVERS at your cluster"
    )


def test_the_lag_probe_dates_a_backlog_older_than_the_consumer(pipeline_settings: Settings) -> None:
    """The probe's own clients on a partition an hour behind, whose first records were aborted: the
    oldest waiting record is the first committed one, and the lag in seconds is its age, an hour
    (the end-offset table alone would say seconds: it only knows since it first looked)."""
    settings = replace(pipeline_settings, topic_partitions=1)
    tp = TopicPartition(settings.topic_raw, 0)
    admin = make_admin(settings)
    aborting = make_producer(settings, client_id="lag-abort", transactional_id=f"{settings.consumer_group}-abort")
    producer = make_producer(settings, client_id="lag-backlog")
    dater = make_consumer(settings, client_id="lag-dater", **dating_options())
    hour_ago_ms = int((time.time() - 3600) * 1000)
    try:
        ensure_topics(admin, settings, [settings.topic_raw])
        aborting.init_transactions()
        aborting.begin_transaction()
        aborting.send(settings.topic_raw, value=b"aborted", partition=0, timestamp_ms=hour_ago_ms - 60_000)
        aborting.flush()
        aborting.abort_transaction()  # offsets 0 (aborted) and 1 (its marker)
        for index in range(3):
            producer.send(settings.topic_raw, value=b"waiting", partition=0, timestamp_ms=hour_ago_ms + index)
        producer.flush()
        assert first_records(dater, {tp: 0}) == {tp: (2, hour_ago_ms)}
        assert first_records(dater, {tp: 5}, timeout_s=0.5) == {}  # nothing there yet: left out, in time

        lag = LagTracker()
        lag.assigned([tp], now=time.monotonic())
        group = settings.consumer_group  # no offsets yet: it would start from the first
        probe = LagProbe(
            lag,
            lambda tps: group_offsets(admin, group, tps),
            lambda offsets: first_records(dater, offsets),
            interval_s=0.0,  # dates at once (else from when the table says a record waited one interval)
        )
        probe.once()
        [reading] = lag.readings(time.monotonic())
        assert reading.records == 5
        assert reading.seconds == pytest.approx(3600, abs=30)
    finally:
        for client in (aborting, producer):
            client.close(timeout=5)
        dater.close()
        admin.close()

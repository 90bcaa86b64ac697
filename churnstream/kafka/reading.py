"""Read topics from their beginning to the end offsets seen at the start: the one way everything does it.

The harness reads the raw topic to account for every record, replay reads the dead letters and its
ledger, the tests read outputs. :func:`read_to_end` streams the records (nothing is held in memory
here) and stops at a deadline with a clear error instead of spinning through an outage.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_consumer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.settings import Settings

READ_TIMEOUT_S = 120.0
POLL_TIMEOUT_MS = 500
# How long a committed read waits for transactions that are committed but whose markers the broker has not
# written yet (commit_transaction returns before it writes them): see stable_end_offsets.
SETTLE_S = 5.0
SETTLE_POLL_S = 0.05


def read_to_end(
    settings: Settings,
    topics: str | Iterable[str],
    *,
    client_id: str = "churn-reader",
    committed_only: bool = True,
    timeout_s: float = READ_TIMEOUT_S,
    **consumer_options: Any,
) -> Iterator[ConsumerRecord]:
    """Every record of ``topics`` up to the end offsets seen now, partition by partition as polled.

    ``committed_only`` reads with ``read_committed`` (what a downstream reader sees); the end
    offsets are then the last stable offsets. Raises PipelineError when the end is not reached
    within ``timeout_s`` (a broker gone mid-read), instead of waiting for good.
    """
    names = [topics] if isinstance(topics, str) else list(topics)
    consumer = make_consumer(
        settings,
        client_id=client_id,
        enable_auto_commit=False,
        isolation_level="read_committed" if committed_only else "read_uncommitted",
        **consumer_options,
    )
    try:
        with kafka_errors_translated(settings):
            partitions = [
                TopicPartition(name, p) for name in names for p in sorted(consumer.partitions_for_topic(name) or ())
            ]
            if not partitions:
                return
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = (
                stable_end_offsets(settings, consumer, partitions)
                if committed_only
                else consumer.end_offsets(partitions)
            )
            deadline = time.monotonic() + timeout_s
            remaining = {tp for tp in partitions if ends[tp] > 0}
            while remaining:
                if time.monotonic() > deadline:
                    raise PipelineError(
                        f"could not read {', '.join(names)} to its end within {timeout_s:.0f} s "
                        f"(is the broker at {settings.bootstrap_servers} still there?)"
                    )
                for batch in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                    yield from batch
                remaining = {tp for tp in remaining if (consumer.position(tp) or 0) < ends[tp]}
    finally:
        consumer.close()


def stable_end_offsets(
    settings: Settings, consumer: KafkaConsumer, partitions: list[TopicPartition], settle_s: float = SETTLE_S
) -> dict[TopicPartition, int]:
    """The last stable offsets of ``partitions``, once they have caught up with the high watermarks seen
    now, or after ``settle_s``, whichever comes first.

    A producer's ``commit_transaction`` returns when the coordinator has logged the commit; the markers
    that make the records readable under ``read_committed`` are written to each partition after that. A
    reader that asks for the end right after a commit (a test after the consumer exits, the harness after
    a run) could see the end before that commit's records and stop short of them: a batch that looked lost.
    Records past the high watermark seen now are not waited for; an open transaction of a running writer
    costs at most ``settle_s`` once per read.
    """
    ends = consumer.end_offsets(partitions)
    watcher = make_consumer(settings, client_id="churn-reader-watermarks", isolation_level="read_uncommitted")
    try:
        high = watcher.end_offsets(partitions)
    finally:
        watcher.close()
    deadline = time.monotonic() + settle_s
    while any(ends[tp] < high[tp] for tp in partitions) and time.monotonic() < deadline:
        time.sleep(SETTLE_POLL_S)  # a wait for the broker's markers, not a retry: each call succeeded
        ends = consumer.end_offsets(partitions)
    return ends


def read_all(settings: Settings, topics: str | Iterable[str], **options: Any) -> list[ConsumerRecord]:
    """:func:`read_to_end` into a list, in (topic, partition, offset) order: for tests and small topics."""
    records = list(read_to_end(settings, topics, **options))
    return sorted(records, key=lambda r: (r.topic, r.partition, r.offset))

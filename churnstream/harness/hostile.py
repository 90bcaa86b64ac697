"""Hostile records that other clients can write and badinput's producer cannot (issue 19): records
with a header key that is not UTF-8, with as many headers as the raw topic's limit allows, and
batches compressed by librdkafka. The hostile-record tests and the fault suite write them from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kafka.record.default_records import DefaultRecordBatchBuilder

from churnstream.contract.wire import RawHeaderKey
from churnstream.settings import Settings

CODECS = ("none", "gzip", "snappy", "lz4", "zstd")  # what librdkafka and the Java clients offer
ODD_HEADER_KEY = RawHeaderKey(b"\xff\xfe")  # kcat's: kafka-python's producer writes a key's encode()


def worst_case_header_count(limit: int, value: bytes = b"{}") -> int:
    """The most headers (empty name, empty value) one record with ``value`` carries under a topic's
    max.message.bytes: each costs 2 bytes in the record, and 12 as a ``dl.header.`` copy."""
    count = (limit - len(value) - 82) // 2
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(None, value, [("", b"")] * count) > limit:
        count -= 1
    return count


def librdkafka_send(
    settings: Settings, codec: str, records: Sequence[tuple[bytes | None, bytes]], partition: int = 0
) -> list[int]:
    """Send ``records`` with librdkafka (confluent-kafka, a dev dependency) compressed with ``codec``,
    in one batch when they fit; returns their offsets."""
    from confluent_kafka import Producer  # noqa: PLC0415 - a dev dependency, for tests and the fault suite

    producer = Producer({"bootstrap.servers": settings.bootstrap_servers, "compression.type": codec, "linger.ms": 200})
    offsets: list[int] = []
    failures: list[Any] = []

    def done(error: Any, message: Any) -> None:
        if error is not None:
            failures.append(error)
        else:
            offsets.append(message.offset())

    for key, value in records:
        producer.produce(settings.topic_raw, value, key, partition, on_delivery=done)
    pending = producer.flush(30)
    if pending or failures:
        raise RuntimeError(f"librdkafka could not deliver {pending} record(s): {failures[:3]}")
    return offsets

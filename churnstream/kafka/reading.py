"""Read topics from their beginning to the end offsets seen at the start: the one way everything does it.

The harness reads the raw topic to account for every record, replay reads the dead letters and its
ledger, the tests read outputs. :func:`read_to_end` streams the records (nothing is held in memory
here), can report how far it has come, and stops with a clear error when it makes no progress for
a while (a broker gone mid-read) instead of spinning through an outage; a topic of any length is
read to its end as long as it keeps moving.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.consumer.fetcher import ConsumerRecord

from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_consumer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.settings import Settings

READ_STALL_S = 120.0  # no record read and no position moved for this long: the broker is gone
READ_TIMEOUT_S = 120.0  # a total bound, for a caller that wants one (churn-model compare's --timeout-s)
POLL_TIMEOUT_MS = 500
# How long a committed read waits for transactions that are committed but whose markers the broker has not
# written yet (commit_transaction returns before it writes them): see stable_end_offsets.
SETTLE_S = 5.0
SETTLE_POLL_S = 0.05

# (offsets read so far, offsets to read in all), summed over the partitions, after each poll.
ReadProgress = Callable[[int, int], None]


def read_to_end(
    settings: Settings,
    topics: str | Iterable[str],
    *,
    client_id: str = "churn-reader",
    committed_only: bool = True,
    stall_s: float = READ_STALL_S,
    timeout_s: float | None = None,
    on_progress: ReadProgress | None = None,
    **consumer_options: Any,
) -> Iterator[ConsumerRecord]:
    """Every record of ``topics`` up to the end offsets seen now, partition by partition as polled.

    ``committed_only`` reads with ``read_committed`` (what a downstream reader sees); the end
    offsets are then the last stable offsets. Raises PipelineError when no partition moves for
    ``stall_s`` (a broker gone mid-read), or, when a ``timeout_s`` is given, when the end is not
    reached within it. ``on_progress`` hears how far the read has come after every poll.
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
            starts = consumer.beginning_offsets(partitions)
            ends = (
                stable_end_offsets(settings, consumer, partitions)
                if committed_only
                else consumer.end_offsets(partitions)
            )
            remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
            read_to = {tp: starts[tp] for tp in remaining}  # how far each partition has been read
            total = sum(ends[tp] - starts[tp] for tp in remaining)
            started = moved = time.monotonic()
            done = 0
            while remaining:
                now = time.monotonic()
                if now - moved > stall_s:
                    raise PipelineError(
                        f"reading {', '.join(names)} made no progress for {stall_s:.0f} s, at {done} of {total} "
                        f"records (is the broker at {settings.bootstrap_servers} still there?)"
                    )
                if timeout_s is not None and now - started > timeout_s:
                    raise PipelineError(
                        f"could not read {', '.join(names)} to its end within {timeout_s:.0f} s "
                        f"(is the broker at {settings.bootstrap_servers} still there?)"
                    )
                for batch in consumer.poll(timeout_ms=POLL_TIMEOUT_MS).values():
                    yield from batch
                for tp in remaining:
                    read_to[tp] = max(read_to[tp], min(consumer.position(tp) or 0, ends[tp]))
                now_done = sum(read_to[tp] - starts[tp] for tp in read_to)
                if now_done > done:
                    done, moved = now_done, time.monotonic()
                if on_progress is not None:
                    on_progress(done, total)
                remaining = {tp for tp in remaining if read_to[tp] < ends[tp]}
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


# The lag probe's fetch of the oldest waiting records: small, and bounded in time.
DATING_FETCH_BYTES = 64 * 1024  # per partition; the broker still returns a whole first batch (KIP-74)
DATING_TIMEOUT_S = 2.0


def dating_options() -> dict[str, Any]:
    """The options of the consumer :func:`first_records` reads with (no group; read_committed, as the
    pipeline's consumer reads; an offset gone to retention reads from the first one left)."""
    return {
        "enable_auto_commit": False,
        "isolation_level": "read_committed",
        "auto_offset_reset": "earliest",
        "max_partition_fetch_bytes": DATING_FETCH_BYTES,
        "fetch_max_bytes": 4 * DATING_FETCH_BYTES,
        "fetch_max_wait_ms": 100,
    }


def first_records(
    consumer: KafkaConsumer, offsets: Mapping[TopicPartition, int], timeout_s: float = DATING_TIMEOUT_S
) -> dict[TopicPartition, tuple[int, int]]:
    """The first record at or after each offset, as (its offset, its timestamp in ms): transaction
    markers and aborted records are skipped, as the pipeline's consumer skips them. ``consumer`` is
    the caller's own (:func:`dating_options`), used by one thread. A partition with nothing there
    within ``timeout_s`` is left out."""
    partitions = list(offsets)
    consumer.assign(partitions)
    consumer.resume(*partitions)
    for tp, offset in offsets.items():
        consumer.seek(tp, offset)
    found: dict[TopicPartition, tuple[int, int]] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < len(partitions) and (left_ms := int((deadline - time.monotonic()) * 1000)) > 0:
        for tp, records in consumer.poll(timeout_ms=min(left_ms, POLL_TIMEOUT_MS)).items():
            dated = [record for record in records if record.timestamp >= 0]
            if tp not in found and dated:
                found[tp] = (dated[0].offset, dated[0].timestamp)
                consumer.pause(tp)  # no more fetches for it
    return found

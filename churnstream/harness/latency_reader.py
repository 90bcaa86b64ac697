"""The harness's latency reader: its own process, a tight poll, a timestamp on receipt, nothing else.

``python -m churnstream.harness.latency_reader --topic T [--topic T2] --out FILE`` assigns every
partition of the topics from their beginning (``read_committed``, no group), then polls in a tight
loop that returns as soon as one record is there (``fetch_min_bytes`` 1, a short
``fetch_max_wait_ms``, few records per poll). When a poll returns it takes ``time.time()`` and
appends each record's raw bytes with that time to FILE (``churnstream.harness.receipts``). It
decodes nothing: the harness does, afterwards. Writes go out in one ``os.write`` at most every
``--write-every-ms`` or when a poll comes back empty, so a receipt waits for no disk.

It is a process of its own so that nothing of the harness (its other threads, its garbage, its
accounting) shares its interpreter lock: a thread in the harness more than doubled the p99 it
reported (issue 14). It writes FILE.ready once its partitions are positioned, and stops on
SIGTERM, writing what it holds. It is started by the harness (``churnstream.harness.readers``),
not a command for users; ``--help`` lists its options.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from kafka import KafkaConsumer, TopicPartition

from churnstream.errors import PipelineError
from churnstream.harness.receipts import MAGIC, pack
from churnstream.kafka.clients import make_consumer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.lifecycle import StopFlag
from churnstream.settings import load_settings

logger = logging.getLogger(__name__)

DEFAULT_FETCH_MAX_WAIT_MS = 5  # an empty fetch comes back this often: the reader's own worst added wait
DEFAULT_MAX_POLL_RECORDS = 50
DEFAULT_WRITE_EVERY_MS = 100  # the harness sees progress this often (it waits for every outcome)
POLL_TIMEOUT_MS = 100  # how often an idle loop looks at the stop flag
READY_SUFFIX = ".ready"


def ready_path(out: Path) -> Path:
    return out.with_name(out.name + READY_SUFFIX)


def reader_options(fetch_max_wait_ms: int, max_poll_records: int) -> dict[str, object]:
    """The client settings that make a poll return the moment one record is there."""
    return {
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "fetch_min_bytes": 1,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "max_poll_records": max_poll_records,
    }


def assign_from_beginning(consumer: KafkaConsumer, topics: Sequence[str]) -> list[TopicPartition]:
    """Every partition of ``topics``, positioned at its start before the first record is timed."""
    partitions: list[TopicPartition] = []
    for topic in topics:
        ids = consumer.partitions_for_topic(topic)  # the harness created the topics before starting us
        if not ids:
            raise PipelineError(f"topic {topic} does not exist (the harness creates it first)")
        partitions += [TopicPartition(topic, p) for p in sorted(ids)]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    for tp in partitions:
        consumer.position(tp)  # resolves the reset now, not during the first timed poll
    return partitions


def read_loop(
    consumer: KafkaConsumer, topic_index: dict[str, int], out_fd: int, stop: StopFlag, write_every_s: float
) -> int:
    """The hot loop. Returns how many records it received."""
    pending: list[bytes] = []
    received_total = 0
    last_write = time.monotonic()
    poll = consumer.poll
    while not stop.is_set():
        polled = poll(timeout_ms=POLL_TIMEOUT_MS)
        received_s = time.time()
        for tp, records in polled.items():
            index = topic_index[tp.topic]
            pending += [pack(received_s, index, record) for record in records]
            received_total += len(records)
        if pending and (not polled or time.monotonic() - last_write >= write_every_s):
            os.write(out_fd, b"".join(pending))
            pending.clear()
            last_write = time.monotonic()
    if pending:
        os.write(out_fd, b"".join(pending))
    return received_total


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m churnstream.harness.latency_reader",
        description="The harness's latency reader: timestamps each record on receipt, writes its raw bytes.",
    )
    parser.add_argument("--topic", action="append", required=True, help="a topic to read (repeatable)")
    parser.add_argument("--out", type=Path, required=True, help="the receipts file to write")
    parser.add_argument(
        "--fetch-max-wait-ms", type=int, default=DEFAULT_FETCH_MAX_WAIT_MS, help="(default %(default)s)"
    )
    parser.add_argument("--max-poll-records", type=int, default=DEFAULT_MAX_POLL_RECORDS, help="(default %(default)s)")
    parser.add_argument(
        "--write-every-ms", type=int, default=DEFAULT_WRITE_EVERY_MS, help="longest hold of receipts in memory"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    stop = StopFlag()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set(signal.Signals(signum).name)  # async-signal-safe: lifecycle.StopFlag says why

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    settings = load_settings()
    try:
        consumer = make_consumer(
            settings,
            client_id="churn-harness-latency-reader",
            **reader_options(args.fetch_max_wait_ms, args.max_poll_records),
        )
    except PipelineError as exc:
        logger.error("%s", exc)
        return 1
    out_fd = os.open(args.out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
    try:
        os.write(out_fd, MAGIC)
        with kafka_errors_translated(settings):
            partitions = assign_from_beginning(consumer, args.topic)
        ready_path(args.out).write_text(f"{len(partitions)} partitions\n")
        logger.info("reading %s from the beginning (%d partitions)", ", ".join(args.topic), len(partitions))
        # No collector pass may stall a receipt: the loop keeps nothing, so reference counting frees it all.
        gc.collect()
        gc.freeze()
        gc.disable()
        received = read_loop(
            consumer, {topic: i for i, topic in enumerate(args.topic)}, out_fd, stop, args.write_every_ms / 1000
        )
        logger.info("stopped (%s) after %d records", stop.signal_name, received)
        return 0
    except PipelineError as exc:
        logger.error("%s", exc)
        return 1
    finally:
        os.close(out_fd)
        consumer.close()


if __name__ == "__main__":
    raise SystemExit(main())

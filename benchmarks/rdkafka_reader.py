"""An independent latency reader on librdkafka (confluent-kafka): the check on the harness's own.

It shares no client code with the harness: librdkafka, ``read_committed``, one record per
``poll()``, ``time.time()`` when it returns. It stores the value with that time and decodes
afterwards (``contract.outputs.decode_prediction``), then writes the end-to-end latency (receipt
minus ``event_ts``) summarised with the project's one percentile definition.

It subscribes with a group of its own to a topic that may not exist yet (the harness creates a
named run's topics as it starts), reading from the beginning once assigned, and records when the
assignment came, so a reader that joined after the producer started can be told apart. It stops
after ``--expect`` records, ``--idle`` seconds without one after the first, ``--timeout``, or
SIGTERM. ``benchmarks.check_instrument`` runs it; by hand:

    .venv/bin/python -m benchmarks.rdkafka_reader --topic telco-churn-predictions-demo --expect 2000 --out r.json
"""

from __future__ import annotations

import logging
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, stop_on_signals
from churnstream.contract.events import ts_to_epoch_ms
from churnstream.contract.outputs import MalformedOutput, decode_prediction
from churnstream.files import write_json_atomically
from churnstream.harness.analysis import latency_summary
from churnstream.lifecycle import StopFlag
from churnstream.settings import Settings, load_settings

logger = logging.getLogger("benchmarks.rdkafka_reader")


def consumer_config(settings: Settings) -> dict[str, Any]:
    """A plaintext local broker is what the benchmarks use; other security settings are refused here."""
    if settings.security_protocol != "PLAINTEXT":
        raise SystemExit("rdkafka_reader: only a PLAINTEXT listener is supported (the benchmarks' local broker)")
    return {
        "bootstrap.servers": settings.bootstrap_servers,
        "group.id": f"rdkafka-check-{uuid.uuid4().hex[:8]}",
        "isolation.level": "read_committed",
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "fetch.wait.max.ms": 5,
        "fetch.min.bytes": 1,
        "fetch.queue.backoff.ms": 0,
        "topic.metadata.refresh.interval.ms": 200,  # find the topic soon after the harness creates it
    }


def read(
    consumer: Consumer, stop: StopFlag, state: dict[str, Any], *, expect: int, idle_s: float, timeout_s: float
) -> list[tuple[float, bytes | None]]:
    """One record per poll, timed on return; nothing else until the end."""
    received: list[tuple[float, bytes | None]] = []
    deadline = time.monotonic() + timeout_s
    last = None
    while not stop.is_set() and len(received) < expect and time.monotonic() < deadline:
        if last is not None and time.monotonic() - last > idle_s:
            break
        message = consumer.poll(0.1)
        if message is None:
            continue
        now = time.time()
        error = message.error()
        if error is not None:  # a topic not created yet is reported here, and is no reason to stop
            if error.fatal():
                raise KafkaException(error)
            logger.debug("%s", error)
            continue
        received.append((now, message.value()))
        last = time.monotonic()
    state["stopped_by"] = "signal" if stop.is_set() else ("expected" if len(received) >= expect else "idle/timeout")
    return received


def summarise(received: list[tuple[float, bytes | None]], state: dict[str, Any]) -> dict[str, Any]:
    latencies = []
    malformed = 0
    for received_s, value in received:
        try:
            latencies.append(received_s * 1000.0 - ts_to_epoch_ms(decode_prediction(value).event_ts))
        except MalformedOutput:
            malformed += 1
    return {
        "reader": "librdkafka (confluent-kafka), read_committed, one record per poll",
        "records": len(received),
        "malformed": malformed,
        "latency_ms": latency_summary(latencies),
        "first_received_at": received[0][0] if received else None,
        **state,
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.rdkafka_reader", __doc__.split("\n\n")[0])
    parser.add_argument("--topic", required=True, help="the prediction topic to read")
    parser.add_argument("--out", type=Path, required=True, help="where to write the summary (JSON)")
    parser.add_argument("--expect", type=int, default=10**9, help="stop after this many records")
    parser.add_argument("--idle", type=float, default=10.0, help="stop this long after the last record (s)")
    parser.add_argument("--timeout", type=float, default=600.0, help="stop after this long in all (s)")
    parser.add_argument("--ready-file", type=Path, help="touched once subscribed")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        consumer = Consumer(consumer_config(load_settings()))
        state: dict[str, Any] = {"assigned_at": None}

        def on_assign(_consumer: Consumer, partitions: list[Any]) -> None:
            if partitions and state["assigned_at"] is None:
                state["assigned_at"] = time.time()

        try:
            consumer.subscribe([args.topic], on_assign=on_assign)
            if args.ready_file is not None:
                args.ready_file.write_text("subscribed\n")
            with stop_on_signals(StopFlag()) as stop:
                received = read(consumer, stop, state, expect=args.expect, idle_s=args.idle, timeout_s=args.timeout)
        finally:
            consumer.close()
        summary = summarise(received, state)
        write_json_atomically(args.out, summary)
        logger.info("%d records, p99 %s ms", summary["records"], summary["latency_ms"]["p99"])
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""A bare kafka-python consume->produce loop: the baseline our consumer's latency and throughput are judged against.

It does what consumer.py does around the model, and nothing else: the same guarantee (one
transaction per poll for exactly-once; one flush, then one commit per poll for at-least-once), the
same poll and producer settings (imported from ``churnstream.consumer.options``), and an output of
the same format and size (a prediction built with ``contract.outputs.encode_prediction``, which
needs the event's ``event_ts`` and ``event_id``, so each value is parsed with ``orjson.loads``; since
format 2 a risk band and three reasons made of the event's first three features, as large as ours).
No validation, no DataFrame, no model: every event gets the data set's churn rate as its
probability. Written plainly on purpose; it is a yardstick, not a tuned competitor.

Like consumer.py it reads its topics and group from the environment (``KAFKA_TOPIC_RAW``,
``KAFKA_TOPIC_PREDICTIONS``, ``KAFKA_CONSUMER_GROUP``, ...). The harness runs it as a subprocess
(``test_pipeline.py --suite benchmark``); by hand:

    KAFKA_TOPIC_RAW=... .venv/bin/python -m benchmarks.bare_loop --guarantee exactly-once
    .venv/bin/python -m benchmarks.bare_loop --guarantee at-least-once --stop-after 30000 --summary-json bare.json

It stops on SIGTERM or Ctrl-C after committing its last batch, or after ``--stop-after`` events.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka.structs import OffsetAndMetadata

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, stop_on_signals, values
from churnstream.consumer.options import (
    DEFAULT_FETCH_MAX_WAIT_MS,
    DEFAULT_MAX_BATCH,
    POLL_TIMEOUT_MS,
    PRODUCER_BATCH_SIZE,
    PRODUCER_LINGER_MS,
    PRODUCER_RETRY_BACKOFF_MS,
)
from churnstream.contract.events import EVENT_ID, EVENT_TS, utc_now_iso
from churnstream.contract.outputs import Guarantee, encode_prediction
from churnstream.contract.schema import load_schema
from churnstream.errors import PipelineError
from churnstream.files import write_json_atomically
from churnstream.kafka.clients import make_consumer, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.lifecycle import StopFlag
from churnstream.settings import Settings, load_settings

logger = logging.getLogger("benchmarks.bare_loop")

BASE_RATE = 1869 / 7043  # the data set's churn rate: what a loop with no model can say
MODEL_VERSION = "bare-loop-no-model"
BAND = "medium"
CONTRIBUTIONS = (0.523456, 0.312345, 0.101234)  # a made-up contribution of the same length as a real one


def output_value(record: Any, processed_ts: str, key_field: str, reasons_from: tuple[str, ...]) -> bytes:
    """A prediction of the same format and size as consumer.py's, without validation or a model: the
    risk band a constant, the reasons the event's first three features with made-up contributions."""
    event = orjson.loads(record.value)
    reasons = [
        {"feature": name, "value": event[name], "contribution": amount}
        for name, amount in zip(reasons_from, CONTRIBUTIONS, strict=True)
    ]
    return encode_prediction(
        key_field,
        str(event[key_field]),
        BASE_RATE,
        False,
        event_ts=event[EVENT_TS],
        processed_ts=processed_ts,
        event_id=event[EVENT_ID],
        model_version=MODEL_VERSION,
        source_partition=record.partition,
        source_offset=record.offset,
        risk_band=BAND,
        reasons=reasons,
    )


def make_clients(
    settings: Settings, guarantee: Guarantee, max_batch: int = DEFAULT_MAX_BATCH
) -> tuple[KafkaConsumer, KafkaProducer]:
    extra: dict[str, Any] = {}
    if guarantee == Guarantee.EXACTLY_ONCE:
        extra["transactional_id"] = f"{settings.consumer_group}-bare-loop"
    producer = make_producer(
        settings,
        client_id="bare-loop",
        batch_size=PRODUCER_BATCH_SIZE,
        linger_ms=PRODUCER_LINGER_MS,
        retry_backoff_ms=PRODUCER_RETRY_BACKOFF_MS,
        **extra,
    )
    consumer = make_consumer(
        settings,
        client_id="bare-loop",
        group_id=settings.consumer_group,
        enable_auto_commit=False,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        max_poll_records=max_batch,
        fetch_max_wait_ms=DEFAULT_FETCH_MAX_WAIT_MS,
    )
    consumer.subscribe([settings.topic_raw])
    consumer.partitions_for_topic(settings.topic_raw)  # metadata before the first join, as consumer.py does
    return consumer, producer


def move_batch(
    consumer: KafkaConsumer,
    producer: KafkaProducer,
    topic: str,
    polled: dict[Any, list[Any]],
    guarantee: Guarantee,
    *,
    key_field: str,
    reasons_from: tuple[str, ...],
) -> int:
    """One poll's records out, and their offsets committed: in one transaction, or flush then commit."""
    records = [record for batch in polled.values() for record in batch]
    offsets = {tp: OffsetAndMetadata(batch[-1].offset + 1, "", batch[-1].leader_epoch) for tp, batch in polled.items()}
    processed_ts = utc_now_iso()
    exactly_once = guarantee == Guarantee.EXACTLY_ONCE
    if exactly_once:
        producer.begin_transaction()
    futures = [
        producer.send(topic, key=r.key, value=output_value(r, processed_ts, key_field, reasons_from)) for r in records
    ]
    if exactly_once:
        producer.send_offsets_to_transaction(offsets, consumer.group_metadata())
    producer.flush()
    failed = [future.exception for future in futures if future.failed()]
    if failed:
        raise PipelineError(f"an output could not be delivered: {failed[0]!r}")
    if exactly_once:
        producer.commit_transaction()
    else:
        consumer.commit(offsets)
    return len(records)


def run_loop(
    settings: Settings,
    guarantee: Guarantee,
    stop: StopFlag,
    stop_after: int | None,
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    time_limit_s: float | None = None,
) -> dict[str, Any]:
    """Move records until stopped; returns a summary counted like consumer.py's (first poll to last commit)."""
    schema = load_schema(settings.schema_path)
    key_field = schema.key_field  # the prediction's first field, as ours writes it
    reasons_from = schema.feature_names[:3]
    consumer, producer = make_clients(settings, guarantee, max_batch)
    moved = batches = 0
    first = last = None
    first_cpu = last_cpu = 0.0
    deadline = None if time_limit_s is None else time.monotonic() + time_limit_s
    try:
        if guarantee == Guarantee.EXACTLY_ONCE:
            producer.init_transactions()
        while not stop.is_set() and (stop_after is None or moved < stop_after):
            if deadline is not None and time.monotonic() > deadline:
                raise PipelineError(f"moved {moved} of {stop_after} events within {time_limit_s:.0f} s")
            polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS)
            if not polled:
                continue
            if first is None:
                first, first_cpu = time.monotonic(), time.process_time()
            moved += move_batch(
                consumer,
                producer,
                settings.topic_predictions,
                polled,
                guarantee,
                key_field=key_field,
                reasons_from=reasons_from,
            )
            batches += 1
            last, last_cpu = time.monotonic(), time.process_time()
    finally:
        consumer.close(autocommit=False)
        producer.close()
    seconds = (last - first) if first is not None and last is not None else 0.0
    return {
        "guarantee": str(guarantee),
        "consumed": moved,
        "scored": moved,
        "dead_lettered": 0,
        "batches": batches,
        "processing_s": round(seconds, 3),
        "events_per_sec": round(moved / seconds, 1) if seconds > 0 else 0.0,
        "transactions_aborted": 0,
        "cpu_s": round(last_cpu - first_cpu, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.bare_loop", __doc__.split("\n\n")[0])
    parser.add_argument("--guarantee", choices=values(Guarantee), required=True, help="as consumer.py's --guarantee")
    parser.add_argument("--stop-after", type=int, metavar="N", help="stop once N events are committed (a backlog run)")
    parser.add_argument("--summary-json", type=Path, metavar="PATH", help="write the summary here")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        settings = load_settings()
        with stop_on_signals(StopFlag()) as stop, kafka_errors_translated(settings):
            summary = run_loop(settings, Guarantee(args.guarantee), stop, args.stop_after)
        logger.info("stopped after %d events (%.0f events/s)", summary["consumed"], summary["events_per_sec"])
        if args.summary_json is not None:
            write_json_atomically(args.summary_json, summary)
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

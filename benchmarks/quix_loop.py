"""Quix Streams doing our consumer's job, at-least-once, as a Quix user would write it: the baseline of issue 20's goal.

The same job as consumer.py around the model, written with Quix Streams' own API: an
``Application`` (at-least-once, Quix's default guarantee), the raw topic read as bytes into a
``StreamingDataFrame``, one ``.apply`` that scores the event, and ``.to_topic`` to the predictions
topic, keyed by the raw record's key (the producer sets it to the event's key, as the bare loop
keys its outputs). The scoring is ours, per message, because Quix processes one message at a time
(no micro-batching: that is the comparison): the model the consumer serves (MODEL_PATH, else the
store's current version, loaded with ``churnstream.ml.model.load_model``), its contract's decode
(``model.contract.decode``: the same one-pass msgspec decode and validation ours uses), one
``predict_proba`` of one row, its risk band and reasons, and ``contract.outputs.encode_prediction``,
so the prediction has the format and size of ours.

Quix Streams commits as it does by default: it stores each offset once its message is processed,
and every ``commit_interval`` (5 s) flushes its producer and commits the offsets, so an output is
acknowledged before its offset is committed. Its producer is librdkafka's, idempotent (Quix's
default), with ``linger.ms`` 0 instead of librdkafka's 5: what Confluent's latency guide and a
user after low latency would set, since Quix sends one message at a time and flushes only at a
commit. A record that does not decode stops it with an error (it has no dead-letter path), so the
harness never injects malformed events into its runs.

It needs quixstreams, which needs a confluent-kafka older than the one ``.venv`` pins: it runs in
its own virtualenv, ``.run/quix`` (``make quix``), with the same scikit-learn and model code.
Like consumer.py it reads its topics and group from the environment (``KAFKA_BOOTSTRAP_SERVERS``,
``KAFKA_TOPIC_RAW``, ``KAFKA_TOPIC_PREDICTIONS``, ``KAFKA_CONSUMER_GROUP``), a PLAINTEXT listener
only. The harness runs it (``test_pipeline.py --subject quix``, ``--suite quix``); by hand:

    KAFKA_TOPIC_RAW=... .run/quix/bin/python -m benchmarks.quix_loop --summary-json quix.json

It stops on SIGTERM or Ctrl-C (Quix's own handlers) after committing what it processed.
"""

from __future__ import annotations

import logging
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import encode_prediction
from churnstream.errors import ConfigError
from churnstream.files import write_json_atomically
from churnstream.harness.quix import AUTO_OFFSET_RESET, QUIX_COMMIT_INTERVAL_S, QUIX_GUARANTEE, QUIX_PRODUCER_LINGER_MS
from churnstream.settings import Settings, load_settings

if TYPE_CHECKING:
    from churnstream.ml.model import ChurnModel

logger = logging.getLogger("benchmarks.quix_loop")


def broker_address(settings: Settings) -> str:
    """Quix's broker_address for these settings: a PLAINTEXT listener, the benchmarks' local broker."""
    if settings.security_protocol != "PLAINTEXT":
        raise ConfigError(
            f"the Quix Streams baseline runs on a PLAINTEXT listener only (the benchmarks' local broker), "
            f"not {settings.security_protocol}"
        )
    return settings.bootstrap_servers


class Scorer:
    """One raw event in, one prediction out: what the application's ``.apply`` does to each message."""

    def __init__(self, model: ChurnModel) -> None:
        self.model = model
        self.contract = model.contract  # compiled once: the property compiles the schema on each access
        self.key_field = model.schema.key_field
        self.threshold = model.threshold
        self.version = model.version

    def __call__(self, value: bytes, partition: int, offset: int) -> bytes:
        event = self.contract.decode(value)  # InvalidEvent for a record that is not a valid event
        rows = [event.features]
        probabilities = self.model.predict_proba(rows)
        bands = self.model.band_names(probabilities)
        reasons = self.model.explain(rows, probabilities)
        probability = float(probabilities[0])
        return encode_prediction(
            self.key_field,
            event.key,
            probability,
            probability >= self.threshold,
            event_ts=event.event_ts,
            processed_ts=utc_now_iso(),
            event_id=event.event_id,
            model_version=self.version,
            source_partition=partition,
            source_offset=offset,
            risk_band=bands[0] if bands else None,
            reasons=reasons[0] if reasons else None,
        )


class Tally:
    """Messages processed, and when: the summary counted like the bare loop's (first to last message)."""

    def __init__(self) -> None:
        self.processed = 0
        self.first: float | None = None
        self.last = 0.0
        self.first_cpu = self.last_cpu = 0.0

    def __call__(self, topic: str, partition: int, offset: int) -> None:
        now, cpu = time.monotonic(), time.process_time()
        if self.first is None:
            self.first, self.first_cpu = now, cpu
        self.processed += 1
        self.last, self.last_cpu = now, cpu

    def summary(self) -> dict[str, Any]:
        seconds = self.last - self.first if self.first is not None else 0.0
        return {
            "guarantee": str(QUIX_GUARANTEE),
            "consumed": self.processed,
            "scored": self.processed,
            "dead_lettered": 0,
            "processing_s": round(seconds, 3),
            "events_per_sec": round(self.processed / seconds, 1) if seconds > 0 else 0.0,
            "transactions_aborted": 0,
            "cpu_s": round(self.last_cpu - self.first_cpu, 3),
        }


def build_application(settings: Settings, scorer: Scorer, tally: Tally, state_dir: Path) -> Any:
    """The Quix Streams application: raw topic -> .apply(score) -> .to_topic(predictions). It keeps no state,
    but Quix makes its state folder anyway: ``state_dir``, not ./state in the checkout."""
    from quixstreams import Application, message_context  # noqa: PLC0415 - only in .run/quix

    app = Application(
        broker_address=broker_address(settings),
        consumer_group=settings.consumer_group,
        auto_offset_reset=AUTO_OFFSET_RESET,
        processing_guarantee=str(QUIX_GUARANTEE),
        commit_interval=QUIX_COMMIT_INTERVAL_S,
        producer_extra_config={"linger.ms": QUIX_PRODUCER_LINGER_MS},
        auto_create_topics=False,  # the topics are the harness's (or the operator's): a missing one is an error
        on_message_processed=tally,
        loglevel=None,  # its logger propagates to ours (stderr), configured once in main
        state_dir=state_dir,
    )
    raw = app.topic(settings.topic_raw, key_deserializer="bytes", value_deserializer="bytes")
    predictions = app.topic(settings.topic_predictions, key_serializer="bytes", value_serializer="bytes")

    def score(value: bytes) -> bytes:
        where = message_context()
        return scorer(value, where.partition, where.offset)

    app.dataframe(raw).apply(score).to_topic(predictions)
    return app


def load_served_model(settings: Settings) -> ChurnModel:
    """The model consumer.py would serve: MODEL_PATH, else the store's current version."""
    from churnstream.ml.model import load_model  # noqa: PLC0415 - scikit-learn takes seconds to import
    from churnstream.ml.store import resolve_model  # noqa: PLC0415

    return load_model(*resolve_model(settings).paths)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.quix_loop", __doc__.split("\n\n")[0])
    parser.add_argument("--summary-json", type=Path, metavar="PATH", help="write the summary here when it stops")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings()
        broker_address(settings)  # refused before the model loads, not after
        model = load_served_model(settings)
        tally = Tally()
        with tempfile.TemporaryDirectory(prefix="quix-state-") as state_dir:
            app = build_application(settings, Scorer(model), tally, Path(state_dir))
            logger.info("scoring %s -> %s with model %s, one message at a time (Quix Streams, %s, linger.ms %d)",
                        settings.topic_raw, settings.topic_predictions, model.version, QUIX_GUARANTEE,
                        QUIX_PRODUCER_LINGER_MS)  # fmt: skip
            app.run()  # until SIGTERM or Ctrl-C; a processing error propagates after Quix has stopped
        summary = tally.summary()
        logger.info("stopped after %d events (%.0f events/s)", summary["consumed"], summary["events_per_sec"])
        if args.summary_json is not None:
            write_json_atomically(args.summary_json, summary)
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

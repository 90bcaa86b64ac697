"""The seed-style consumer: what the original course project did, one event at a time.

Per event: one ``json.loads``, a one-row ``pandas.DataFrame``, one ``predict_proba`` of a
*standard* scikit-learn pipeline (a ``ColumnTransformer`` of ``OneHotEncoder`` and an
imputer + ``StandardScaler``, then ``LogisticRegression``: ``ml.features.sklearn_reference_preprocessing``),
one send; offsets auto-committed. The pipeline is trained here, on the data set, before the clock
starts (as ``benchmarks.bench_model`` does), so no model file of ours is involved.

It is the "before" of the >= 100x goal (``test_pipeline.py --suite benchmark``): the harness runs
it on the same pre-filled topic as the throughput runs. Per-event prediction is what this project
replaces; this module is the one place where it is written on purpose.

    KAFKA_TOPIC_RAW=... .venv/bin/python -m benchmarks.seed_consumer --max-events 1000 --max-seconds 10
"""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import pandas as pd
from sklearn.base import clone
from sklearn.pipeline import Pipeline

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, stop_on_signals
from churnstream.contract.events import EVENT_ID, EVENT_TS, load_contract, utc_now_iso
from churnstream.contract.outputs import encode_prediction
from churnstream.files import write_json_atomically
from churnstream.kafka.clients import make_consumer, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.lifecycle import StopFlag
from churnstream.ml.dataset import DATASET_LABEL, verify_dataset
from churnstream.ml.features import sklearn_reference_preprocessing
from churnstream.ml.train import build_pipeline, labelled_frame
from churnstream.settings import Settings, load_settings

logger = logging.getLogger("benchmarks.seed_consumer")
SEED_THRESHOLD = 0.5  # the seed decided at 0.5; the store's models choose theirs (ml/threshold.py)

MODEL_VERSION = "seed-style-sklearn"


def train_standard_pipeline(settings: Settings) -> Pipeline:
    """scikit-learn's own encoders and the project's classifier settings, fitted on the whole file."""
    verify_dataset(settings.data_path)
    contract = load_contract(settings.schema_path)
    frame, labels = labelled_frame(contract, settings.data_path, DATASET_LABEL)
    classifier = clone(build_pipeline(contract.schema).named_steps["classifier"])
    preprocess = sklearn_reference_preprocessing(contract.schema)
    return Pipeline([("preprocess", preprocess), ("classifier", classifier)]).fit(frame, labels)


def score_one(pipeline: Pipeline, value: bytes) -> tuple[dict[str, Any], float]:
    """The seed's per-event work: parse, a one-row DataFrame, one predict_proba."""
    event = json.loads(value)
    # A blank TotalCharges arrives as null: NaN, so the imputer sees it (None would make the column text).
    frame = pd.DataFrame([{name: math.nan if item is None else item for name, item in event.items()}])
    return event, float(pipeline.predict_proba(frame)[0, 1])


def run_seed(
    settings: Settings, pipeline: Pipeline, stop: StopFlag, max_events: int, max_seconds: float
) -> dict[str, Any]:
    """Score one event at a time until ``max_events`` or ``max_seconds`` after the first record."""
    producer = make_producer(settings, client_id="seed-consumer")
    consumer = make_consumer(
        settings,
        settings.topic_raw,
        client_id="seed-consumer",
        group_id=settings.consumer_group,
        enable_auto_commit=True,
        auto_offset_reset="earliest",
        max_poll_records=500,
    )
    key_field = load_contract(settings.schema_path).key_field
    done = 0
    first: float | None = None
    try:
        while not stop.is_set() and done < max_events:
            if first is not None and time.monotonic() - first >= max_seconds:
                break
            for batch in consumer.poll(timeout_ms=200).values():
                for record in batch:
                    if first is None:
                        first = time.monotonic()
                    event, probability = score_one(pipeline, record.value)
                    payload = encode_prediction(
                        key_field,
                        str(event[key_field]),
                        probability,
                        probability >= SEED_THRESHOLD,
                        event_ts=event[EVENT_TS],
                        processed_ts=utc_now_iso(),
                        event_id=event[EVENT_ID],
                        model_version=MODEL_VERSION,
                        source_partition=record.partition,
                        source_offset=record.offset,
                    )
                    producer.send(settings.topic_predictions, key=record.key, value=payload)
                    done += 1
        seconds = time.monotonic() - first if first is not None else 0.0
        producer.flush()
    finally:
        consumer.close()
        producer.close()
    return {
        "consumed": done,
        "processing_s": round(seconds, 3),
        "events_per_sec": round(done / seconds, 1) if seconds else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.seed_consumer", __doc__.split("\n\n")[0])
    parser.add_argument(
        "--max-events", type=int, default=1000, help="stop after this many events (default %(default)s)"
    )
    parser.add_argument(
        "--max-seconds", type=float, default=10.0, help="or this long after the first record (default %(default)s)"
    )
    parser.add_argument("--summary-json", type=Path, metavar="PATH", help="write the summary here")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        settings = load_settings()
        pipeline = train_standard_pipeline(settings)
        with stop_on_signals(StopFlag()) as stop, kafka_errors_translated(settings):
            summary = run_seed(settings, pipeline, stop, args.max_events, args.max_seconds)
        logger.info("scored %d events one at a time: %.1f events/s", summary["consumed"], summary["events_per_sec"])
        if args.summary_json is not None:
            write_json_atomically(args.summary_json, summary)
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

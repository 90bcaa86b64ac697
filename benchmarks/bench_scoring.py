"""What a model costs in the stream: CPU per event of the consumer's scoring, for any store's current model.

``python -m benchmarks.bench_scoring [--store DIR] [--data CSV]`` (about 30 s for the project's model; an
imported estimator's own ``predict_proba`` sets the pace). The CSV's rows become events of the model's
own schema (the producer's parsing, ``Contract.event_from_row``), encoded as the producer sends them, and
``score_batch`` (decode and validate, the model, risk bands, reasons, the output records: everything the
consumer does with a poll batch but Kafka) scores them in batches of each ``--sizes``, with reasons on
and off. Prints the CPU microseconds per event (the best of ``--repeats`` passes over the events).
No broker needed. A small batch is what a stream at a few hundred events a second brings; 500 is a
backlog's. Libraries that start threads per call (OpenMP in scikit-learn's gradient boosting) cost
more with small batches: compare with ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, whole_number, whole_numbers
from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.events import encode_event
from churnstream.errors import ConfigError, InvalidEvent
from churnstream.ml.dataset import read_rows
from churnstream.ml.model import load_model
from churnstream.ml.store import ModelStore, resolve_model
from churnstream.settings import load_settings

logger = logging.getLogger("benchmarks.bench_scoring")

DEFAULT_SIZES = "30,500"
TIMESTAMP = "2026-12-04T12:00:00.000Z"


def cpu_us_per_event(records: list[RawRecord], model: object, size: int, *, reasons: bool, repeats: int) -> float:
    """The best of ``repeats`` passes: CPU seconds of score_batch over all records, in batches of ``size``."""
    best = float("inf")
    for _ in range(repeats):
        started = time.process_time()
        for start in range(0, len(records), size):
            score_batch(records[start : start + size], model, with_reasons=reasons)  # type: ignore[arg-type]
        best = min(best, time.process_time() - started)
    return best / len(records) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m benchmarks.bench_scoring",
        __doc__.splitlines()[0],
        "examples:\n"
        "  python -m benchmarks.bench_scoring                                  # the current model of models/\n"
        "  OMP_NUM_THREADS=1 python -m benchmarks.bench_scoring --store models-mobile --data data/mobile-holdout.csv",
    )
    parser.add_argument("--store", type=Path, help="the model store (default: MODEL_STORE, else models/)")
    parser.add_argument("--data", type=Path, metavar="CSV", help="rows to score (default: DATA_PATH)")
    parser.add_argument("--sizes", type=whole_numbers, default=DEFAULT_SIZES, help="batch sizes (default %(default)s)")
    parser.add_argument("--events", type=whole_number, default=6000, help="events per pass (default %(default)s)")
    parser.add_argument("--repeats", type=whole_number, default=3, help="passes; the best counts (default %(default)s)")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings()
        store = ModelStore(args.store) if args.store else None
        model = load_model(*(store.paths(store.require_current()) if store else resolve_model(settings).paths))
        contract = model.contract
        data_path = args.data or settings.data_path
        events = []
        for _, row in read_rows(data_path, [contract.key_field]):
            try:
                events.append(contract.event_from_row(row, f"bench-{len(events)}", TIMESTAMP))
            except InvalidEvent:
                continue  # a row the schema refuses is not an event the model scores
        if not events:
            raise ConfigError(f"{data_path}: no row of it is an event of the model's schema ({contract.schema.title})")
        records = [
            RawRecord("raw", index % 6, index, str(event[contract.key_field]).encode(), encode_event(event))
            for index, event in ((i, events[i % len(events)]) for i in range(args.events))
        ]
        print(f"model {model.version} ({model.card.get('estimator', '?')}), {len(records)} events from {data_path}")
        print("events/batch  reasons off us/event  reasons on us/event")
        for size in args.sizes:
            off = cpu_us_per_event(records, model, size, reasons=False, repeats=args.repeats)
            on = cpu_us_per_event(records, model, size, reasons=True, repeats=args.repeats)
            print(f"{size:>12}  {off:>20.1f}  {on:>19.1f}", flush=True)
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

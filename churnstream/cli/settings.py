"""``python config.py``: the settings the pipeline would use, one ``NAME=value`` per line, secrets masked."""

from __future__ import annotations

import argparse

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.cli.connection import add_connection_options, load_settings_with

PROG = "config.py"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, "Show the settings the pipeline would use, with secrets masked.")
    add_connection_options(parser)
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        for name, value in load_settings_with(args).describe().items():
            print(f"{name}={value}")
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

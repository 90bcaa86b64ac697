"""``python -m churnstream.replay`` / ``churn-replay``: send dead letters back, each at most once."""

from __future__ import annotations

import argparse

from churnstream.cli.common import (
    add_logging_options,
    count_or_zero,
    make_parser,
    run,
    setup_logging,
    values,
    whole_number,
)
from churnstream.cli.connection import add_connection_options, load_settings_with
from churnstream.cli.formatting import format_replay_summary
from churnstream.contract.outputs import Stage
from churnstream.replay import Selection, replay

PROG = "python -m churnstream.replay"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "Send selected dead letters back to the raw topic, each at most once.",
        epilog="Examples:\n"
        "  python -m churnstream.replay --stage validate --reason-contains Contract --dry-run\n"
        "  python -m churnstream.replay --partition 3 --from-offset 100 --to-offset 250",
    )
    choose = parser.add_argument_group("which dead letters (all given filters must match)")
    choose.add_argument(
        "--stage",
        choices=[stage for stage in values(Stage) if stage != Stage.SHADOW],  # shadow ones are never replayed
        help="only this failure stage",
    )
    choose.add_argument("--reason-contains", metavar="TEXT", help="only reasons containing TEXT")
    choose.add_argument("--partition", type=count_or_zero, help="only this dead-letter partition")
    choose.add_argument("--from-offset", type=count_or_zero, help="first dead-letter offset (inclusive)")
    choose.add_argument("--to-offset", type=count_or_zero, help="last dead-letter offset (inclusive)")
    choose.add_argument("--limit", type=whole_number, help="replay at most N")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed; send nothing")
    add_connection_options(parser)
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.from_offset is not None or args.to_offset is not None) and args.partition is None:
        parser.error("--from-offset/--to-offset need --partition (offsets are per partition)")
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        selection = Selection(args.stage, args.reason_contains, args.partition, args.from_offset, args.to_offset)
        summary = replay(load_settings_with(args), selection, dry_run=args.dry_run, limit=args.limit)
        print(format_replay_summary(summary, args.dry_run))
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""Send Telco customer rows to Kafka as events: a steady stream, or a resumable batch load.

``producer.py`` / ``churn-producer``: a thin CLI over churnstream.producer; see KAFKA_README.md
("Producer") for the event contract, the checkpoint and the exit codes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from churnstream.cli.common import (
    add_logging_options,
    add_metrics_address_option,
    make_parser,
    output_file,
    port_number,
    positive_number,
    run,
    setup_logging,
    stop_on_signals,
    values,
    whole_number,
)
from churnstream.cli.connection import add_connection_options, load_settings_with
from churnstream.cli.formatting import ProgressBar, format_producer_summary
from churnstream.contract.outputs import Mode
from churnstream.errors import EXIT_FAILURE, EXIT_OK
from churnstream.files import write_json_atomically
from churnstream.lifecycle import StopFlag
from churnstream.producer.run import BatchOptions, StreamingOptions, produce_batch, produce_streaming

PROG = "producer.py"

DESCRIPTION = """\
Turn rows of a CSV into events of an event schema on KAFKA_TOPIC_RAW (created when missing):
by default the Telco churn CSV and schemas/event.schema.json.

  streaming: random rows at an exact rate, on an absolute schedule
  batch:     the file in order, as fast as the broker takes it, with a resumable checkpoint
"""

EPILOG = """\
examples:
  python producer.py --mode streaming --events-per-sec 100 --duration 60 --seed 7
  python producer.py --mode batch
  python producer.py --mode batch --resume          # after a crash or Ctrl-C
  python producer.py --mode batch --repeat 15 --no-progress --summary-json results/load.json
  python producer.py --mode batch --schema my.schema.json --data my.csv

exit codes: 0 every event acknowledged, 1 some failed, 2 no broker, 3 bad setting,
4 bad data file, 8/9 authentication/TLS, 10 checkpoint conflict, 12 wrong security protocol,
64 bad arguments, 130 interrupted (a second Ctrl-C, or one before sending began)
(all of them: KAFKA_README.md, "Exit codes")
"""

STREAMING_ONLY = ("events_per_sec", "duration", "seed")
BATCH_ONLY = ("batch_size", "resume", "restart", "limit", "repeat", "checkpoint_file")


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, DESCRIPTION, EPILOG)
    parser.add_argument("--mode", required=True, choices=values(Mode), help="streaming or batch (required)")
    parser.add_argument("--data", type=Path, metavar="PATH", help="the CSV to read (default: DATA_PATH)")
    parser.add_argument(
        "--schema",
        type=Path,
        metavar="FILE",
        help="the event schema that types the CSV's rows, a JSON Schema file (default: EVENT_SCHEMA, the Telco "
        "one); an empty cell is null where the schema allows it",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="report a row that is not a valid event (with its line number) and go on; default: stop",
    )
    parser.add_argument("--summary-json", type=output_file, metavar="PATH", help="also write the run summary as JSON")
    parser.add_argument(
        "--no-progress", action="store_true", help="no progress bar (it is off anyway when stderr is not a terminal)"
    )

    streaming = parser.add_argument_group("streaming mode")
    streaming.add_argument(
        "--events-per-sec",
        type=positive_number,
        metavar="R",
        help="events per second (required in streaming mode; fractions allowed)",
    )
    streaming.add_argument(
        "--duration", type=positive_number, metavar="S", help="seconds to run (default: until Ctrl-C or SIGTERM)"
    )
    streaming.add_argument(
        "--seed", type=int, metavar="N", help="random seed for the choice of rows (default: random, logged)"
    )

    batch = parser.add_argument_group("batch mode")
    batch.add_argument(
        "--batch-size",
        type=whole_number,
        default=5000,
        metavar="N",
        help="rows per acknowledged chunk; a checkpoint is written after each (default: %(default)s)",
    )
    resume_group = batch.add_mutually_exclusive_group()
    resume_group.add_argument(
        "--resume", action="store_true", help="continue the unfinished load recorded in the checkpoint"
    )
    resume_group.add_argument(
        "--restart", action="store_true", help="abandon an unfinished load and start a new one from the first row"
    )
    batch.add_argument("--limit", type=whole_number, metavar="N", help="only the first N data rows of the file")
    batch.add_argument(
        "--repeat",
        type=whole_number,
        metavar="K",
        help="send the file K times, each event with a fresh event_id, for load tests (default: 1)",
    )
    batch.add_argument(
        "--checkpoint-file",
        type=Path,
        metavar="PATH",
        help="where the checkpoint lives (default: CHECKPOINT_DIR/<topic>.json)",
    )
    parser.add_argument(
        "--metrics-port",
        type=port_number,
        metavar="PORT",
        help="serve Prometheus metrics on /metrics on this port (default: PRODUCER_METRICS_PORT; off when neither "
        "is set)",
    )
    add_metrics_address_option(parser)
    add_connection_options(parser)
    add_logging_options(parser)
    return parser


def _check_mode_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Flags of the other mode are an explicit usage error, not silently ignored."""
    defaults = {name: parser.get_default(name) for name in (*STREAMING_ONLY, *BATCH_ONLY)}
    others = BATCH_ONLY if args.mode == Mode.STREAMING else STREAMING_ONLY
    wrong = [name for name in others if getattr(args, name) != defaults[name]]
    if wrong:
        flags = ", ".join("--" + name.replace("_", "-") for name in wrong)
        other_mode = Mode.BATCH if args.mode == Mode.STREAMING else Mode.STREAMING
        parser.error(f"{flags} only apply to --mode {other_mode}")
    if args.mode == Mode.STREAMING and args.events_per_sec is None:
        parser.error("--mode streaming needs --events-per-sec R")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check_mode_flags(parser, args)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings_with(args)
        with stop_on_signals(StopFlag()) as stop:
            if args.mode == Mode.STREAMING:
                summary = produce_streaming(
                    settings,
                    StreamingOptions(
                        events_per_sec=args.events_per_sec,
                        duration_s=args.duration,
                        seed=args.seed,
                        data_path=args.data,
                        schema_path=args.schema,
                        skip_bad_rows=args.skip_bad_rows,
                        metrics_port=args.metrics_port,
                        metrics_address=args.metrics_address,
                    ),
                    stop,
                )
            else:
                summary = produce_batch(
                    settings,
                    BatchOptions(
                        batch_size=args.batch_size,
                        resume=args.resume,
                        restart=args.restart,
                        limit=args.limit,
                        repeat=args.repeat,
                        checkpoint_file=args.checkpoint_file,
                        data_path=args.data,
                        schema_path=args.schema,
                        skip_bad_rows=args.skip_bad_rows,
                        progress=ProgressBar() if not args.no_progress and sys.stderr.isatty() else None,
                        metrics_port=args.metrics_port,
                        metrics_address=args.metrics_address,
                    ),
                    stop,
                )
        print(format_producer_summary(summary), flush=True)  # stdout carries only the summary
        if args.summary_json is not None:
            write_json_atomically(args.summary_json, summary.to_json())
        return EXIT_OK if summary.ok else EXIT_FAILURE

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

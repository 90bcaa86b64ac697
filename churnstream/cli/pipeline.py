"""Does the whole pipeline work on this broker, how fast, and did it lose anything?

Runs the same producer.py and consumer.py a user runs, as subprocesses, on run-unique topics,
and measures from the outside: throughput, end-to-end latency, dead letters, and whether
every raw record got exactly one outcome. Writes a results JSON and a markdown report.

Examples:
  python test_pipeline.py --verify-only
  python test_pipeline.py --mode streaming --events-per-sec 1000 --duration 60
  python test_pipeline.py --mode batch --consumers 2 --inject-bad 30
  python test_pipeline.py --mode streaming --events-per-sec 1000 --subject floor   # calibrate the instrument
  python test_pipeline.py --suite quick                                # the suite's machinery, under a minute
  python test_pipeline.py --suite quix                                 # ours against Quix Streams (make quix first)
  python test_pipeline.py --suite benchmark --report TEST_RESULTS.md   # make benchmark: the documented run
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shlex
import sys
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churnstream.cli.common import (
    add_logging_options,
    count_or_zero,
    interrupt_once,
    make_parser,
    output_file,
    positive_number,
    run,
    setup_logging,
    values,
    whole_number,
)
from churnstream.cli.connection import (
    add_connection_options,
    client_option_args,
    load_settings_with,
    masked_arguments,
)
from churnstream.cli.formatting import format_checks
from churnstream.contract.outputs import Guarantee, Mode
from churnstream.errors import EXIT_FAILURE, EXIT_OK
from churnstream.files import write_bytes_atomically, write_json_atomically
from churnstream.harness.environment import environment, provenance
from churnstream.harness.plan import RunPlan, Subject
from churnstream.harness.quix import QUIX_GUARANTEE, quix_python
from churnstream.harness.scenario import run_scenario
from churnstream.harness.suite import SUITES, broker_note, summarise
from churnstream.harness.verify import verify
from churnstream.settings import PROJECT_ROOT, Settings

PROG = "test_pipeline.py"
logger = logging.getLogger(__name__)

DEFAULT_RESULTS_JSON = PROJECT_ROOT / "results" / "latest.json"
# Only `make benchmark` writes the committed TEST_RESULTS.md (it passes --report TEST_RESULTS.md);
# every other run reports under results/, so following an example never replaces the documented run.
DEFAULT_REPORT = PROJECT_ROOT / "results" / "TEST_RESULTS.md"


# The flags that shape a run: --verify-only takes none of them; --suite fixes the scenarios'.
SUITE_FIXES = ("mode", "events_per_sec", "duration", "limit", "repeat", "p99_goal_ms", "batch_goal_s", "subject")
RUN_FLAGS = (
    *SUITE_FIXES,
    "suite",
    "consumers",
    "inject_bad",
    "guarantee",
    "consumer_arg",
    "seed",
    "keep_topics",
    "run_name",
)


# Options a consumer takes that carry the connection, and maybe a secret: not for --consumer-arg.
CONNECTION_FLAGS = ("-X", "--command-config", "--bootstrap-server")


def flag_names(names: list[str]) -> str:
    return ", ".join("--" + name.replace("_", "-") for name in names)


def _run_name(text: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9._-]{1,40}", text):
        raise argparse.ArgumentTypeError(f"{text!r}: use 1-40 characters of A-Z a-z 0-9 . _ -")
    return text


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(PROG, __doc__.split("\n\n")[0], epilog="examples:" + __doc__.split("Examples:")[1])
    what = parser.add_argument_group("what to run")
    what.add_argument("--verify-only", action="store_true", help="check broker, topics, model and data; run nothing")
    what.add_argument(
        "--mode", choices=values(Mode), default=Mode.STREAMING.value, help="producer mode (default %(default)s)"
    )
    what.add_argument(
        "--suite",
        choices=tuple(SUITES),
        help="run a preset suite: benchmark (the TEST_RESULTS.md run: our consumer beside its baselines, judged "
        "on the goals; about 30 minutes), quick (the same machinery with tiny settings, under a minute), or quix "
        "(our consumer, Quix Streams and the bare loop at 200 events/s, at-least-once, 3 repeats: about 6 minutes)",
    )
    what.add_argument(
        "--subject",
        choices=values(Subject),
        default=Subject.CONSUMER.value,
        help="what runs between the raw topic and the latency reader: consumer (default), bare-loop "
        "(benchmarks/bare_loop.py), quix (benchmarks/quix_loop.py: Quix Streams, at-least-once, in the virtualenv "
        "make quix builds), or floor (nothing: the reader on the raw topic, to calibrate it)",
    )
    what.add_argument(
        "--events-per-sec", type=positive_number, default=100.0, help="streaming rate (default %(default)s)"
    )
    what.add_argument(
        "--duration", type=positive_number, default=10.0, help="streaming duration in seconds (default %(default)s)"
    )
    what.add_argument("--limit", type=whole_number, help="batch: only the first N rows")
    what.add_argument(
        "--repeat", type=whole_number, default=1, help="batch: passes over the file (default %(default)s)"
    )
    what.add_argument(
        "--consumers", type=whole_number, default=1, help="consumer processes in the group (default %(default)s)"
    )
    what.add_argument(
        "--inject-bad", type=count_or_zero, default=0, metavar="K", help="mix K malformed events into the stream"
    )
    what.add_argument(
        "--guarantee",
        choices=values(Guarantee),
        default=Guarantee.EXACTLY_ONCE.value,
        help="consumer guarantee (default %(default)s)",
    )
    what.add_argument(
        "--consumer-arg", action="append", default=[], metavar="ARG", help="extra argument for consumer.py (repeatable)"
    )
    what.add_argument("--seed", type=int, default=42, help="random seed for the producer and the sample check")
    judge = parser.add_argument_group("criteria")
    judge.add_argument(
        "--timeout", type=positive_number, default=60.0, help="seconds to wait for outcomes after the producer ends"
    )
    judge.add_argument("--p99-goal-ms", type=float, help="also fail when p99 end-to-end latency exceeds this")
    judge.add_argument(
        "--batch-goal-s",
        type=float,
        help="also fail when the last outcome is readable later than this after the producer starts",
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--results-json",
        type=output_file,
        default=DEFAULT_RESULTS_JSON,
        help="results file (default results/latest.json)",
    )
    output.add_argument(
        "--report",
        type=output_file,
        default=DEFAULT_REPORT,
        help="markdown report to write (default results/TEST_RESULTS.md; make benchmark writes TEST_RESULTS.md)",
    )
    output.add_argument(
        "--runs-dir",
        type=Path,
        metavar="DIR",
        help="where each run's logs go, one folder per run (default: runs/ beside the results JSON)",
    )
    output.add_argument("--no-report", action="store_true", help="write the JSON only")
    output.add_argument(
        "--keep-topics", action="store_true", help="keep the run's topics for inspection (default: delete them)"
    )
    output.add_argument(
        "--run-name",
        type=_run_name,
        metavar="NAME",
        help="use the fixed topics <topic>-NAME and group <group>-NAME: wiped at the start, kept at the end "
        "(make demo uses 'demo', so its predictions can be read afterwards)",
    )
    add_connection_options(parser)
    add_logging_options(parser)
    return parser


def plans_from(args: argparse.Namespace, settings: Settings) -> list[RunPlan]:
    common = {
        "consumers": args.consumers,
        "inject_bad": args.inject_bad,
        "guarantee": args.guarantee,
        "seed": args.seed,
        "timeout_s": args.timeout,
        "keep_topics": args.keep_topics,
        "run_name": args.run_name,
        "consumer_args": tuple(args.consumer_arg),
        "connection_args": tuple(client_option_args(settings)),
    }
    return [
        RunPlan(
            mode=args.mode,
            events_per_sec=args.events_per_sec,
            duration_s=args.duration,
            limit=args.limit,
            repeat=args.repeat,
            p99_goal_ms=args.p99_goal_ms,
            batch_goal_s=args.batch_goal_s,
            subject=Subject(args.subject),
            **common,
        )
    ]


def write_outputs(results: dict[str, Any], args: argparse.Namespace) -> None:
    write_json_atomically(args.results_json, results)
    if args.no_report:
        return
    from churnstream.harness import plots  # noqa: PLC0415 - matplotlib: only when writing
    from churnstream.harness.report import render_markdown  # noqa: PLC0415

    plot_path = args.report.with_suffix(".png")
    if results.get("goals") is not None:
        plots.plot_suite(results, results["suite_spec"], plot_path)
    else:
        plots.plot_runs(results, plot_path)
    link = os.path.relpath(args.results_json.resolve(), args.report.resolve().parent)
    write_bytes_atomically(args.report, render_markdown(results, plot_path.name, link).encode())


def run_runs(args: argparse.Namespace, settings: Settings, runs_dir: Any) -> dict[str, Any]:
    """The runs the flags describe (one, unless --suite), their results and their verdict."""
    from churnstream.harness.report import run_verdict, scenario_lines  # noqa: PLC0415

    def show(result: dict[str, Any]) -> None:
        print("\n".join(scenario_lines(result)), flush=True)

    if args.suite:
        from churnstream.harness.benchmark import run_suite  # noqa: PLC0415

        spec = SUITES[args.suite]
        suite = run_suite(settings, spec, plans_from(args, settings)[0], runs_dir, on_run=show)
        ours = [s for s in suite["scenarios"] if s["subject"] == Subject.CONSUMER]
        return {**summarise(ours), **suite, "suite_spec": asdict(spec)}
    scenarios = []
    for plan in plans_from(args, settings):
        result = run_scenario(settings, plan, runs_dir)
        scenarios.append(result)
        show(result)
    passed = all(s["passed"] for s in scenarios)
    return {"passed": passed, "verdict": run_verdict(scenarios), **summarise(scenarios), "scenarios": scenarios,
            "warm_up": None}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    chosen = [name for name in RUN_FLAGS if getattr(args, name) != parser.get_default(name)]
    if args.suite and (fixed := [name for name in chosen if name in SUITE_FIXES]):
        parser.error(f"{flag_names(fixed)}: not used by --suite, which runs fixed scenarios")
    if args.verify_only and chosen:
        parser.error(f"{flag_names(chosen)}: not used by --verify-only, which runs nothing")
    if args.subject in (Subject.BARE_LOOP, Subject.QUIX) and args.inject_bad:
        parser.error(f"--inject-bad: --subject {args.subject} has no dead-letter path (a malformed event stops it)")
    if args.subject == Subject.QUIX and args.guarantee != QUIX_GUARANTEE:
        parser.error(f"--subject quix runs {QUIX_GUARANTEE} only (Quix's default): add --guarantee {QUIX_GUARANTEE}")
    if args.subject != Subject.CONSUMER and args.consumer_arg:
        parser.error(f"--consumer-arg: only our consumer takes it, not --subject {args.subject}")
    if any(arg.startswith(CONNECTION_FLAGS) for arg in args.consumer_arg):
        parser.error(
            "--consumer-arg: give the connection (-X, --command-config, --bootstrap-server) to test_pipeline.py "
            "itself, which passes it to every process of the run in their environment, never their command lines"
        )
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings_with(args)
        if args.verify_only:
            checks = verify(settings)
            print(format_checks(checks))
            return EXIT_OK if all(c.passed for c in checks) else EXIT_FAILURE
        if args.subject == Subject.QUIX or (args.suite and SUITES[args.suite].comparison):
            quix_python()  # its virtualenv, before any run starts: ConfigError with the command that makes it
        started = provenance(settings, args.consumer_arg)  # before the runs: the load they start under
        typed = sys.argv[1:] if argv is None else argv
        results = run_runs(args, settings, args.runs_dir or args.results_json.parent / "runs")
        results = {
            **results,
            "command": "python test_pipeline.py " + shlex.join(masked_arguments(typed)),  # secrets: ***
            "finished_at": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            "provenance": started,
            "environment": environment(settings),
            "broker_note": broker_note(settings),
        }
        write_outputs(results, args)
        written = "" if args.no_report else f" and {args.report}"
        print(results["verdict"])
        print(f"results in {args.results_json}{written}")
        return EXIT_OK if results["passed"] else EXIT_FAILURE

    with interrupt_once():  # Ctrl-C or SIGTERM stops the run's subprocesses on the way out
        return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

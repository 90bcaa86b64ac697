"""Does the harness measure what an independent reader measures? Its p99 beside a librdkafka reader's.

Runs one scenario in pairs with ``test_pipeline.py`` (our consumer, streaming): run A as usual,
timed by the harness's own latency reader; run B on a named run's topics with
``benchmarks.rdkafka_reader`` (librdkafka, read_committed, one record per poll) reading the
predictions beside it. The goal (issue 14): the harness's p99 from the A runs within 20% of the
librdkafka reader's p99 from the B runs (medians over ``--repeats`` pairs: two runs of one
scenario differ by more than the instruments do). The harness's figure for the B runs is shown
too: the same events, timed by both readers at once. Exit 0 when within the goal, 1 when not.

    .venv/bin/python -m benchmarks.check_instrument                              # 1,000/s for 30 s, exactly-once
    .venv/bin/python -m benchmarks.check_instrument --events-per-sec 5000 --duration 20 --guarantee at-least-once

Needs the broker up (``make kafka-up``) and takes about twice the duration plus a minute.
"""

from __future__ import annotations

import logging
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from churnstream.cli.common import (
    add_logging_options,
    make_parser,
    positive_number,
    run,
    setup_logging,
    values,
    whole_number,
)
from churnstream.contract.outputs import Guarantee, Mode
from churnstream.files import write_json_atomically
from churnstream.harness import figures as fmt
from churnstream.harness.analysis import spread
from churnstream.harness.plan import RunTopics
from churnstream.kafka.clients import make_admin
from churnstream.kafka.topics import delete_topics
from churnstream.settings import PROJECT_ROOT, load_settings

logger = logging.getLogger("benchmarks.check_instrument")

WITHIN = 0.20  # the goal: the two p99s within 20% of each other


def harness_run(args: Any, results: Path, *extra: str) -> dict[str, Any]:
    command = [sys.executable, str(PROJECT_ROOT / "test_pipeline.py"), "--mode", Mode.STREAMING, "--no-report"]
    command += ["--events-per-sec", f"{args.events_per_sec:g}", "--duration", f"{args.duration:g}"]
    command += ["--guarantee", args.guarantee, "--results-json", str(results), *extra]
    with results.with_suffix(".log").open("wb") as log:
        completed = subprocess.run(command, cwd=PROJECT_ROOT, check=False, timeout=args.duration + 600,
                                   stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    if not results.is_file():
        raise SystemExit(f"test_pipeline.py wrote no results (exit {completed.returncode}); see {log.name}")
    return orjson.loads(results.read_bytes())


def with_rdkafka_reader(args: Any, out_dir: Path, index: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """A B run: the harness on a named run's topics, the librdkafka reader on its prediction topic."""
    settings = load_settings()
    name = f"check-{uuid.uuid4().hex[:8]}"
    topics = RunTopics.named(settings, name)
    ready = out_dir / f"rdkafka-{index}.ready"
    ready.unlink(missing_ok=True)
    reader_out = out_dir / f"rdkafka-{index}.json"
    reader = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.rdkafka_reader", "--topic", topics.predictions, "--out", str(reader_out),
         "--expect", str(int(args.events_per_sec * args.duration)), "--ready-file", str(ready),
         "--timeout", f"{args.duration + 300:g}"],
        cwd=PROJECT_ROOT,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not ready.exists() and reader.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        harness = harness_run(args, out_dir / f"b-{index}.json", "--run-name", name)
        reader.wait(timeout=60)
    finally:
        if reader.poll() is None:
            reader.terminate()
            reader.wait(timeout=30)
        admin = make_admin(settings, client_id="check-instrument")
        try:
            delete_topics(admin, settings, topics.all_topics())
        finally:
            admin.close()
    if not reader_out.is_file():
        raise SystemExit(f"the librdkafka reader wrote nothing (exit {reader.returncode})")
    return harness, orjson.loads(reader_out.read_bytes())


def _row(name: str, p99s: list[float | None]) -> str:
    present = [v for v in p99s if v is not None]
    median = spread(present)["median"]
    return f"{name:<44}{fmt.ms(median):>10}   runs: " + ", ".join(fmt.ms(v) for v in p99s)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.check_instrument", __doc__.split("\n\n")[0])
    parser.add_argument("--events-per-sec", type=positive_number, default=1000.0, help="(default %(default)s)")
    parser.add_argument("--duration", type=positive_number, default=30.0, help="seconds per run (default %(default)s)")
    parser.add_argument("--guarantee", choices=values(Guarantee), default=Guarantee.EXACTLY_ONCE.value)
    parser.add_argument("--repeats", type=whole_number, default=3, help="pairs of runs (default %(default)s)")
    parser.add_argument("--out-dir", type=Path, default=PROJECT_ROOT / "results" / "check-instrument")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        args.out_dir.mkdir(parents=True, exist_ok=True)
        pairs = []
        for index in range(args.repeats):
            plain = harness_run(args, args.out_dir / f"a-{index}.json")
            beside, independent = with_rdkafka_reader(args, args.out_dir, index)
            started = beside["scenarios"][0]["producer_started_at"]
            late = independent["assigned_at"] is None or independent["assigned_at"] > started
            pairs.append({"a_harness": plain["latency_ms"], "b_harness": beside["latency_ms"],
                          "b_librdkafka": independent, "late_reader": late})  # fmt: skip
            logger.info("pair %d: A %s, B librdkafka %s", index + 1, plain["latency_ms"]["p99"],
                        independent["latency_ms"]["p99"])  # fmt: skip
        a_p99 = [p["a_harness"]["p99"] for p in pairs]
        b_reader_p99 = [p["b_librdkafka"]["latency_ms"]["p99"] for p in pairs]
        b_harness_p99 = [p["b_harness"]["p99"] for p in pairs]
        ratio = _ratio(spread(a_p99)["median"], spread(b_reader_p99)["median"])
        late = any(p["late_reader"] for p in pairs)
        within = ratio is not None and abs(ratio - 1.0) <= WITHIN and not late
        print(f"scenario: {plain['scenarios'][0]['plan_text']}; {args.repeats} pair(s) of runs, A then B")
        print(f"{'p99, end to end':<44}{'median':>10}")
        print(_row("A runs: the harness's latency reader", a_p99))
        print(_row("B runs: the librdkafka reader", b_reader_p99))
        print(_row("B runs: the harness's reader, same events", b_harness_p99))
        verdict = "PASS" if within else "FAIL"
        print(f"harness (A) / librdkafka (B) = {fmt.ratio(ratio)}; goal: within {WITHIN:.0%} -> {verdict}")
        if late:
            print("note: the librdkafka reader was assigned its partitions after a producer started; rerun")
        write_json_atomically(args.out_dir / "check.json", {"plan": plain["scenarios"][0]["plan_text"],
                              "pairs": pairs, "ratio": ratio, "within_goal": within, "late_reader": late})  # fmt: skip
        return 0 if within else 1

    return run(body)


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    return numerator / denominator if numerator is not None and denominator else None


if __name__ == "__main__":
    raise SystemExit(main())

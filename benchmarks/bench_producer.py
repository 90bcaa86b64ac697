"""Benchmark producer.py as users run it: requested vs achieved rate, and batch throughput.

``python -m benchmarks.bench_producer`` (about 3 minutes with the defaults; ``--seconds 3`` for a
smoke check). Each run is the real ``producer.py`` in a subprocess, on a fresh topic of its own,
against the broker named by the settings (``KAFKA_BOOTSTRAP_SERVERS``, default the local one).
The figures come from each run's ``--summary-json``; the "on topic" column counts what the
broker holds afterwards, so a figure is never taken on the producer's word alone.

Not a timed test: on a shared machine the numbers move. It exits 1 when a run failed or a rate
within the goal (up to ``--goal-max``) missed the ±2 % tolerance, so it can still gate a change.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kafka import TopicPartition

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.contract.outputs import Mode
from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin, make_consumer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.settings import ENV_CHECKPOINT_DIR, ENV_TOPIC_RAW, PROJECT_ROOT, Settings, load_settings

logger = logging.getLogger("benchmarks.bench_producer")

PRODUCER = PROJECT_ROOT / "producer.py"
DEFAULT_RATES = "1,10,100,1000,2000,5000,50000"
TOLERANCE = 0.02  # the goal: achieved within ±2 % of requested


@dataclass
class RateResult:
    requested: float
    sent: int
    acknowledged: int
    on_topic: int
    elapsed_s: float
    achieved: float
    max_sustainable: float | None
    exit_code: int

    @property
    def error(self) -> float:
        return (self.achieved - self.requested) / self.requested


@dataclass
class BatchResult:
    repeat: int
    rows: int
    acknowledged: int
    on_topic: int
    elapsed_s: float
    events_per_sec: float
    exit_code: int


def _parse_list(text: str, kind: type) -> list[Any]:
    return [kind(part) for part in text.split(",") if part.strip()]


def run_producer(args: list[str], topic: str, workdir: Path, timeout_s: float) -> tuple[int, dict[str, Any]]:
    """One real producer.py run on its own topic and checkpoint folder; returns (exit code, summary)."""
    summary_path = workdir / f"{topic}.summary.json"
    env = {**os.environ, ENV_TOPIC_RAW: topic, ENV_CHECKPOINT_DIR: str(workdir / "checkpoints")}
    command = [sys.executable, str(PRODUCER), *args, "--summary-json", str(summary_path), "-q"]
    logger.info("running %s", " ".join(command[1:]))
    result = subprocess.run(
        command, env=env, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        timeout=timeout_s, check=False,
    )  # fmt: skip
    for line in result.stderr.strip().splitlines():
        logger.info("  producer: %s", line)
    if not summary_path.is_file():
        raise PipelineError(f"producer.py exited {result.returncode} without a summary: {result.stderr.strip()}")
    return result.returncode, json.loads(summary_path.read_text())


def count_on_topic(settings: Settings, topic: str) -> int:
    """Records on the topic according to the broker (sum of end offsets; the topics are fresh)."""
    consumer = make_consumer(settings, enable_auto_commit=False)
    try:
        with kafka_errors_translated(settings):
            partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
            return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def format_rate_table(results: list[RateResult], goal_max: float) -> str:
    header = (
        f"{'requested/s':>12} {'sent':>9} {'on topic':>9} {'elapsed s':>10} {'achieved/s':>11} {'error':>8}  verdict"
    )
    lines = [header, "-" * len(header)]
    for r in results:
        if r.exit_code != 0:
            verdict = f"FAILED (exit {r.exit_code})"
        elif r.max_sustainable is not None:
            verdict = f"warned: max sustainable ~{r.max_sustainable:,.0f}/s"
        elif abs(r.error) <= TOLERANCE:
            verdict = "ok (within 2 %)"
        else:
            verdict = "MISSED 2 %" if r.requested <= goal_max else "beyond the goal"
        lines.append(
            f"{r.requested:>12,g} {r.sent:>9,} {r.on_topic:>9,} {r.elapsed_s:>10.3f} {r.achieved:>11,.2f} "
            f"{r.error:>+8.2%}  {verdict}"
        )
    return "\n".join(lines)


def format_batch_table(results: list[BatchResult]) -> str:
    header = f"{'repeat':>6} {'events':>9} {'on topic':>9} {'elapsed s':>10} {'events/s':>10}  result"
    lines = [header, "-" * len(header)]
    for r in results:
        result = "ok" if r.exit_code == 0 and r.on_topic == r.rows == r.acknowledged else f"FAILED (exit {r.exit_code})"
        lines.append(
            f"{r.repeat:>6} {r.rows:>9,} {r.on_topic:>9,} {r.elapsed_s:>10.3f} {r.events_per_sec:>10,.0f}  {result}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = make_parser("python -m benchmarks.bench_producer", __doc__.split("\n\n")[0] if __doc__ else "")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of each rate run (default %(default)s)")
    parser.add_argument("--rates", default=DEFAULT_RATES, help="requested rates, comma-separated (default %(default)s)")
    parser.add_argument(
        "--goal-max", type=float, default=5000, help="rates up to this must be met within 2 %% (default %(default)g)"
    )
    parser.add_argument(
        "--batch-repeats", default="1,15", help="batch runs, as --repeat values, comma-separated (default %(default)s)"
    )
    parser.add_argument("--batch-limit", type=int, help="only the first N rows in batch runs (for a smoke check)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--keep-topics", action="store_true", help="keep the benchmark topics (default: delete them)")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)
    rates = _parse_list(args.rates, float)
    repeats = _parse_list(args.batch_repeats, int)

    def body() -> int:
        settings = load_settings()
        prefix = f"bench-producer-{uuid.uuid4().hex[:8]}"
        topics: list[str] = []
        rate_results: list[RateResult] = []
        batch_results: list[BatchResult] = []
        with tempfile.TemporaryDirectory(prefix="bench-producer-") as tmp:
            workdir = Path(tmp)
            try:
                for rate in rates:
                    topic = f"{prefix}-rate-{rate:g}".replace(".", "_")
                    topics.append(topic)
                    stream_args = ["--mode", Mode.STREAMING, "--events-per-sec", f"{rate:g}", "--seed", "1"]
                    stream_args += ["--duration", f"{args.seconds:g}"]
                    code, summary = run_producer(stream_args, topic, workdir, timeout_s=args.seconds * 3 + 60)
                    rate_results.append(
                        RateResult(
                            requested=rate,
                            sent=summary["sent"],
                            acknowledged=summary["acknowledged"],
                            on_topic=count_on_topic(settings, topic),
                            elapsed_s=summary["elapsed_s"],
                            achieved=summary["achieved_rate"],
                            max_sustainable=summary["max_sustainable_rate"],
                            exit_code=code,
                        )
                    )
                for repeat in repeats:
                    topic = f"{prefix}-batch-x{repeat}"
                    topics.append(topic)
                    batch_args = ["--mode", Mode.BATCH, "--repeat", str(repeat), "--no-progress"]
                    if args.batch_limit:
                        batch_args += ["--limit", str(args.batch_limit)]
                    code, summary = run_producer(batch_args, topic, workdir, timeout_s=600)
                    batch_results.append(
                        BatchResult(
                            repeat=repeat,
                            rows=summary["total_rows"],
                            acknowledged=summary["acknowledged"],
                            on_topic=count_on_topic(settings, topic),
                            elapsed_s=summary["elapsed_s"],
                            events_per_sec=summary["achieved_rate"],
                            exit_code=code,
                        )
                    )
            finally:
                if topics and not args.keep_topics:
                    admin = make_admin(settings)
                    try:
                        with kafka_errors_translated(settings):
                            admin.delete_topics(topics)
                    finally:
                        admin.close()
        cpu = os.cpu_count()
        print(f"producer.py benchmark: {args.seconds:g} s per rate, broker {settings.bootstrap_servers}, {cpu} CPUs")
        if rate_results:
            print("\nStreaming: requested vs achieved rate")
            print(format_rate_table(rate_results, args.goal_max))
        if batch_results:
            print("\nBatch: throughput (acks=all, idempotent, lz4)")
            print(format_batch_table(batch_results))
        if args.json is not None:
            args.json.parent.mkdir(parents=True, exist_ok=True)
            args.json.write_text(
                json.dumps(
                    {
                        "seconds": args.seconds,
                        "rates": [{**asdict(r), "error": r.error} for r in rate_results],
                        Mode.BATCH.value: [asdict(r) for r in batch_results],
                    },
                    indent=2,
                )
            )
        missed = [
            r for r in rate_results if r.exit_code != 0 or (r.requested <= args.goal_max and abs(r.error) > TOLERANCE)
        ]
        failed = [r for r in batch_results if r.exit_code != 0 or r.on_topic != r.rows]
        return 1 if missed or failed else 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

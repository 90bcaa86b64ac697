"""How fast does the consumer score, against what kafka-python itself can move, and against the naive loop?

One run, one broker, one pre-filled raw topic (real Telco rows, cycled, unique event ids):

(a) the bare loop (``benchmarks.bare_loop``, the same one ``--suite benchmark`` runs): kafka-python
    consumes and produces a prediction-shaped output of the same size, no validation, no model;
    one flush+commit (at-least-once) or one transaction (exactly-once) per poll batch. The ceiling.
(b) our consumer: ``churnstream.consuming.run_consumer`` run in this process in batch mode, i.e.
    the real loop, sinks and scoring the CLI runs (only the model is loaded once, up front).
(c) the seed-style loop (``benchmarks.seed_consumer``): per message one ``json.loads``, a one-row
    DataFrame, one ``predict_proba`` of a standard scikit-learn pipeline and one send, auto-commit.
    Slow, so it runs for ``--naive-seconds`` or ``--naive-events``, whichever comes first.

Every run reads the topic from the start with a fresh group and writes to fresh topics. Events/s
are counted from the first records returned by poll to the last batch committed, so the group
join is not counted against anyone. The stage breakdown comes from (b)'s own timers.

    .venv/bin/python -m benchmarks.bench_consumer --events 20000
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import orjson
from kafka.structs import TopicPartition

from benchmarks import bare_loop, seed_consumer
from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, values
from churnstream.consumer.options import (
    DEFAULT_MAX_BATCH,
    PRODUCER_BATCH_SIZE,
    ConsumerOptions,
)
from churnstream.consumer.run import run_consumer
from churnstream.contract.events import (
    load_contract,
    ts_to_epoch_ms,
    utc_now_iso,
)
from churnstream.contract.outputs import Guarantee, Mode, decode_prediction
from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin, make_consumer, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.topics import ensure_topics
from churnstream.lifecycle import StopFlag, tune_garbage_collector
from churnstream.ml.model import ChurnModel, load_model
from churnstream.ml.store import resolve_model
from churnstream.producer.rows import PreparedRow, build_value, prepare_rows
from churnstream.settings import PROJECT_ROOT, Settings, load_settings

logger = logging.getLogger("benchmarks.bench_consumer")

STAGES = ("poll", "decode", "predict", "encode", "send", "flush", "commit")


def telco_rows(settings: Settings) -> list[PreparedRow]:
    """The data set's rows as the producer prepares them (typed by the schema, each with its key)."""
    return prepare_rows(settings.data_path, load_contract(settings.schema_path)).valid_rows


def fill_topic(settings: Settings, topic: str, events: int) -> int:
    """Produce ``events`` real rows (cycled) with unique event ids; returns the mean value size."""
    rows = telco_rows(settings)
    producer = make_producer(settings, client_id="bench-fill", batch_size=PRODUCER_BATCH_SIZE, linger_ms=5)
    total_bytes = 0
    try:
        stamp = utc_now_iso()
        for index in range(events):
            row = rows[index % len(rows)]
            value = build_value(row, event_id=f"bench-{index}", event_ts=stamp)
            total_bytes += len(value)
            producer.send(topic, key=row.key, value=value)
        with kafka_errors_translated(settings):
            producer.flush(timeout=120)
    finally:
        producer.close()
    return total_bytes // max(events, 1)


def _create_topic(settings: Settings, topic: str) -> None:
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [topic])
    finally:
        admin.close()


def passthrough(settings: Settings, events: int, guarantee: str, max_batch: int, timeout_s: float) -> dict[str, Any]:
    """(a): the bare loop, in this process, on a fresh group and output topic."""
    tag = uuid.uuid4().hex[:8]
    run_settings = replace(
        settings, consumer_group=f"bench-pass-{tag}", topic_predictions=f"{settings.topic_raw}-pass-{tag}"
    )
    _create_topic(run_settings, run_settings.topic_predictions)
    summary = bare_loop.run_loop(
        run_settings, Guarantee(guarantee), StopFlag(), events, max_batch=max_batch, time_limit_s=timeout_s
    )
    return {
        "events": summary["consumed"],
        "seconds": summary["processing_s"],
        "events_per_sec": summary["events_per_sec"],
        "cpu_us_per_event": summary["cpu_s"] / max(summary["consumed"], 1) * 1e6,
    }


def ours(
    settings: Settings, model: ChurnModel, guarantee: str, max_batch: int, slot_dir: Path, *, variant: str | None = None
) -> dict[str, Any]:
    """(b): the real consumer loop, in this process, in batch mode (stops when caught up).

    ``variant``: "metrics" serves /metrics (and runs the lag probe) while a thread scrapes it every
    second, as Prometheus would; "shadow" scores every batch with a second model too; "no-reasons" runs
    with ``--reasons off`` (the baseline of ``--compare reasons``, whose other side is the default, on).
    """
    tag = uuid.uuid4().hex[:8]
    run_settings = replace(
        settings,
        consumer_group=f"bench-ours-{tag}",
        topic_predictions=f"{settings.topic_raw}-pred-{tag}",
        topic_deadletter=f"{settings.topic_raw}-dlq-{tag}",
        topic_predictions_shadow=f"{settings.topic_raw}-shadow-{tag}",
    )
    port = _free_port() if variant == "metrics" else None
    options = ConsumerOptions(
        mode=Mode.BATCH, guarantee=guarantee, max_batch=max_batch, window_size=10**9, log_interval_s=0,
        metrics_port=port, reasons=variant != "no-reasons",
    )  # fmt: skip
    shadow = model if variant == "shadow" else None  # the same model: the cost of a second one, whatever it is
    with _scraping(port):
        summary = run_consumer(run_settings, options, model=model, slot_dir=slot_dir, shadow=shadow).to_json()
    return {
        "events": summary["consumed"],
        "seconds": summary["processing_s"],
        "events_per_sec": summary["events_per_sec"],
        "cpu_us_per_event": summary["processing_cpu_s"] / max(summary["consumed"], 1) * 1e6,
        "dead_lettered": summary["dead_lettered"],
        "batches": summary["batches"],
        "stage_seconds": summary["stage_seconds"],
        "transactions_aborted": summary["transactions_aborted"],
    }


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def _scraping(port: int | None, every_s: float = 1.0) -> Iterator[None]:
    """GET /metrics every ``every_s`` while the block runs (nothing without a port)."""
    if port is None:
        yield
        return
    stop = threading.Event()

    def scrape() -> None:
        while not stop.wait(every_s):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read()

    thread = threading.Thread(target=scrape, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def naive(settings: Settings, max_events: int, max_seconds: float) -> dict[str, Any]:
    """(c): the seed-style loop this project replaces, on a fresh group and output topic."""
    tag = uuid.uuid4().hex[:8]
    run_settings = replace(
        settings, consumer_group=f"bench-naive-{tag}", topic_predictions=f"{settings.topic_raw}-naive-{tag}"
    )
    _create_topic(run_settings, run_settings.topic_predictions)
    pipeline = seed_consumer.train_standard_pipeline(run_settings)
    summary = seed_consumer.run_seed(run_settings, pipeline, StopFlag(), max_events, max_seconds)
    return {
        "events": summary["consumed"],
        "seconds": summary["processing_s"],
        "events_per_sec": summary["events_per_sec"],
    }


def latency(settings: Settings, guarantee: str, fetch_max_wait_ms: int, rate: int, seconds: float) -> dict[str, Any]:
    """End-to-end latency at a steady rate: event_ts (stamped at send) to readable (read_committed).

    The consumer runs as a real ``consumer.py`` subprocess here, so the producer and the reader in
    this process do not share its interpreter lock.
    """
    tag = uuid.uuid4().hex[:8]
    run_settings = replace(
        settings,
        topic_raw=f"bench-lat-{tag}",
        topic_predictions=f"bench-lat-{tag}-pred",
        topic_deadletter=f"bench-lat-{tag}-dlq",
        consumer_group=f"bench-lat-{tag}",
    )
    _create_topic(run_settings, run_settings.topic_raw)
    env = {**os.environ, **run_settings.environment(reveal_secrets=True), "CHURN_DOTENV": "none"}
    with tempfile.NamedTemporaryFile("w+", prefix="bench-lat-", suffix=".log") as log:
        args = ["--mode", Mode.STREAMING, "--guarantee", guarantee, "--fetch-max-wait-ms", str(fetch_max_wait_ms)]
        process = subprocess.Popen(
            [sys.executable, "-m", "churnstream.cli.consumer", *args, "--log-interval", "0"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            _wait_for_assignment(Path(log.name), process)
            latencies, scored = _measure_latency(run_settings, rate, seconds)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=60)
    ranked = sorted(latencies)
    scored.sort()

    def percentile(share: float, values: list[float] = ranked) -> float:
        return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")

    return {
        "guarantee": guarantee,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "rate": rate,
        "events": len(ranked),
        "p50_ms": percentile(0.50),
        "p95_ms": percentile(0.95),
        "p99_ms": percentile(0.99),
        "max_ms": ranked[-1] if ranked else float("nan"),
        "p50_until_scored_ms": percentile(0.50, scored),  # event_ts -> processed_ts: before the send
    }


def _wait_for_assignment(log: Path, process: subprocess.Popen[str], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PipelineError(f"consumer.py exited with {process.returncode}: {log.read_text()[-500:]}")
        if re.search(r"partitions assigned: (?!none)", log.read_text()):
            return
        time.sleep(0.05)
    raise PipelineError("consumer.py did not get its partitions within 60 s")


def _measure_latency(settings: Settings, rate: int, seconds: float) -> tuple[list[float], list[float]]:
    rows = telco_rows(settings)
    total = int(rate * seconds)
    latencies: list[float] = []
    scored: list[float] = []  # event_ts -> processed_ts (set once the batch is scored)
    done = threading.Event()

    def read() -> None:
        reader = make_consumer(
            settings,
            client_id="bench-latency-reader",
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
        )
        try:
            deadline = time.monotonic() + seconds + 60
            while len(latencies) < total and time.monotonic() < deadline and not done.is_set():
                if not reader.assignment():
                    partitions = reader.partitions_for_topic(settings.topic_predictions) or set()
                    reader.assign([TopicPartition(settings.topic_predictions, p) for p in partitions])
                for batch in reader.poll(timeout_ms=100).values():
                    arrived_ms = time.time() * 1000.0
                    for record in batch:
                        prediction = decode_prediction(record.value)
                        sent_ms = ts_to_epoch_ms(prediction.event_ts)
                        latencies.append(arrived_ms - sent_ms)
                        scored.append(ts_to_epoch_ms(prediction.processed_ts) - sent_ms)
        finally:
            reader.close()

    thread = threading.Thread(target=read, name="latency-reader", daemon=True)
    thread.start()
    producer = make_producer(settings, client_id="bench-latency-producer")
    try:
        started = time.monotonic()
        for index in range(total):
            pause = started + index / rate - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            row = rows[index % len(rows)]
            producer.send(settings.topic_raw, key=row.key, value=build_value(row, f"lat-{index}", utc_now_iso()))
        producer.flush()
    finally:
        producer.close()
    thread.join(timeout=60)
    done.set()
    return latencies, scored


def _median(values: list[float]) -> float:
    ranked = sorted(values)
    return ranked[len(ranked) // 2]


def _pairs(
    times: int, measure_a: Callable[[], dict[str, Any]], measure_b: Callable[[], dict[str, Any]]
) -> dict[str, Any]:
    """Run (a) then (b), ``times`` over: on a shared machine the load drifts, so compare neighbours."""
    a_runs: list[dict[str, Any]] = []
    b_runs: list[dict[str, Any]] = []
    for _ in range(times):
        a_runs.append(measure_a())
        b_runs.append(measure_b())
    median_b = sorted(b_runs, key=lambda r: r["events_per_sec"])[len(b_runs) // 2]
    return {
        "a_events_per_sec": _median([r["events_per_sec"] for r in a_runs]),
        "b_events_per_sec": _median([r["events_per_sec"] for r in b_runs]),
        "b_over_a": _median([b["events_per_sec"] / a["events_per_sec"] for a, b in zip(a_runs, b_runs, strict=True)]),
        "a_cpu_us_per_event": _median([r["cpu_us_per_event"] for r in a_runs]),
        "b_cpu_us_per_event": _median([r["cpu_us_per_event"] for r in b_runs]),
        "a_runs": [round(r["events_per_sec"], 1) for r in a_runs],
        "b_runs": [round(r["events_per_sec"], 1) for r in b_runs],
        "b_median_run": median_b,
    }


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m benchmarks.bench_consumer",
        "Measure the bare loop vs our consumer vs the seed-style loop on one pre-filled topic.",
    )
    parser.add_argument("--events", type=int, default=20_000, help="events in the raw topic (default %(default)s)")
    parser.add_argument(
        "--max-batch", type=int, default=DEFAULT_MAX_BATCH, help="max events per poll (default %(default)s)"
    )
    parser.add_argument(
        "--guarantee",
        choices=(*values(Guarantee), "both"),
        default="both",
        help="which guarantee(s) to measure (default %(default)s)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="pairs of (a) then (b) runs; medians are shown (default %(default)s)"
    )
    parser.add_argument("--naive-seconds", type=float, default=5.0, help="time limit of the naive loop")
    parser.add_argument("--naive-events", type=int, default=500, help="event limit of the naive loop")
    parser.add_argument(
        "--latency",
        action="store_true",
        help="also measure end-to-end latency at each --latency-rates rate and --fetch-waits value",
    )
    parser.add_argument(
        "--latency-rates", default="1000", help="events/s for the latency runs, comma-separated (default %(default)s)"
    )
    parser.add_argument("--latency-seconds", type=float, default=10.0, help="length of each latency run")
    parser.add_argument(
        "--fetch-waits", default="500,50,20", help="fetch_max_wait_ms values for the latency runs (default %(default)s)"
    )
    parser.add_argument(
        "--compare",
        choices=("metrics", "shadow", "reasons"),
        help="instead of (a)-(c): our consumer as it is, against itself with metrics served and scraped every "
        "second, or with a shadow model; or with --reasons off against on (the default): interleaved pairs, "
        "--repeat times",
    )
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)
    # The consumer logs every start and stop at INFO; keep the benchmark's stderr readable.
    logging.getLogger("churnstream").setLevel(logging.DEBUG if args.verbose >= 2 else logging.WARNING)

    def body() -> int:
        base = load_settings()
        topic = f"bench-raw-{uuid.uuid4().hex[:8]}"
        settings = replace(base, topic_raw=topic)
        model = load_model(*resolve_model(settings).paths)
        tune_garbage_collector()  # what the consumer does at start-up; here it applies to every run alike
        _create_topic(settings, topic)
        mean_bytes = fill_topic(settings, topic, args.events)
        print(
            f"topic {topic}: {args.events} events of {mean_bytes} bytes on average, "
            f"{settings.topic_partitions} partitions, broker {settings.bootstrap_servers}"
        )
        guarantees = tuple(Guarantee) if args.guarantee == "both" else (args.guarantee,)
        timeout_s = max(60.0, args.events / 500)
        results: dict[str, Any] = {"events": args.events, "value_bytes": mean_bytes, "max_batch": args.max_batch}
        if args.compare:
            baseline = "no-reasons" if args.compare == "reasons" else None
            variant = None if args.compare == "reasons" else args.compare
            with tempfile.TemporaryDirectory(prefix="bench-slots-") as slots:
                for guarantee in guarantees:
                    results[guarantee] = _pairs(
                        args.repeat,
                        lambda g=guarantee: ours(settings, model, g, args.max_batch, Path(slots), variant=baseline),
                        lambda g=guarantee: ours(settings, model, g, args.max_batch, Path(slots), variant=variant),
                    )
                    pair = results[guarantee]
                    what = "without reasons" if args.compare == "reasons" else "as it is"
                    print(
                        f"--- {guarantee}, {args.repeat} interleaved pair(s): {what} {pair['a_events_per_sec']:,.0f} "
                        f"events/s {pair['a_runs']}, with {args.compare} {pair['b_events_per_sec']:,.0f} events/s "
                        f"{pair['b_runs']}: {pair['b_over_a']:.1%} of the throughput (median of the pairs' ratios); "
                        f"CPU per event {pair['a_cpu_us_per_event']:.1f} -> {pair['b_cpu_us_per_event']:.1f} us"
                    )
            if args.json is not None:
                args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
            return 0
        with tempfile.TemporaryDirectory(prefix="bench-slots-") as slots:
            for guarantee in guarantees:
                results[guarantee] = _pairs(
                    args.repeat,
                    lambda g=guarantee: passthrough(settings, args.events, g, args.max_batch, timeout_s),
                    lambda g=guarantee: ours(settings, model, g, args.max_batch, Path(slots)),
                )
        results["c_naive"] = naive(settings, args.naive_events, args.naive_seconds)
        _report(results, guarantees)
        if args.latency:
            runs = [
                latency(settings, guarantee, int(wait), int(rate), args.latency_seconds)
                for rate in args.latency_rates.split(",")
                for guarantee in guarantees
                for wait in args.fetch_waits.split(",")
            ]
            results["latency"] = runs
            for entry in runs:
                print(
                    f"latency {entry['guarantee']:13} fetch_max_wait_ms={entry['fetch_max_wait_ms']:<4} "
                    f"at {entry['rate']}/s over {entry['events']} events: p50 {entry['p50_ms']:.0f} ms, "
                    f"p95 {entry['p95_ms']:.0f} ms, p99 {entry['p99_ms']:.0f} ms, max {entry['max_ms']:.0f} ms "
                    f"(p50 until scored {entry['p50_until_scored_ms']:.0f} ms)"
                )
        if args.json is not None:
            args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        return 0

    return run(body)


def _report(results: dict[str, Any], guarantees: tuple[str, ...]) -> None:
    naive_rate = results["c_naive"]["events_per_sec"]
    print(f"(c) seed-style loop:         {naive_rate:9.1f} events/s  ({results['c_naive']['events']} events)")
    for guarantee in guarantees:
        pair = results[guarantee]
        b = pair["b_median_run"]
        print(f"--- {guarantee} (median of {len(pair['b_runs'])} interleaved pairs)")
        print(f"(a) bare loop (ceiling):    {pair['a_events_per_sec']:9.1f} events/s  runs {pair['a_runs']}")
        print(f"(b) our consumer:           {pair['b_events_per_sec']:9.1f} events/s  runs {pair['b_runs']}")
        print(f"    b/a = {pair['b_over_a']:.0%} (goal >= 85%)", end="")
        print(f"   b/c = {pair['b_events_per_sec'] / naive_rate:.0f}x (goal >= 100x)" if naive_rate else "   b/c = n/a")
        cpu_a, cpu_b = pair["a_cpu_us_per_event"], pair["b_cpu_us_per_event"]
        print(f"    CPU per event: a {cpu_a:.1f} us, b {cpu_b:.1f} us -> b/a by CPU = {cpu_a / cpu_b:.0%}")
        stages = b["stage_seconds"]
        per_event = {name: stages.get(name, 0.0) / max(b["events"], 1) * 1e6 for name in STAGES}
        print("    (b) per event, us: " + "  ".join(f"{name} {per_event[name]:.1f}" for name in STAGES))
    if len(guarantees) == len(Guarantee):
        eos = results[Guarantee.EXACTLY_ONCE]["b_events_per_sec"]
        alo = results[Guarantee.AT_LEAST_ONCE]["b_events_per_sec"]
        print(f"exactly-once vs at-least-once, ours: {eos / alo:.0%} of the throughput")


if __name__ == "__main__":
    raise SystemExit(main())

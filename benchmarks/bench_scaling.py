"""How does the consumer group's throughput grow with consumer processes, on one broker and on three?

For each broker count (``--brokers``, default 1,3) the benchmark starts its own KRaft cluster in a
temporary home on free ports (never the shared broker) and, for each consumer count
(``--consumers``, default 1,2,4), ``--repeat`` times:

1. creates a fresh raw topic (``--partitions``, default 6; replication min(3, brokers)) and writes
   ``--events`` real Telco rows into it, cycled in file order with fixed event ids and keys (so
   every run spreads the same events over the same partitions), inside ONE open transaction;
2. starts that many ``consumer.py`` processes (streaming, exactly-once: what a user runs) in a
   fresh group and waits until the group is stable with every process assigned its partitions.
   Being ``read_committed``, they see nothing yet;
3. commits the transaction: every event becomes readable at once to a group that is already
   balanced. (With a topic filled beforehand, the first process to finish importing scikit-learn
   would take all partitions and start alone while the others still load, then the group would
   rebalance: a measure of start-up order, not of scaling.);
4. watches the group's committed offsets until they cover every event. Throughput = events /
   (time the last batch was committed - time the events became readable);
5. stops the consumers with SIGTERM (a clean stop) and reads their ``--summary-json``.

CPU is read from /proc at steps 3 and 4: the consumer processes and broker JVMs
(``/proc/<pid>/stat``), this process, and the whole machine (``/proc/stat``), so each run says
which resource was busy. Other work on the machine shows as "other".

    .venv/bin/python -m benchmarks.bench_scaling                                   # the documented run
    .venv/bin/python -m benchmarks.bench_scaling --brokers 1 --events 10000 --consumers 1,2   # quick
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only: no display on servers and CI
import matplotlib.pyplot as plt
import orjson
from kafka import KafkaProducer
from kafka.structs import TopicPartition

from churnstream import localkafka as broker
from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging, values
from churnstream.consumer.options import PRODUCER_BATCH_SIZE
from churnstream.contract.events import load_contract, utc_now_iso
from churnstream.contract.outputs import Guarantee
from churnstream.errors import EXIT_FAILURE, PipelineError
from churnstream.harness.processes import CONSUMER, ManagedProcess, script, wait_for_group
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.topics import ensure_topics
from churnstream.ml.store import resolve_model
from churnstream.producer.rows import PreparedRow, build_value, prepare_rows
from churnstream.settings import (
    ENV_BOOTSTRAP_SERVERS,
    ENV_CHECKPOINT_DIR,
    ENV_CONSUMER_GROUP,
    ENV_DATA_PATH,
    ENV_DOTENV,
    ENV_MODEL_PATH,
    ENV_TOPIC_DEADLETTER,
    ENV_TOPIC_PARTITIONS,
    ENV_TOPIC_PREDICTIONS,
    ENV_TOPIC_RAW,
    PROJECT_ROOT,
    Settings,
    load_settings,
)

logger = logging.getLogger("benchmarks.bench_scaling")

DEFAULT_OUT_DIR = PROJECT_ROOT / "results" / "scaling"
OFFSETS_POLL_S = 0.05  # how often the group's committed offsets are read: the end time's resolution
FILL_TRANSACTION_TIMEOUT_MS = 600_000  # the fill stays open while the consumers start (broker max 15 min)
# Four processes importing scikit-learn on two busy cores took over 60 s (the harness's wait) to join.
GROUP_JOIN_TIMEOUT_S = 240.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


# --- CPU from /proc ------------------------------------------------------------------------


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds of one process (all its threads) so far; 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime (fields 14 and 15)


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine, all cores, since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / CLOCK_TICKS, total / CLOCK_TICKS


@dataclass(frozen=True)
class CpuSample:
    consumers: float
    brokers: float
    this_process: float
    machine_busy: float

    @classmethod
    def take(cls, consumer_pids: Sequence[int], broker_pids: Sequence[int]) -> CpuSample:
        return cls(
            consumers=sum(process_cpu_s(pid) for pid in consumer_pids),
            brokers=sum(process_cpu_s(pid) for pid in broker_pids),
            this_process=process_cpu_s(os.getpid()),
            machine_busy=machine_cpu_s()[0],
        )


def cpu_us_per_event(before: CpuSample, after: CpuSample, events: int) -> dict[str, float]:
    """CPU time per event, which the machine's other load barely changes: what an event costs."""
    return {
        "consumers": round((after.consumers - before.consumers) / events * 1e6, 1),
        "brokers": round((after.brokers - before.brokers) / events * 1e6, 1),
    }


def cores_used(before: CpuSample, after: CpuSample, seconds: float) -> dict[str, float]:
    """Average cores busy over the interval, by who used them."""
    used = {
        "consumers": (after.consumers - before.consumers) / seconds,
        "brokers": (after.brokers - before.brokers) / seconds,
        "benchmark": (after.this_process - before.this_process) / seconds,
        "machine": (after.machine_busy - before.machine_busy) / seconds,
    }
    used["other"] = max(0.0, used["machine"] - used["consumers"] - used["brokers"] - used["benchmark"])
    return {name: round(value, 2) for name, value in used.items()}


# --- a private cluster ------------------------------------------------------------------------


# --- one run --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunNames:
    raw: str
    predictions: str
    deadletter: str
    group: str

    @classmethod
    def fresh(cls, brokers: int, consumers: int) -> RunNames:
        tag = f"b{brokers}-c{consumers}-{uuid.uuid4().hex[:8]}"
        return cls(f"scale-raw-{tag}", f"scale-pred-{tag}", f"scale-dlq-{tag}", f"scale-group-{tag}")


def fill_in_open_transaction(
    settings: Settings, topic: str, rows: list[PreparedRow], events: int
) -> tuple[KafkaProducer, dict[TopicPartition, int]]:
    """Write ``events`` events in one transaction left open; returns the producer and, per
    partition, the offset after its last event (what the group must commit to be done)."""
    producer = make_producer(
        settings,
        client_id="bench-scaling-fill",
        transactional_id=f"bench-scaling-fill-{uuid.uuid4().hex[:8]}",
        transaction_timeout_ms=FILL_TRANSACTION_TIMEOUT_MS,
        batch_size=PRODUCER_BATCH_SIZE,
        linger_ms=5,
    )
    try:
        with kafka_errors_translated(settings):
            producer.init_transactions()
            producer.begin_transaction()
            stamp = utc_now_iso()
            futures = []
            for index in range(events):
                row = rows[index % len(rows)]
                value = build_value(row, event_id=f"scale-{index}", event_ts=stamp)
                futures.append(producer.send(topic, key=row.key, value=value))
            producer.flush()
            ends: dict[TopicPartition, int] = {}
            for future in futures:
                metadata = future.get(timeout=0)
                tp = TopicPartition(topic, metadata.partition)
                ends[tp] = max(ends.get(tp, 0), metadata.offset + 1)
    except BaseException:
        producer.close(timeout=0)
        raise
    return producer, ends


def partition_split(partitions: int, consumers: int) -> list[int]:
    """Partitions each consumer owns in a balanced group (6 over 4: 2, 2, 1, 1; over 8: six get 1).

    The group finishes when its busiest member does, so the best speed-up over one consumer is
    partitions / max(split), not the number of consumers: 3x for 4 consumers on 6 partitions.
    """
    share, extra = divmod(partitions, consumers)
    return [share + 1] * extra + [share] * (consumers - extra)


def _consumer_env(settings: Settings, names: RunNames, work_dir: Path) -> dict[str, str]:
    """The consumers' whole configuration, explicit: no developer .env, no inherited KAFKA_*."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KAFKA_")}
    env.update(
        {
            ENV_DOTENV: "none",
            "PYTHONUNBUFFERED": "1",
            ENV_BOOTSTRAP_SERVERS: settings.bootstrap_servers,
            ENV_TOPIC_RAW: names.raw,
            ENV_TOPIC_PREDICTIONS: names.predictions,
            ENV_TOPIC_DEADLETTER: names.deadletter,
            ENV_CONSUMER_GROUP: names.group,
            ENV_TOPIC_PARTITIONS: str(settings.topic_partitions),
            ENV_MODEL_PATH: str(settings.model_path),
            ENV_DATA_PATH: str(settings.data_path),
            ENV_CHECKPOINT_DIR: str(work_dir / "checkpoints"),
        }
    )
    return env


def _wait_until_committed(
    settings: Settings,
    group: str,
    ends: dict[TopicPartition, int],
    consumers: Sequence[ManagedProcess],
    timeout_s: float,
) -> float:
    """Poll the group's committed offsets until they reach ``ends``; returns the monotonic time."""
    admin = make_admin(settings, client_id="bench-scaling-watch")
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            with kafka_errors_translated(settings):
                committed = admin.list_group_offsets({group: list(ends)}).get(group, {})
            if all(committed.get(tp) is not None and committed[tp].offset >= end for tp, end in ends.items()):
                return time.monotonic()
            crashed = [c for c in consumers if c.poll() is not None]
            if crashed:
                raise PipelineError(
                    f"{crashed[0].name} exited with code {crashed[0].poll()} mid-run; last lines:\n{crashed[0].tail()}"
                )
            time.sleep(OFFSETS_POLL_S)
    finally:
        admin.close()
    raise PipelineError(f"group {group} did not commit every event within {timeout_s:.0f} s")


def _delete_topics(settings: Settings, names: RunNames) -> None:
    admin = make_admin(settings, client_id="bench-scaling-admin")
    try:
        with kafka_errors_translated(settings):
            admin.delete_topics([names.raw, names.predictions, names.deadletter], raise_errors=False)
    finally:
        admin.close()


def measure(
    settings: Settings,
    layout: broker.Layout,
    consumers: int,
    *,
    rows: list[PreparedRow],
    events: int,
    guarantee: str,
    work_dir: Path,
) -> dict[str, Any]:
    """One run: ``consumers`` consumer.py processes over ``events`` events released at once."""
    names = RunNames.fresh(layout.brokers, consumers)
    run_settings = replace(settings, topic_raw=names.raw, consumer_group=names.group)
    run_dir = work_dir / names.group
    run_dir.mkdir(parents=True)
    admin = make_admin(run_settings, client_id="bench-scaling-admin")
    try:
        ensure_topics(admin, run_settings, [names.raw])
    finally:
        admin.close()
    producer, ends = fill_in_open_transaction(run_settings, names.raw, rows, events)
    env = _consumer_env(run_settings, names, run_dir)
    processes: list[ManagedProcess] = []
    try:
        for index in range(consumers):
            args = script(CONSUMER, "--guarantee", guarantee, "--log-interval", "0")
            args += ["--summary-json", str(run_dir / f"consumer-{index}.json")]
            processes.append(ManagedProcess(f"consumer-{index}", args, env, run_dir / f"consumer-{index}.log"))
        wait_for_group(run_settings, names.group, processes, timeout_s=GROUP_JOIN_TIMEOUT_S)
        consumer_pids = [p.process.pid for p in processes]
        broker_pids = [pid for n in range(layout.brokers) if (pid := broker.node_pid(layout, n)) is not None]
        with kafka_errors_translated(run_settings):
            producer.commit_transaction()  # the gate: every event is readable from now on
        released = time.monotonic()
        before = CpuSample.take(consumer_pids, broker_pids)
        finished = _wait_until_committed(run_settings, names.group, ends, processes, timeout_s=max(60.0, events / 200))
        after = CpuSample.take(consumer_pids, broker_pids)
        codes = [p.stop() for p in processes]
    finally:
        producer.close(timeout=10)
        for process in processes:
            process.stop(timeout=10)
    if any(codes):
        raise PipelineError(f"consumer exit codes {codes} after SIGTERM; logs in {run_dir}")
    summaries = [orjson.loads((run_dir / f"consumer-{i}.json").read_bytes()) for i in range(consumers)]
    consumed = sum(s["consumed"] for s in summaries)
    if consumed != events:
        raise PipelineError(f"the consumers committed {consumed} events, expected {events}; logs in {run_dir}")
    _delete_topics(run_settings, names)
    seconds = finished - released
    return {
        "brokers": layout.brokers,
        "consumers": consumers,
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_sec": round(events / seconds, 1),
        "consumer_events_per_sec": [s["events_per_sec"] for s in summaries],
        "consumer_events": [s["consumed"] for s in summaries],
        "partitions_per_consumer": partition_split(settings.topic_partitions, consumers),
        "transactions_aborted": sum(s["transactions_aborted"] for s in summaries),
        "cores": cores_used(before, after, seconds),
        "cpu_us_per_event": cpu_us_per_event(before, after, events),
    }


# --- the whole benchmark ----------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The median run per (brokers, consumers), with its speed-up over one consumer on as many brokers."""
    cells: dict[tuple[int, int], list[dict[str, Any]]] = {}
    for entry in runs:
        cells.setdefault((entry["brokers"], entry["consumers"]), []).append(entry)
    rows = []
    for (brokers, consumers), entries in sorted(cells.items()):
        rates = [e["events_per_sec"] for e in entries]
        median = sorted(entries, key=lambda e: e["events_per_sec"])[len(entries) // 2]
        rows.append(
            {
                "brokers": brokers,
                "consumers": consumers,
                "events_per_sec": round(statistics.median(rates), 1),
                "runs_events_per_sec": rates,
                "cores": median["cores"],
                "cpu_us_per_event": median["cpu_us_per_event"],
                "consumer_events": median["consumer_events"],
            }
        )
    for row in rows:
        base = next((r for r in rows if r["brokers"] == row["brokers"] and r["consumers"] == 1), None)
        row["speedup"] = round(row["events_per_sec"] / base["events_per_sec"], 2) if base else None
    return rows


def limit_note(row: dict[str, Any], cpu_count: int) -> str:
    """Which resource was the limit in this cell, from where the CPU went."""
    cores = row["cores"]
    busy = cores["machine"] / cpu_count
    if busy >= 0.85:
        return f"CPU: the machine's {cpu_count} cores were {busy:.0%} busy"
    per_consumer = cores["consumers"] / row["consumers"]
    if per_consumer >= 0.6:
        return (
            f"the consumer process(es): {per_consumer:.2f} core each, one batch at a time, the rest of the "
            "time waiting for the batch's transaction round trips"
        )
    return f"not CPU ({busy:.0%} of the machine busy): waiting on the brokers and the network"


def cpu_ceilings(rows: list[dict[str, Any]], cpu_count: int) -> dict[str, dict[str, float]]:
    """Per broker count: the events/s this machine's cores could carry if the pipeline had them all.

    cores / (consumer + broker CPU per event), with the medians over that broker count's runs. CPU
    per event hardly depends on the machine's other load, so this is the figure that carries over
    to a quiet machine with as many cores of the same speed.
    """
    ceilings = {}
    for brokers in sorted({r["brokers"] for r in rows}):
        costs = [r["cpu_us_per_event"] for r in rows if r["brokers"] == brokers]
        consumer_us = statistics.median(c["consumers"] for c in costs)
        broker_us = statistics.median(c["brokers"] for c in costs)
        ceilings[str(brokers)] = {
            "consumer_cpu_us_per_event": round(consumer_us, 1),
            "broker_cpu_us_per_event": round(broker_us, 1),
            "events_per_sec": round(cpu_count / ((consumer_us + broker_us) / 1e6)),
        }
    return ceilings


def run_line(entry: dict[str, Any], cpu_count: int) -> str:
    cores = entry["cores"]
    return (
        f"{entry['brokers']} broker(s), {entry['consumers']} consumer(s): {entry['events_per_sec']:,.0f} events/s "
        f"({entry['seconds']:.2f} s; cores: consumers {cores['consumers']:.2f}, brokers {cores['brokers']:.2f}, "
        f"other {cores['other']:.2f}, machine {cores['machine']:.2f}/{cpu_count})"
    )


def format_table(rows: list[dict[str, Any]], cpu_count: int) -> str:
    header = (
        f"{'brokers':>7} {'consumers':>9} {'events/s':>9} {'speed-up':>8}   "
        f"{'cores used: consumers':>21} {'brokers':>7} {'other':>5} {'machine':>7}   "
        f"{'CPU us/event: consumers':>23} {'brokers':>7}   events per consumer"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        cores = row["cores"]
        lines.append(
            f"{row['brokers']:>7} {row['consumers']:>9} {row['events_per_sec']:>9,.0f} "
            f"{row['speedup'] or 0:>7.2f}x   {cores['consumers']:>21.2f} {cores['brokers']:>7.2f} "
            f"{cores['other']:>5.2f} {cores['machine']:>5.2f}/{cpu_count}   "
            f"{row['cpu_us_per_event']['consumers']:>23.0f} {row['cpu_us_per_event']['brokers']:>7.0f}   "
            f"{' + '.join(f'{n:,}' for n in sorted(row['consumer_events'], reverse=True))}"
        )
    return "\n".join(lines)


def plot(results: dict[str, Any], path: Path) -> Path:
    """Events/s against consumer processes, one line per broker count."""
    figure, axis = plt.subplots(figsize=(7, 4.5))
    rows = results["summary"]
    for index, brokers in enumerate(sorted({r["brokers"] for r in rows})):
        line = [r for r in rows if r["brokers"] == brokers]
        xs = [r["consumers"] for r in line]
        axis.plot(xs, [r["events_per_sec"] for r in line], marker="o", label=f"{brokers} broker(s)")
        for r in line:  # labels above the first line, below the second, so close points stay readable
            offset = (4, 5) if index % 2 == 0 else (4, -12)
            axis.annotate(
                f"{r['events_per_sec']:,.0f}", (r["consumers"], r["events_per_sec"]), fontsize=8,
                textcoords="offset points", xytext=offset,
            )  # fmt: skip
    colours = {line.get_label(): line.get_color() for line in axis.get_lines()}
    for brokers, ceiling in results["cpu_ceiling"].items():
        axis.axhline(
            ceiling["events_per_sec"],
            linestyle="--",
            linewidth=0.8,
            color=colours.get(f"{brokers} broker(s)", "gray"),
            label=f"{brokers} broker(s): CPU ceiling of {results['machine']['cpu_count']} cores",
        )
    one = [r for r in rows if r["consumers"] == 1]
    if one:  # the busiest member sets the pace: 4 consumers on 6 partitions can reach 3x, not 4x
        base = max(r["events_per_sec"] for r in one)
        xs = sorted({r["consumers"] for r in rows})
        partitions = results["partitions"]
        ideal = [base * partitions / max(partition_split(partitions, x)) for x in xs]
        axis.plot(xs, ideal, linestyle=":", color="gray", label=f"ideal with {partitions} partitions, unlimited cores")
    machine = results["machine"]
    axis.set_title(
        f"{results['events']:,} events, {results['partitions']} partitions, {results['guarantee']}, "
        f"{machine['cpu_count']} cores",
        fontsize=10,
    )
    axis.set_xlabel("consumer processes in the group")
    axis.set_ylabel("events per second (whole group)")
    axis.set_xticks(sorted({r["consumers"] for r in rows}))
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path


def _int_list(text: str) -> list[int]:
    try:
        values = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected whole numbers of at least 1, separated by commas")
    return values


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        "python -m benchmarks.bench_scaling",
        "Measure the consumer group's throughput with 1, 2 and 4 consumer processes, on one broker and on three.",
        epilog=__doc__.split("\n\n", 1)[1],
    )
    what = parser.add_argument_group("what to run")
    what.add_argument(
        "--brokers",
        type=_int_list,
        default=[1, 3],
        metavar="LIST",
        help="broker counts, each a private cluster (1 and/or 3; default 1,3)",
    )
    what.add_argument(
        "--consumers", type=_int_list, default=[1, 2, 4], metavar="LIST", help="consumer processes (default 1,2,4)"
    )
    what.add_argument("--events", type=int, default=50_000, help="events per run (default %(default)s)")
    what.add_argument("--partitions", type=int, default=6, help="partitions of the raw topic (default %(default)s)")
    what.add_argument(
        "--guarantee",
        choices=values(Guarantee),
        default=Guarantee.EXACTLY_ONCE.value,
        help="consumer guarantee (default %(default)s)",
    )
    what.add_argument(
        "--repeat", type=int, default=1, help="runs per cell; the median is reported (default %(default)s)"
    )
    output = parser.add_argument_group("output")
    output.add_argument(
        "--out-dir",
        type=Path,
        default=DEFAULT_OUT_DIR,
        help="where scaling.json and scaling.png go (default results/scaling/)",
    )
    output.add_argument("--keep-home", action="store_true", help="keep the clusters' data and the consumer logs")
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if any(b not in (1, 3) for b in args.brokers):
        parser.error("--brokers: the local launcher runs 1 or 3 brokers")
    if args.events < 1 or args.repeat < 1 or args.partitions < 1:
        parser.error("--events, --repeat and --partitions must be at least 1")
    setup_logging(args.verbose, args.quiet, args.log_format)
    # The consumers and the launcher log every step at INFO; keep the benchmark's stderr readable.
    logging.getLogger("churnstream").setLevel(logging.DEBUG if args.verbose >= 2 else logging.WARNING)

    def body() -> int:
        base = load_settings()  # only for the model and data paths: the cluster is always our own
        model_path = resolve_model(base).model_path  # pinned: every run scores with the same model
        settings = Settings(topic_partitions=args.partitions, model_path=model_path, data_path=base.data_path)
        rows = prepare_rows(settings.data_path, load_contract(base.schema_path)).valid_rows
        cpu_count = os.cpu_count() or 1
        started = datetime.now(UTC)
        load_before = os.getloadavg()
        runs: list[dict[str, Any]] = []
        failures: list[str] = []
        work_root = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
        try:
            for brokers in args.brokers:
                layout = broker.private_layout(work_root / f"cluster-{brokers}", brokers)
                logger.warning("starting a %d-broker cluster at %s", brokers, layout.bootstrap_servers)
                broker.up(layout)
                try:
                    cluster_settings = replace(settings, bootstrap_servers=layout.bootstrap_servers)
                    for _ in range(args.repeat):
                        for consumers in args.consumers:
                            try:
                                entry = measure(
                                    cluster_settings,
                                    layout,
                                    consumers,
                                    rows=rows,
                                    events=args.events,
                                    guarantee=args.guarantee,
                                    work_dir=work_root,
                                )
                            except PipelineError as exc:  # one failed run costs its cell, not the others
                                failures.append(f"{brokers} broker(s), {consumers} consumer(s): {exc}")
                                print(f"FAILED {failures[-1]}", flush=True)
                                continue
                            runs.append(entry)
                            print(run_line(entry, cpu_count), flush=True)
                finally:
                    broker.down(layout)
        finally:
            if args.keep_home or failures:
                print(f"clusters and consumer logs kept in {work_root}")
            else:
                shutil.rmtree(work_root, ignore_errors=True)
        rows_summary = summarise(runs)
        for row in rows_summary:
            row["limit"] = limit_note(row, cpu_count)
        ceilings = cpu_ceilings(rows_summary, cpu_count)
        results = {
            "command": "python -m benchmarks.bench_scaling " + shlex.join(sys.argv[1:] if argv is None else argv),
            "started_at": started.strftime("%Y-%m-%d %H:%M:%S UTC"),
            "events": args.events,
            "partitions": args.partitions,
            "guarantee": args.guarantee,
            "machine": {
                "cpu_count": cpu_count,
                "cpu_model": _cpu_model(),
                "load_average_before": [round(v, 2) for v in load_before],
                "load_average_after": [round(v, 2) for v in os.getloadavg()],
                "python": platform.python_version(),
            },
            "summary": rows_summary,
            "cpu_ceiling": ceilings,
            "failed_runs": failures,
            "runs": runs,
        }
        args.out_dir.mkdir(parents=True, exist_ok=True)
        json_path = args.out_dir / "scaling.json"
        json_path.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2) + b"\n")
        png_path = plot(results, args.out_dir / "scaling.png")
        print()
        print(format_table(rows_summary, cpu_count))
        for row in rows_summary:
            print(f"  {row['brokers']} broker(s), {row['consumers']} consumer(s): limit = {row['limit']}")
        for brokers, ceiling in ceilings.items():
            print(
                f"  {brokers} broker(s): {ceiling['consumer_cpu_us_per_event']:.0f} us consumer + "
                f"{ceiling['broker_cpu_us_per_event']:.0f} us broker CPU per event -> {cpu_count} cores carry at "
                f"most {ceiling['events_per_sec']:,} events/s"
            )
        print(f"results in {json_path} and {png_path}")
        if failures:
            print(f"Error: {len(failures)} run(s) failed (see failed_runs in {json_path}):", file=sys.stderr)
            for failure in failures:
                print(f"  {failure}", file=sys.stderr)
            return EXIT_FAILURE
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""Fault injection: kill clients and the broker mid-run, feed hostile input, break the start-up.

Modelled on Apache Kafka's own system tests: the real producer.py and consumer.py run as
subprocesses against a real broker, something is broken on purpose, and a ``read_committed``
reader (harness.OutcomeReader) then checks that every raw record has exactly one outcome
(harness.read_topic + analysis.conservation: the same accounting test_pipeline.py uses).

Each test prints its figures on one line starting with ``FIGURES``; collect them with
``.venv/bin/python -m pytest -s -m slow tests/integration/test_faults.py | grep FIGURES``. Random kill points
come from ``FAULT_SEED`` (default below), printed with the figures, so a run can be repeated.
Tests that stop or kill a broker use a private one on free ports, never the shared broker.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka import KafkaAdminClient

from churnstream import localkafka as broker
from churnstream.consumer.options import DEFAULT_MAX_BATCH
from churnstream.contract.events import encode_event, parse_object, utc_now_iso
from churnstream.contract.outputs import DeadLetterInfo, Stage
from churnstream.errors import (
    EXIT_BROKER,
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_FAILURE,
    EXIT_MODEL_BROKEN,
    EXIT_MODEL_INTEGRITY,
    EXIT_MODEL_MISSING,
    EXIT_PROTOCOL,
)
from churnstream.harness import badinput, hostile
from churnstream.harness.analysis import Conservation, conservation
from churnstream.harness.plan import RunTopics
from churnstream.harness.processes import CONSUMER as CONSUMER_MODULE
from churnstream.harness.processes import PRODUCER as PRODUCER_MODULE
from churnstream.harness.processes import ManagedProcess, script, wait_for_group
from churnstream.harness.readers import OutcomeReader, read_topic
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.topics import ensure_topics, prepare_pipeline_topics, topic_max_message_bytes
from churnstream.ml.store import MODEL_FILE, ModelStore
from churnstream.producer.checkpoint import read_checkpoint
from churnstream.settings import DEFAULT_DATA_PATH, DEFAULT_MODEL_STORE, Settings, settings_from
from tests.fakes import BreaksOnFlag, SlowOnFlag, write_wrapped_model
from tests.helpers import (
    checkpoint_path,
    current_model_path,
    free_port,
    make_rows,
    read_all_records,
    run_module,
    run_script,
    scrape,
    script_env,
    start_local_cluster,
    start_script,
    telco_event,
    wait_for_progress,
)

SEED = int(os.environ.get("FAULT_SEED", "20261127"))
ROWS = 7043
BATCH_REPEAT = 7  # producer.py --mode batch --repeat 7: 49,301 events, the "50,000-event batch run"
BATCH_EVENTS = ROWS * BATCH_REPEAT
LOST_LINE = re.compile(r"churnstream\.kafka\.outage: lost connection to the broker")
BACK_LINE = re.compile(
    r"churnstream\.kafka\.outage: broker at \S+ back after ([\d.]+) s \((\d+) failed connection attempts\)"
)
ASSIGNED_LINE = re.compile(r"partitions assigned: (.*)$", re.MULTILINE)


# --------------------------------------------------------------------- helpers


def figures(scenario: str, **values: Any) -> None:
    """One greppable line: ``FIGURES <scenario> key=value ...`` (lists joined by commas)."""

    def text(value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
        if isinstance(value, list | tuple):
            return ",".join(text(v) for v in value)
        return str(value).replace(" ", "_")

    print(f"\nFIGURES {scenario} " + " ".join(f"{key}={text(value)}" for key, value in values.items()), flush=True)


def topics_of(settings: Settings) -> RunTopics:
    return RunTopics(settings.topic_raw, settings.topic_predictions, settings.topic_deadletter, settings.consumer_group)


def create_topics(settings: Settings) -> None:
    """The raw topic, and the outputs as the consumer creates them (the reader needs them first)."""
    admin = make_admin(settings, client_id="fault-admin")
    try:
        ensure_topics(admin, settings, [settings.topic_raw])
        prepare_pipeline_topics(admin, settings)
    finally:
        admin.close()


def start_reader(settings: Settings) -> OutcomeReader:
    reader = OutcomeReader(settings, topics_of(settings))
    reader.start_reading()
    return reader


def outcome_sources(reader: OutcomeReader) -> set[tuple[int, int]]:
    """Raw records (partition, offset) that have at least one committed outcome so far."""
    return {p.source for p in list(reader.predictions)} | {s for d in list(reader.dead_letters) for s in d.sources}


def reached(reader: OutcomeReader, count: int) -> Callable[[], bool]:
    return lambda: len(outcome_sources(reader)) >= count


class Committed:
    """What the consumer on a metrics port has committed in this life (``churn_events_consumed_total``)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.last = 0

    def at_least(self, count: int) -> Callable[[], bool]:
        def check() -> bool:
            self.last = int(scrape(self.port).get("churn_events_consumed_total", 0))
            return self.last >= count

        return check


def wait_until(
    condition: Callable[[], bool], what: str, timeout_s: float, watch: Sequence[ManagedProcess] = ()
) -> float:
    """Seconds until ``condition`` holds; fails if a watched process exits first or time runs out."""
    started = time.monotonic()
    while not condition():
        for process in watch:
            code = process.poll()
            if code is not None:
                raise AssertionError(f"{process.name} exited with {code} while waiting for {what}:\n{process.tail(30)}")
        if time.monotonic() - started > timeout_s:
            raise AssertionError(f"no {what} within {timeout_s:.0f} s")
        time.sleep(0.05)
    return time.monotonic() - started


def every_outcome(
    settings: Settings, reader: OutcomeReader, timeout_s: float, watch: Sequence[ManagedProcess], settle_s: float = 1.0
) -> float:
    """The moment (``time.monotonic()``) every record on the raw topic had an outcome; returns
    ``settle_s`` later, in which a late duplicate, if there were one, would be read before the
    test counts."""
    total = len(read_topic(settings, settings.topic_raw))
    wait_until(reached(reader, total), "outcome for every raw record", timeout_s, watch)
    done_at = time.monotonic()
    time.sleep(settle_s)
    return done_at


def consumer(name: str, env: dict[str, str], tmp_path: Path, *args: str) -> ManagedProcess:
    summary = tmp_path / f"{name}.json"
    command = script(CONSUMER_MODULE, "--mode", "streaming", "--summary-json", str(summary), *args)
    return ManagedProcess(name, command, script_env(env), tmp_path / f"{name}.log")


def streaming_producer(env: dict[str, str], tmp_path: Path, rate: int, duration_s: int, seed: int) -> ManagedProcess:
    command = script(PRODUCER_MODULE, "--mode", "streaming", "--events-per-sec", str(rate))
    command += ["--duration", str(duration_s), "--seed", str(seed), "--summary-json", str(tmp_path / "producer.json")]
    return ManagedProcess("producer", command, script_env(env), tmp_path / "producer.log")


def summary(tmp_path: Path, name: str) -> dict[str, Any]:
    return orjson.loads((tmp_path / f"{name}.json").read_bytes())


def written(settings: Settings) -> int:
    """Output records on the topics, aborted transactions included (a read_uncommitted count)."""
    return sum(len(read_topic(settings, topic)) for topic in (settings.topic_predictions, settings.topic_deadletter))


def account(settings: Settings, reader: OutcomeReader) -> Conservation:
    return conservation(read_topic(settings, settings.topic_raw), reader.predictions, reader.dead_letters)


def log_lines(process: ManagedProcess, pattern: re.Pattern[str]) -> list[re.Match[str]]:
    return [m for line in process.log_path.read_text(errors="replace").splitlines() if (m := pattern.search(line))]


def partitions_of(match: re.Match[str]) -> set[int]:
    return {int(p) for p in re.findall(r"\[(\d+)\]", match.group(1))}


def restart_node(layout: broker.Layout) -> None:
    broker.start_node(layout, 0)
    # The launcher reads /proc/<pid>/cmdline to recognise its JVM, and right after Popen returns
    # it can still be empty (16 times in 300 here), which wait_until_ready takes for a node that
    # exited: wait until the node is recognised first.
    deadline = time.monotonic() + 10
    while broker.node_pid(layout, 0) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    broker.wait_until_ready(layout)


# --------------------------------------------------------------------- 1. consumer kill -9


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(480)
@pytest.mark.parametrize("guarantee", ["exactly-once", "at-least-once"])
def test_1_consumer_sigkilled_three_times_during_a_batch_run(
    pipeline_env: dict[str, str], tmp_path: Path, guarantee: str
) -> None:
    settings = settings_from(pipeline_env)
    rng = random.Random(f"{SEED}:1:{guarantee}")
    load = run_script(
        "producer.py", ["--mode", "batch", "--repeat", str(BATCH_REPEAT), "--no-progress", "-q"], pipeline_env, 300
    )
    assert load.returncode == 0, load.stderr
    create_topics(settings)
    total = len(read_topic(settings, settings.topic_raw))
    assert total == BATCH_EVENTS
    # Each life is killed once it has itself committed its target (4-12 % of the run: one or two
    # batches of 5,000), then after a delay that puts the kill anywhere in the batch after it (a batch
    # takes about 0.5-1 s): at most about 15,000 events a life, so the final consumer has work left.
    # The target is read from the consumer's own metrics, not from the outcome reader: the reader can
    # trail a fast at-least-once consumer by thousands of records, and kills timed from it once
    # landed after the run had ended (CI, 2026-12-01), leaving the next life nothing to do.
    kill_targets = [int(rng.uniform(0.04, 0.12) * total) for _ in range(3)]
    kill_delays = [round(rng.uniform(0.0, 0.5), 3) for _ in range(3)]
    reader = start_reader(settings)
    processes: list[ManagedProcess] = []
    at_kill: list[int] = []
    consumed_at_kill: list[int] = []
    first_output_s: list[float] = []
    started = time.monotonic()
    try:
        for index, (target, delay) in enumerate(zip(kill_targets, kill_delays, strict=True)):
            progress = Committed(free_port())
            metrics = ["--metrics-port", str(progress.port)]
            process = consumer(f"consumer-{index}", pipeline_env, tmp_path, "--guarantee", guarantee, *metrics)
            processes.append(process)
            first_output_s.append(wait_until(progress.at_least(1), "first committed batch", 120, [process]))
            wait_until(progress.at_least(target), f"{target} events committed by {process.name}", 180, [process])
            time.sleep(delay)
            process.process.send_signal(signal.SIGKILL)
            process.process.wait(timeout=30)
            at_kill.append(len(outcome_sources(reader)))
            consumed_at_kill.append(progress.last)
        final = consumer("consumer-final", pipeline_env, tmp_path, "--guarantee", guarantee)
        processes.append(final)
        elapsed_s = every_outcome(settings, reader, 300, [final], settle_s=2.0) - started
        final_code = final.stop()
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    counts = account(settings, reader)
    outputs_written = written(settings)
    committed = len(reader.predictions) + len(reader.dead_letters)
    figures(
        f"scenario-1 guarantee={guarantee}",
        seed=SEED,
        events=total,
        kills=3,
        kill_targets=kill_targets,
        kill_delays_s=kill_delays,
        committed_by_life_before_kill=consumed_at_kill,
        outcomes_at_kill=at_kill,
        lost=counts.lost,
        duplicated=counts.duplicated,
        duplicate_event_ids=counts.duplicate_event_ids,
        outputs_written=outputs_written,
        aborted_outputs=outputs_written - committed,
        final_run_aborted_transactions=summary(tmp_path, "consumer-final")["transactions_aborted"],
        restarts=3,
        first_output_after_start_s=first_output_s,
        total_s=elapsed_s,
    )
    assert final_code == 0
    assert [p.poll() for p in processes[:3]] == [-signal.SIGKILL] * 3
    assert summary(tmp_path, "consumer-final")["consumed"] > 0, "the last kill came after the run had ended"
    assert reader.error is None and reader.malformed_outputs == 0
    assert counts.lost == 0 and counts.unknown_sources == 0, counts.lost_examples
    if guarantee == "exactly-once":
        assert counts.duplicated == 0 and counts.duplicate_event_ids == 0
    else:
        assert counts.duplicated <= 3 * DEFAULT_MAX_BATCH  # at most the batch in flight at each kill


# --------------------------------------------------------------------- 2. producer kill -9 + --resume


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_2_producer_sigkilled_mid_load_then_resume(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_from(pipeline_env)
    rng = random.Random(f"{SEED}:2")
    chunk = 5000  # producer.py's default --batch-size: one checkpoint per acknowledged chunk
    kill_after_rows = rng.randrange(chunk, BATCH_EVENTS - 4 * chunk)
    # A 5,000-row chunk takes 0.25-0.4 s here: the kill lands inside the chunk being sent, and the last
    # 4 chunks leave room (with delays up to 0.5 s, a fast run once finished the load before the kill).
    kill_delay_s = rng.uniform(0.0, 0.25)
    path = checkpoint_path(pipeline_env)
    args = ["--mode", "batch", "--repeat", str(BATCH_REPEAT), "--no-progress", "-q"]
    process = start_script("producer.py", args, env=pipeline_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_progress(path, kill_after_rows, process, timeout_s=120)
        time.sleep(kill_delay_s)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    at_kill = read_checkpoint(path)
    assert at_kill is not None and not at_kill.completed, "the load finished before the kill"
    resumed = run_script("producer.py", ["--mode", "batch", "--resume", "-q", "--no-progress"], pipeline_env, 300)
    assert resumed.returncode == 0, resumed.stderr

    ids = Counter(parse_object(record.value)["event_id"] for record in read_topic(settings, settings.topic_raw))
    expected = {f"{at_kill.load_id}-{p}-{i}" for p in range(BATCH_REPEAT) for i in range(ROWS)}
    missing = expected - set(ids)
    resent = sum(count - 1 for count in ids.values())
    figures(
        "scenario-2",
        seed=SEED,
        rows=BATCH_EVENTS,
        chunk=chunk,
        killed_at_checkpoint_row=at_kill.next_row,
        missing=len(missing),
        unexpected=len(set(ids) - expected),
        resent_rows=resent,
        raw_records=sum(ids.values()),
    )
    assert not missing and set(ids) == expected
    assert 0 <= resent <= chunk
    for event_id, count in ids.items():
        if count > 1:  # only rows of the chunk that was in flight at the kill
            _, pass_index, row = event_id.rsplit("-", 2)
            assert at_kill.next_row <= int(pass_index) * ROWS + int(row) < at_kill.next_row + chunk


# --------------------------------------------------------------------- 3. broker stopped for 10 s


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(420)
def test_3_broker_stopped_for_10_s_mid_stream(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    layout = start_local_cluster(tmp_path / "home")
    env = {**pipeline_env, "KAFKA_BOOTSTRAP_SERVERS": layout.bootstrap_servers}
    settings = settings_from(env)
    processes: list[ManagedProcess] = []
    reader: OutcomeReader | None = None
    try:
        create_topics(settings)
        consuming = consumer("consumer", env, tmp_path)
        processes.append(consuming)
        wait_for_group(settings, settings.consumer_group, [consuming])
        producing = streaming_producer(env, tmp_path, rate=200, duration_s=35, seed=SEED)
        processes.append(producing)
        time.sleep(8.0)
        assert producing.poll() is None and consuming.poll() is None
        stopped_at = time.monotonic()
        broker.stop_node(layout, 0)  # SIGTERM through the launcher, then wait for the JVM to exit
        stop_s = time.monotonic() - stopped_at
        time.sleep(max(0.0, 10.0 - (time.monotonic() - stopped_at)))
        restart_node(layout)
        down_s = time.monotonic() - stopped_at
        producer_code = producing.wait(180)
        assert producer_code is not None, "the producer did not finish after the broker came back"
        reader = start_reader(settings)  # from the beginning: it needs no timestamps here
        drain_started = time.monotonic()
        drain_s = every_outcome(settings, reader, 180, [consuming]) - drain_started
        consumer_code = consuming.stop()
        reader.stop()
        counts = account(settings, reader)
    finally:
        for process in processes:
            process.stop(timeout=10)
        if reader is not None:
            reader.stop()
        broker.down(layout)
    produced = summary(tmp_path, "producer")
    consumed = summary(tmp_path, "consumer")
    outage_lines = {p.name: (log_lines(p, LOST_LINE), log_lines(p, BACK_LINE)) for p in processes}
    figures(
        "scenario-3",
        broker_stop_s=stop_s,
        broker_down_until_ready_s=down_s,
        producer_exit=producer_code,
        sent=produced["sent"],
        acknowledged=produced["acknowledged"],
        producer_elapsed_s=produced["elapsed_s"],
        consumer_exit=consumer_code,
        lost=counts.lost,
        duplicated=counts.duplicated,
        aborted_transactions=consumed["transactions_aborted"],
        **{
            f"{name}_outage_lines": f"{len(lost)}+{len(back)}"
            + "".join(f"(back_after_{m.group(1)}s_{m.group(2)}_attempts)" for m in back)
            for name, (lost, back) in outage_lines.items()
        },
        drain_after_producer_s=drain_s,
    )
    assert producer_code == 0 and produced["acknowledged"] == produced["sent"] == 7000
    assert consumer_code == 0
    assert counts.raw_records == 7000 and counts.lost == 0 and counts.duplicated == 0 and counts.unknown_sources == 0
    for name, (lost, back) in outage_lines.items():
        assert (len(lost), len(back)) == (1, 1), f"{name}: outage logged {len(lost)} + {len(back)} times"


# --------------------------------------------------------------------- 4. one of three consumers killed


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_4_one_of_three_consumers_killed_its_partitions_move(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    settings = settings_from(pipeline_env)
    rng = random.Random(f"{SEED}:4")
    victim = rng.randrange(3)
    create_topics(settings)
    # Static members: a silent one keeps its partitions for the session timeout. 6 s (the broker's
    # minimum) instead of the default 15 s keeps the test short; the takeover is the same.
    consumers = [
        consumer(f"consumer-{i}", pipeline_env, tmp_path, "--session-timeout-ms", "6000", "--log-interval", "1")
        for i in range(3)
    ]
    processes = list(consumers)
    reader = start_reader(settings)
    try:
        wait_for_group(settings, settings.consumer_group, consumers)
        producing = streaming_producer(pipeline_env, tmp_path, rate=300, duration_s=30, seed=SEED)
        processes.append(producing)
        time.sleep(8.0)
        owned = partitions_of(log_lines(consumers[victim], ASSIGNED_LINE)[-1])
        assert owned, "the victim owned no partitions"
        consumers[victim].process.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        survivors = [c for i, c in enumerate(consumers) if i != victim]

        def taken_over() -> bool:
            latest = [partitions_of(lines[-1]) for c in survivors if (lines := log_lines(c, ASSIGNED_LINE))]
            return len(latest) == 2 and latest[0] | latest[1] == set(range(6)) and not latest[0] & latest[1]

        takeover_s = wait_until(taken_over, "the survivors to own all six partitions", 90, survivors)
        assert producing.wait(120) == 0
        caught_up_s = every_outcome(settings, reader, 180, survivors) - killed_at
        codes = [c.stop() for c in survivors]
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    counts = account(settings, reader)
    outputs_written = written(settings)
    by_survivor = [summary(tmp_path, c.name)["consumed"] for c in survivors]
    figures(
        "scenario-4",
        seed=SEED,
        consumers=3,
        killed=consumers[victim].name,
        its_partitions=sorted(owned),
        session_timeout_ms=6000,
        takeover_s=takeover_s,
        all_outcomes_after_kill_s=caught_up_s,
        raw_records=counts.raw_records,
        lost=counts.lost,
        duplicated=counts.duplicated,
        aborted_outputs=outputs_written - len(reader.predictions) - len(reader.dead_letters),
        consumed_by_survivors=by_survivor,
    )
    assert codes == [0, 0]
    assert counts.lost == 0 and counts.duplicated == 0 and counts.unknown_sources == 0
    assert counts.raw_records == summary(tmp_path, "producer")["acknowledged"]


# --------------------------------------------------------------------- 5. hostile input (and 7. replay)


def replay_one_dead_letter(
    env: dict[str, str],
    settings: Settings,
    reader: OutcomeReader,
    sources: dict[tuple[int, int], badinput.BadEvent],
    consuming: ManagedProcess,
) -> dict[str, Any]:
    """Scenario 7 end to end: replay one real dead letter, selected by offset, twice.

    The cause is not fixed here (the record is still invalid), so its one new outcome is a dead
    letter again with the same bytes; what this shows is that it is re-sent once and re-consumed
    once, however often the replay command runs.
    """
    original = next(source for source, kind in sources.items() if kind.kind == "contract-unknown-category")
    dead = next(
        r
        for r in read_all_records(settings, settings.topic_deadletter)
        if DeadLetterInfo.from_headers(r.headers).source == original
    )
    before = {r.source for r in read_topic(settings, settings.topic_raw)}
    args = ["--partition", str(dead.partition), "--from-offset", str(dead.offset), "--to-offset", str(dead.offset)]
    first = run_module("churnstream.replay", [*args, "-q"], env)
    second = run_module("churnstream.replay", [*args, "-q"], env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    added = [r for r in read_topic(settings, settings.topic_raw) if r.source not in before]
    assert len(added) == 1, added
    replayed = added[0]
    wait_until(lambda: replayed.source in outcome_sources(reader), "an outcome of the replayed record", 60, [consuming])
    time.sleep(1.0)
    outcomes = [p.source for p in reader.predictions] + [d.source for d in reader.dead_letters]
    return {
        "source": replayed.source,
        "replayed": int(first.stdout.rsplit("replayed ", 1)[1]),
        "replayed_again": int(second.stdout.rsplit("replayed ", 1)[1]),
        "raw_records_added": len(added),
        "outcomes_of_replayed_record": outcomes.count(replayed.source),
        "same_bytes": (replayed.key, replayed.value) == (sources[original].key, sources[original].value),
    }


# --------------------------------------------------------------------- 6. start-up faults


@contextmanager
def closing_listener() -> Iterator[int]:
    """A TCP port that accepts connections and closes them at once: something that is not Kafka."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = server.accept()
            except OSError:
                return
            connection.close()

    thread = threading.Thread(target=serve, name="closing-listener", daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)


def _flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@contextmanager
def fault(name: str, env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """The environment that injects one start-up fault."""
    if name == "broker-down":
        yield {**env, "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{free_port()}"}
    elif name == "wrong-port":
        with closing_listener() as port:
            yield {**env, "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}"}
    elif name == "model-missing":
        yield {**env, "MODEL_PATH": str(tmp_path / "absent" / MODEL_FILE)}
    elif name == "model-altered":
        models = tmp_path / "models"
        shutil.copytree(current_model_path().parent, models)
        _flip_one_byte(models / MODEL_FILE)
        yield {**env, "MODEL_PATH": str(models / MODEL_FILE)}
    elif name == "csv-altered":
        data = tmp_path / "data" / DEFAULT_DATA_PATH.name  # the same name: the checksum applies to it
        data.parent.mkdir()
        shutil.copy(DEFAULT_DATA_PATH, data)
        _flip_one_byte(data)
        yield {**env, "DATA_PATH": str(data)}
    elif name == "bad-dotenv":
        dotenv = tmp_path / ".env"
        dotenv.write_text("KAFKA_TOPIC_PARTITIONS=six\n")
        yield {**env, "CHURN_DOTENV": str(dotenv)}
    else:
        raise ValueError(name)


PRODUCER = ("producer.py", "--mode", "batch", "-q")
CONSUMER = ("consumer.py", "--mode", "batch", "-q")
VERIFY = ("test_pipeline.py", "--verify-only", "-q")
BROKER_DOWN_HINT = (
    "(KAFKA_BOOTSTRAP_SERVERS); start the local broker with 'make kafka-up', or point KAFKA_BOOTSTRAP_SERVERS "
    "at your cluster"
)
# (fault, command, exit code, what the one line must mention). verify-only prints a PASS/FAIL table
# on stdout and exits 1 when a check fails (test_pipeline.py), except for a bad setting (3).
STARTUP_FAULTS = [
    ("broker-down", PRODUCER, EXIT_BROKER, BROKER_DOWN_HINT),
    ("broker-down", CONSUMER, EXIT_BROKER, BROKER_DOWN_HINT),
    ("broker-down", VERIFY, EXIT_FAILURE, "FAIL  broker answers"),
    ("wrong-port", PRODUCER, EXIT_PROTOCOL, "closed it without a Kafka answer"),
    ("wrong-port", CONSUMER, EXIT_PROTOCOL, "closed it without a Kafka answer"),
    ("wrong-port", VERIFY, EXIT_FAILURE, "FAIL  broker answers"),
    ("model-missing", CONSUMER, EXIT_MODEL_MISSING, "make model"),
    ("model-missing", VERIFY, EXIT_FAILURE, "FAIL  model integrity"),
    ("model-altered", CONSUMER, EXIT_MODEL_INTEGRITY, "sha256"),
    ("model-altered", VERIFY, EXIT_FAILURE, "FAIL  model integrity"),
    ("csv-altered", PRODUCER, EXIT_DATA, "sha256"),
    ("csv-altered", VERIFY, EXIT_FAILURE, "FAIL  data checksum"),
    ("bad-dotenv", PRODUCER, EXIT_CONFIG, "KAFKA_TOPIC_PARTITIONS='six' is not valid"),
    ("bad-dotenv", CONSUMER, EXIT_CONFIG, "KAFKA_TOPIC_PARTITIONS='six' is not valid"),
    ("bad-dotenv", VERIFY, EXIT_CONFIG, "KAFKA_TOPIC_PARTITIONS='six' is not valid"),
]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(120)
@pytest.mark.parametrize("case", STARTUP_FAULTS, ids=[f"{f[0]}-{f[1][0]}" for f in STARTUP_FAULTS])
def test_6_startup_fault_is_one_line_a_distinct_code_and_changes_nothing(
    pipeline_env: dict[str, str], tmp_path: Path, admin: KafkaAdminClient, case: tuple[str, tuple[str, ...], int, str]
) -> None:
    name, command, code, mention = case
    with fault(name, pipeline_env, tmp_path) as env:
        started = time.monotonic()
        result = run_script(command[0], list(command[1:]), env, timeout=60)
        seconds = time.monotonic() - started
    assert "Traceback" not in result.stderr
    if code == EXIT_FAILURE:  # verify-only: the table, one failed check naming the cause
        failed = [line for line in result.stdout.splitlines() if line.startswith("FAIL")]
        causes = [line for line in failed if "  skipped" not in line]
        lines = causes
        assert result.stderr == "" and len(causes) == 1 and mention in causes[0], result.stdout
    else:
        lines = result.stderr.strip().splitlines()
        assert result.stdout == "" and len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
        assert mention in lines[0]
    names = {pipeline_env[v] for v in ("KAFKA_TOPIC_RAW", "KAFKA_TOPIC_PREDICTIONS", "KAFKA_TOPIC_DEADLETTER")}
    created = names & set(admin.list_topics())
    figures(f"scenario-6 fault={name} command={command[0]}", exit=result.returncode, seconds=seconds, lines=len(lines))
    assert result.returncode == code
    assert not created, f"{name} left topics behind: {created}"
    assert seconds < 10  # verify-only connects while the model loads, so it fits the bound too


# --------------------------------------------------------------------- 8. a dynamic member evicted mid-batch


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_8_a_dynamic_member_evicted_mid_batch_commits_nothing_of_it(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Exactly-once without static membership: the zombie's offsets are refused, so no duplicates.

    Consumer A scores one batch slowly (a model that sleeps once on cue) and is frozen (SIGSTOP) for
    longer than its session timeout mid-batch; the group evicts it and B processes the batch again.
    Thawed, A goes on to commit. Before the fix A sent generation -1 and no member id (what its
    client had reset to), which the broker accepts, and the batch was committed twice.
    """
    settings = settings_from(pipeline_env)
    flag = tmp_path / "slow.flag"
    model = write_wrapped_model(tmp_path / "slow-model", lambda pipeline: SlowOnFlag(pipeline, "SLOW_FLAG", 14.0))
    dynamic = ("--no-static-membership", "--session-timeout-ms", "6000")
    create_topics(settings)
    zombie = consumer("zombie", {**pipeline_env, "MODEL_PATH": str(model), "SLOW_FLAG": str(flag)}, tmp_path, *dynamic)
    successor = consumer("successor", pipeline_env, tmp_path, *dynamic)
    processes = [zombie, successor]
    reader = start_reader(settings)
    try:
        wait_for_group(settings, settings.consumer_group, processes)
        flag.touch()  # the next batch the zombie scores takes 14 s
        producing = streaming_producer(pipeline_env, tmp_path, rate=100, duration_s=16, seed=SEED)
        processes.append(producing)
        wait_until(lambda: not flag.exists(), "the zombie inside its slow batch", 60, [zombie])
        zombie.process.send_signal(signal.SIGSTOP)
        time.sleep(10.0)  # past the 6 s session timeout: the group evicts it, the successor takes over
        zombie.process.send_signal(signal.SIGCONT)
        assert producing.wait(120) == 0
        # then 6 s more: the zombie wakes, tries to commit its batch, and is refused
        every_outcome(settings, reader, 120, [successor], settle_s=6.0)
        codes = [zombie.stop(), successor.stop()]
        counts = account(settings, reader)
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    aborted = len(log_lines(zombie, re.compile(r"aborting the batch's transaction .*CommitFailedError")))
    figures("scenario-8", raw_records=counts.raw_records, lost=counts.lost, duplicated=counts.duplicated,
            zombie_aborts=aborted, exits=codes)  # fmt: skip
    assert counts.raw_records > 1000 and counts.lost == 0
    assert counts.duplicated == 0 and counts.unknown_sources == 0
    assert aborted >= 1, zombie.tail(30)  # the zombie did try, and was refused


# --------------------------------------------------------------------- 9. the model breaks mid-stream


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_9_a_model_that_breaks_mid_stream_stops_the_consumer_and_commits_nothing_of_it(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """A model that fails every row and its canary rows: exit 13 with one line, no score dead letters;
    the batch stays on the raw topic, and a consumer with a healthy model then gives every record
    exactly one outcome. Before: the whole stream went to the dead-letter topic and the consumer exited 0."""
    settings = settings_from(pipeline_env)
    flag = tmp_path / "broken.flag"
    model = write_wrapped_model(tmp_path / "fragile-model", lambda pipeline: BreaksOnFlag(pipeline, "BROKEN_FLAG"))
    create_topics(settings)
    fragile = consumer("fragile", {**pipeline_env, "MODEL_PATH": str(model), "BROKEN_FLAG": str(flag)}, tmp_path)
    processes = [fragile]
    reader = start_reader(settings)
    try:
        wait_for_group(settings, settings.consumer_group, [fragile])
        producing = streaming_producer(pipeline_env, tmp_path, rate=100, duration_s=8, seed=SEED)
        processes.append(producing)
        wait_until(reached(reader, 200), "predictions flowing", 60, [fragile])
        flag.touch()
        broke_at = time.monotonic()
        code = fragile.process.wait(60)
        exit_s = time.monotonic() - broke_at
        scored_before = len(outcome_sources(reader))
        assert producing.wait(60) == 0
        healthy = consumer("healthy", pipeline_env, tmp_path)
        processes.append(healthy)
        every_outcome(settings, reader, 120, [healthy])
        healthy.stop()
        counts = account(settings, reader)
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    errors = [line for line in fragile.log_path.read_text().splitlines() if line.startswith("Error: ")]
    figures("scenario-9", exit=code, exit_s=exit_s, scored_before_exit=scored_before, raw_records=counts.raw_records,
            lost=counts.lost, duplicated=counts.duplicated)  # fmt: skip
    assert code == EXIT_MODEL_BROKEN
    assert len(errors) == 1 and "the model is broken" in errors[0] and "canary rows" in errors[0]
    assert "Traceback" not in fragile.log_path.read_text()
    assert [d for d in reader.dead_letters if d.info.stage == Stage.SCORE] == []
    assert counts.lost == 0 and counts.duplicated == 0 and counts.raw_records == 800


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_10_a_corrupt_version_promoted_mid_stream_is_refused_then_a_good_one_takes_over(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Under 1,000 events/s, the store's current version is switched to one whose pickle was altered
    after training: the consumer refuses it (one line), keeps scoring with the current one, and
    takes the next good promotion between two batches. Every raw record: exactly one outcome."""
    settings = settings_from(pipeline_env)
    source = ModelStore(DEFAULT_MODEL_STORE)
    good = source.current()
    assert good is not None, "no current model: run 'make model'"
    store = ModelStore(tmp_path / "models")
    shutil.copytree(source.root / good, store.root / good)
    store.promote(good)
    corrupt, relabelled = f"{good[:-4]}dead", f"{good[:-4]}beef"
    for name in (corrupt, relabelled):  # the same model under two more names, as training would add them
        shutil.copytree(store.root / good, store.root / name)
        card_path = store.root / name / "model_card.json"
        card_path.write_bytes(card_path.read_bytes().replace(good.encode(), name.encode()))
    pickle = store.root / corrupt / MODEL_FILE
    pickle.write_bytes(pickle.read_bytes()[:-64] + b"\0" * 64)  # altered after its card was written
    env = {key: value for key, value in pipeline_env.items() if key != "MODEL_PATH"}
    env["MODEL_STORE"] = str(store.root)
    create_topics(settings)
    scoring = consumer("follower", env, tmp_path)
    processes = [scoring]
    reader = start_reader(settings)
    try:
        wait_for_group(settings, settings.consumer_group, [scoring])
        producing = streaming_producer(env, tmp_path, rate=1000, duration_s=12, seed=SEED)
        processes.append(producing)
        wait_until(reached(reader, 2000), "predictions flowing", 60, [scoring])
        store.promote(corrupt)
        wait_until(reached(reader, 5000), "more predictions", 60, [scoring])
        store.promote(relabelled)
        assert producing.wait(60) == 0
        every_outcome(settings, reader, 120, [scoring])
        scoring.stop()
        counts = account(settings, reader)
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    log = scoring.log_path.read_text()
    refusals = [line for line in log.splitlines() if f"model {corrupt} refused, {good} keeps serving" in line]
    versions = Counter(observed.prediction.model_version for observed in reader.predictions)
    figures("scenario-10", raw_records=counts.raw_records, lost=counts.lost, duplicated=counts.duplicated,
            by_version=dict(versions), refusals=len(refusals))  # fmt: skip
    assert counts.lost == 0 and counts.duplicated == 0 and counts.raw_records == 12000
    assert len(refusals) == 1 and "Traceback" not in log
    assert corrupt not in versions and versions[good] > 0 and versions[relabelled] > 0
    assert summary(tmp_path, "follower")["models_refused"] == [corrupt]


# --------------------------------------------------------------------- 11. hostile records (issue 19)


def send_hostile_records(settings: Settings, hidden_codec: str) -> dict[str, list[tuple[int, int]]]:
    """Into partition 0, one after another: a header key that is not UTF-8, as many headers as the raw
    topic allows, a 60,000-character event_id, 200 records that are not JSON (a flood of dead-letter
    lines), and librdkafka batches of 10 valid events in snappy and zstd. Returns their sources by kind."""
    admin = make_admin(settings, client_id="fault-admin")
    try:
        limit = topic_max_message_bytes(admin, settings.topic_raw) or 1_048_588
    finally:
        admin.close()
    stamp = utc_now_iso()
    valid = [telco_event(row, event_id=f"hostile-{i}", event_ts=stamp) for i, row in enumerate(make_rows(21))]
    kinds: dict[str, list[tuple[bytes | None, bytes | None, list[Any]]]] = {
        "odd-header-key": [(b"odd", encode_event(valid[0]), [("trace", b"1"), (hostile.ODD_HEADER_KEY, b"kcat")])],
        "worst-case-headers": [(None, b"{}", [("", b"")] * hostile.worst_case_header_count(limit))],
        "long-event-id": [(b"long", encode_event({**valid[0], "event_id": "x" * 60_000}), [])],
        "not-json-flood": [(b"flood", b"not json %d" % i, []) for i in range(200)],
    }
    sources: dict[str, list[tuple[int, int]]] = {}
    injector = make_producer(settings, client_id="fault-hostile", max_request_size=limit)
    try:
        for kind, records in kinds.items():
            futures = [injector.send(settings.topic_raw, key=k, value=v, headers=h, partition=0) for k, v, h in records]
            sources[kind] = [(0, future.get(timeout=60).offset) for future in futures]
            time.sleep(0.3)
    finally:
        injector.close()
    for codec, events in (("snappy", valid[1:11]), ("zstd", valid[11:21])):
        keyed = [(e["customerID"].encode(), encode_event(e)) for e in events]
        kind = "undecodable-batch" if codec == hidden_codec else f"{codec}-batch"
        sources[kind] = [(0, offset) for offset in hostile.librdkafka_send(settings, codec, keyed)]
    return sources


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.timeout(300)
def test_11_hostile_records_in_an_exactly_once_stream_are_dead_letters_and_the_consumer_keeps_going(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Under 1,000 events/s, exactly-once, the records of issue 19 arrive mid-stream: each hostile one
    is a dead letter, the snappy batch is scored, and the zstd batch, from a consumer that is run
    without zstd's library, is one dead letter for its ten offsets. The consumer never stops; each
    raw record has exactly one outcome; no log line carries a whole value, and dead-letter lines stay
    within 20 a second.

    The same stream carries scenario 5 (every kind of the malformed-event catalogue, each exactly one
    dead letter at its stage with the bytes sent) and scenario 7 (one dead letter replayed, twice,
    re-sent once): one stream pays for three scenarios."""
    settings = settings_from(pipeline_env)
    catalogue = badinput.catalogue(f"bad-{uuid.uuid4().hex[:8]}", utc_now_iso())
    assert len(catalogue) >= 60
    hidden = tmp_path / "no-zstd"
    hidden.mkdir()
    (hidden / "zstandard.py").write_text('raise ImportError("zstandard is hidden by the test")\n')
    create_topics(settings)
    scoring = consumer("consumer", {**pipeline_env, "PYTHONPATH": str(hidden)}, tmp_path, "--log-format", "json")
    processes = [scoring]
    reader = start_reader(settings)
    try:
        wait_for_group(settings, settings.consumer_group, [scoring])
        producing = streaming_producer(pipeline_env, tmp_path, rate=1000, duration_s=8, seed=SEED)
        processes.append(producing)
        wait_until(reached(reader, 1500), "predictions flowing", 60, [scoring])
        sources = send_hostile_records(settings, hidden_codec="zstd")
        malformed = send_catalogue(settings, catalogue)
        assert producing.wait(60) == 0
        every_outcome(settings, reader, 120, [scoring])
        still_running = scoring.poll() is None
        replay = replay_one_dead_letter(pipeline_env, settings, reader, malformed, scoring)
        consumer_code = scoring.stop()
        counts = account(settings, reader)
    finally:
        for process in processes:
            process.stop(timeout=10)
        reader.stop()
    dead_by_source = {s: d for d in reader.dead_letters for s in d.sources}
    predicted = {p.source for p in reader.predictions}
    dead_lettered_kinds = [
        kind for kind in ("odd-header-key", "worst-case-headers", "long-event-id", "not-json-flood")
        if all(source in dead_by_source and source not in predicted for source in sources[kind])
    ]  # fmt: skip
    batch_letters = {id(dead_by_source[s]) for s in sources["undecodable-batch"] if s in dead_by_source}
    lines = scoring.log_path.read_text(errors="replace").splitlines()
    logged = [orjson.loads(line) for line in lines if line.startswith("{")]
    one_by_one = [line for line in logged if "offset" in line]
    per_second = Counter(line["ts"][:19] for line in one_by_one)
    summed = sum(int(m.group(1)) for line in logged if (m := re.match(r"dead-lettered (\d+) more", line["message"])))
    figures(
        "scenario-11",
        raw_records=counts.raw_records,
        hostile_kinds_dead_lettered=len(dead_lettered_kinds),
        snappy_batch_scored=sum(s in predicted for s in sources["snappy-batch"]),
        undecodable_batch_dead_letters=len(batch_letters),
        dead_lettered=counts.dead_lettered,
        lost=counts.lost,
        duplicated=counts.duplicated,
        longest_log_line=max(len(line) for line in lines),
        dead_letter_lines=len(one_by_one),
        most_dead_letter_lines_in_a_second=max(per_second.values()),
        summed_up=summed,
        consumer_running_until_sigterm=still_running,
        consumer_exit=consumer_code,
    )
    assert still_running and consumer_code == 0
    assert counts.lost == 0 and counts.duplicated == 0 and counts.unknown_sources == 0
    assert counts.dead_letter_bytes_mismatch == 0
    assert len(dead_lettered_kinds) == 4, dead_lettered_kinds
    assert all(s in predicted for s in sources["snappy-batch"])
    assert len(batch_letters) == 1 and not any(s in predicted for s in sources["undecodable-batch"])
    assert max(len(line) for line in lines) < 2_000
    assert max(per_second.values()) <= 40  # 20 in each one-second window; two windows can share a clock second
    assert len(one_by_one) + summed == counts.dead_lettered  # every one logged, or counted in a summing-up line

    # Scenario 5: each kind of the catalogue, one dead letter at its stage, with the very bytes sent.
    valid = {r.source for r in read_topic(settings, settings.topic_raw)} - set(malformed) - {replay["source"]}
    valid -= {s for kind in sources.values() for s in kind}
    one_each = [
        kind.kind
        for source, kind in malformed.items()
        if source in dead_by_source
        and source not in predicted
        and dead_by_source[source].info.stage == kind.stage
        and (dead_by_source[source].key, dead_by_source[source].value) == (kind.key, kind.value)
    ]
    figures("scenario-5", kinds=len(catalogue), kinds_with_exactly_one_dead_letter=len(one_each),
            valid_events=len(valid), valid_scored=len(valid & predicted))  # fmt: skip
    figures("scenario-7", **{k: v for k, v in replay.items() if k != "source"})
    assert sorted(one_each) == sorted(kind.kind for kind in catalogue)
    assert valid <= predicted
    assert (replay["replayed"], replay["replayed_again"], replay["raw_records_added"]) == (1, 0, 1)
    assert replay["outcomes_of_replayed_record"] == 1 and replay["same_bytes"]


def send_catalogue(settings: Settings, catalogue: list[badinput.BadEvent]) -> dict[tuple[int, int], badinput.BadEvent]:
    """Every malformed kind once, straight to the raw topic; where each landed (partition, offset)."""
    injector = make_producer(settings, client_id="fault-injector", max_request_size=2_000_000)
    try:
        futures = [(injector.send(settings.topic_raw, key=item.key, value=item.value), item) for item in catalogue]
        injector.flush(timeout=60)
        landed = {}
        for future, item in futures:
            metadata = future.get(timeout=0)
            landed[(metadata.partition, metadata.offset)] = item
        return landed
    finally:
        injector.close()

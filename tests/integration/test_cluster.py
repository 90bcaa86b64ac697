"""Scaling out: replication chosen from the cluster, the harness on three brokers, a broker killed mid-stream.

The integration tests here start their own private three-node KRaft cluster (free ports, a temporary
home), never the shared broker: one of them hard-kills a node.
"""

from __future__ import annotations

import itertools
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from kafka.protocol.metadata import CoordinatorType

from benchmarks import bench_scaling
from churnstream import localkafka as broker
from churnstream.harness.analysis import conservation
from churnstream.harness.plan import RunTopics
from churnstream.harness.processes import CONSUMER, PRODUCER, ManagedProcess, script, wait_for_group
from churnstream.harness.readers import OutcomeReader, read_topic
from churnstream.kafka.clients import make_admin
from churnstream.kafka.topics import ensure_topics
from churnstream.settings import Settings, settings_from
from tests.helpers import (
    free_port,
    http_get,
    private_pipeline_env,
    run_script,
    scrape,
    script_env,
    start_local_cluster,
    start_script,
    wait_until,
)

STREAM_RATE = 250  # events/s: well inside what one consumer scores on a busy 2-core machine
STREAM_SECONDS = 24
KILL_AFTER_OUTCOMES = 1000  # outputs are flowing (about 4 s in) when the broker dies
MAX_OUTPUT_PAUSE_S = 60  # measured 12-14 s on a busy 2-core machine; generous, so load alone never fails it


# --- the replication choice (no broker) ----------------------------------------------------------


@pytest.mark.integration
def test_topics_on_the_session_broker_get_its_replication(pipeline_settings: Settings) -> None:
    """The single-broker default stays what it was: one replica (min(3, brokers) in general)."""
    admin = make_admin(pipeline_settings)
    try:
        brokers = len(admin.describe_cluster()["brokers"])
        ensure_topics(admin, pipeline_settings, [pipeline_settings.topic_raw])
        partitions = admin.describe_topics([pipeline_settings.topic_raw])[0]["partitions"]
    finally:
        admin.close()
    assert {len(p["replica_nodes"]) for p in partitions} == {min(3, brokers)}


# --- a private three-node cluster ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[broker.Layout]:
    layout = start_local_cluster(tmp_path_factory.mktemp("cluster-home"), brokers=3)
    try:
        yield layout
    finally:
        broker.down(layout)


@pytest.fixture
def cluster_env(cluster: broker.Layout, unique: Callable[[str], str], tmp_path: Path) -> dict[str, str]:
    """A private pipeline on the cluster. KAFKA_REPLICATION_FACTOR is left unset on purpose."""
    return private_pipeline_env(cluster.bootstrap_servers, unique, tmp_path)


def _replicas(settings: Settings, topics: list[str]) -> dict[str, set[int]]:
    admin = make_admin(settings)
    try:
        return {t["name"]: {len(p["replica_nodes"]) for p in t["partitions"]} for t in admin.describe_topics(topics)}
    finally:
        admin.close()


def _min_insync_replicas(settings: Settings, topic: str) -> int:
    admin = make_admin(settings)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, topic, ["min.insync.replicas"])
        described = admin.describe_configs([resource], config_filter="all")
    finally:
        admin.close()
    (per_name,) = described.values()
    return int(per_name[topic]["min.insync.replicas"]["value"])


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_harness_with_two_consumers_on_three_brokers(cluster_env: dict[str, str], tmp_path: Path) -> None:
    results_path = tmp_path / "results.json"
    completed = run_script(
        "test_pipeline.py",
        [
            *("--mode", "batch", "--limit", "1500", "--consumers", "2", "--keep-topics"),
            *("--results-json", str(results_path), "--no-report"),
        ],
        env=cluster_env,
        timeout=300,
    )
    assert results_path.is_file(), completed.stdout + completed.stderr
    results = json.loads(results_path.read_text())
    assert completed.returncode == 0, completed.stdout
    assert results["passed"] is True
    assert results["environment"]["broker"]["brokers"] == 3
    assert results["scored"] == 1500 and results["lost"] == 0 and results["duplicated"] == 0
    scenario = results["scenarios"][0]
    scored = [consumer["scored"] for consumer in scenario["consumers"]]
    assert len(scored) == 2 and sum(scored) == 1500 and min(scored) > 0
    # KAFKA_REPLICATION_FACTOR unset: every topic of the run got three replicas.
    run_topics = scenario["topics"]
    names = [run_topics["raw"], run_topics["predictions"], run_topics["deadletter"]]
    settings = settings_from(cluster_env)
    assert _replicas(settings, names) == {name: {3} for name in names}
    # acks=all then needs 2 of the 3 copies: one broker may be down (the fault test below).
    assert _min_insync_replicas(settings, run_topics["raw"]) == 2


# --- one broker hard-killed mid-stream -----------------------------------------------------------


def _coordinators(settings: Settings) -> dict[str, Any]:
    """Which node coordinates the group and each consumer's transactions, which leads what."""
    admin = make_admin(settings)
    try:
        find = admin._find_coordinator_id
        group = admin._manager.run(find, settings.consumer_group, CoordinatorType.GROUP)
        members = admin.describe_groups([settings.consumer_group])[settings.consumer_group]["members"]
        # consuming.ConsumerIdentity: the transactional id is <group>-<instance id>
        transactional_ids = [f"{settings.consumer_group}-{m['group_instance_id']}" for m in members]
        transactions = [admin._manager.run(find, tid, CoordinatorType.TRANSACTION) for tid in transactional_ids]
        controller = admin.describe_cluster().get("controller_id")
        leaders = {
            t["name"]: [p["leader_id"] for p in t["partitions"]]
            for t in admin.describe_topics([settings.topic_raw, settings.topic_predictions])
        }
    finally:
        admin.close()
    return {"group": group, "transactions": transactions, "controller": controller, "leaders": leaders}


def _roles(node_id: int, coordinators: dict[str, Any], settings: Settings) -> dict[str, Any]:
    leaders = coordinators["leaders"]
    return {
        "node_id": node_id,
        "group_coordinator": coordinators["group"] == node_id,
        "transaction_coordinator_of_consumers": coordinators["transactions"].count(node_id),
        "active_controller": coordinators["controller"] == node_id,
        "raw_partitions_led": leaders[settings.topic_raw].count(node_id),
        "prediction_partitions_led": leaders[settings.topic_predictions].count(node_id),
    }


def _longest_pause_after(times_ms: list[float], start_ms: float) -> tuple[float, float]:
    """(longest gap between outputs after ``start_ms``, when that gap ended), in ms."""
    points = sorted([start_ms, *(t for t in times_ms if t >= start_ms)])
    gaps = [(later - earlier, later) for earlier, later in itertools.pairwise(points)]
    return max(gaps, default=(0.0, start_ms))


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(480)
def test_a_broker_hard_killed_mid_stream_loses_nothing(
    cluster: broker.Layout, cluster_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_from(cluster_env)
    topics = RunTopics(
        settings.topic_raw, settings.topic_predictions, settings.topic_deadletter, settings.consumer_group
    )
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [topics.raw])  # the consumers create their outputs, as in production
    finally:
        admin.close()
    env = script_env(cluster_env)
    consumers = [
        ManagedProcess(
            f"consumer-{index}",
            script(CONSUMER, "--summary-json", str(tmp_path / f"consumer-{index}.json")),
            env,
            tmp_path / f"consumer-{index}.log",
        )
        for index in range(2)
    ]
    processes = list(consumers)
    reader = OutcomeReader(settings, topics)
    victim: int | None = None
    try:
        wait_for_group(settings, topics.group, consumers)
        # The group coordinator: killing it moves the most (group, offsets, partition leaders).
        coordinators = _coordinators(settings)
        roles = _roles(coordinators["group"], coordinators, settings)
        victim = coordinators["group"] - 1  # node.id n+1 is layout node n
        reader.start_reading()
        producer = ManagedProcess(
            "producer",
            script(
                *(PRODUCER, "--mode", "streaming", "--no-progress"),
                *("--events-per-sec", str(STREAM_RATE), "--duration", str(STREAM_SECONDS), "--seed", "7"),
                *("--summary-json", str(tmp_path / "producer.json")),
            ),
            env,
            tmp_path / "producer.log",
        )
        processes.append(producer)
        deadline = time.monotonic() + 60
        while reader.outcomes < KILL_AFTER_OUTCOMES and time.monotonic() < deadline and producer.poll() is None:
            time.sleep(0.05)
        assert reader.outcomes >= KILL_AFTER_OUTCOMES, "outputs were not flowing before the kill"
        killed_ms = time.time() * 1000.0
        assert broker.stop_node(cluster, victim, hard=True)

        producer_code = producer.wait(STREAM_SECONDS + 150)
        assert producer_code == 0, producer.tail()
        produced = orjson.loads((tmp_path / "producer.json").read_bytes())
        raw = read_topic(settings, topics.raw)
        deadline = time.monotonic() + 120
        while reader.outcomes < len(raw) and time.monotonic() < deadline and reader.error is None:
            if any(c.poll() is not None for c in consumers):
                break
            time.sleep(0.1)
        time.sleep(1.0)  # late duplicates, if any, arrive before we count
        exited = {c.name: c.poll() for c in consumers if c.poll() is not None}
        codes = [c.stop() for c in consumers]
    finally:
        for process in processes:
            process.stop(timeout=10)
        if reader.is_alive():
            reader.stop()
        if victim is not None:  # leave the module's cluster whole for whatever runs next
            broker.start_node(cluster, victim)
            broker.wait_until_ready(cluster)

    counts = conservation(raw, reader.predictions, reader.dead_letters)
    summaries = [_read_json(tmp_path / f"consumer-{i}.json") for i in range(2)]
    outputs_ms = [p.readable_ms for p in reader.predictions] + [d.readable_ms for d in reader.dead_letters]
    pause_ms, resumed_ms = _longest_pause_after(outputs_ms, killed_ms)
    figures = {
        "events": counts.raw_records,
        "lost": counts.lost,
        "duplicated": counts.duplicated + counts.unknown_sources,
        "killed_node": roles,
        "longest_output_pause_s": round(pause_ms / 1000, 2),
        "outputs_resumed_after_kill_s": round((resumed_ms - killed_ms) / 1000, 2),
        "transactions_aborted": sum(s.get("transactions_aborted", 0) for s in summaries),
        "consumer_exit_codes": codes,
        "producer": {key: produced.get(key) for key in ("sent", "acknowledged", "failed", "max_lag_s")},
    }
    print("FIGURES cluster-fault " + json.dumps(figures, sort_keys=True))
    assert reader.error is None
    assert exited == {}, "\n".join(c.tail() for c in consumers)  # nobody exited or needed a restart
    assert codes == [0, 0], "\n".join(c.tail() for c in consumers)
    assert produced["sent"] == produced["acknowledged"] == STREAM_RATE * STREAM_SECONDS
    assert counts.raw_records == STREAM_RATE * STREAM_SECONDS
    assert counts.lost == 0, counts.lost_examples
    assert counts.duplicated == 0 and counts.unknown_sources == 0 and counts.duplicate_event_ids == 0
    assert counts.scored == STREAM_RATE * STREAM_SECONDS and counts.dead_lettered == 0
    assert sum(s["consumed"] for s in summaries) == counts.raw_records
    # The controller fences a silent broker after broker.session.timeout.ms (9 s); outputs resume soon after.
    assert pause_ms < MAX_OUTPUT_PAUSE_S * 1000, figures


def _read_json(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes()) if path.is_file() else {}


# --- the scaling benchmark -----------------------------------------------------------------------


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_the_benchmark_quick_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """About a minute: a one-broker cluster, 10,000 events, one then two consumers."""
    out = tmp_path / "scaling"
    code = bench_scaling.main(["--brokers", "1", "--events", "10000", "--consumers", "1,2", "--out-dir", str(out)])
    stdout = capsys.readouterr().out
    assert code == 0, stdout
    results = json.loads((out / "scaling.json").read_text())
    assert [(r["brokers"], r["consumers"]) for r in results["summary"]] == [(1, 1), (1, 2)]
    assert all(r["events_per_sec"] > 0 for r in results["summary"])
    assert [sum(r["consumer_events"]) for r in results["summary"]] == [10_000, 10_000]
    assert (out / "scaling.png").stat().st_size > 10_000
    assert "events/s" in stdout and "limit = " in stdout


# --- readiness when the output is blocked ----------------------------------------------------------


def _lag_records(port: int) -> float:
    return sum(value for name, value in scrape(port).items() if name.startswith("churn_consumer_lag_records"))


def _readyz(port: int) -> tuple[int, str]:
    return http_get(f"http://127.0.0.1:{port}/readyz")


@pytest.mark.integration
@pytest.mark.timeout(300)
def test_readyz_fails_while_the_output_is_blocked_and_lag_grows_then_recovers(
    cluster: broker.Layout, cluster_env: dict[str, str], tmp_path: Path
) -> None:
    """Output blocked for real: the predictions topic lives on node 3 alone, and node 3 stops. The
    input (replicated) keeps flowing, so the lag grows while no batch can be delivered. /readyz must
    fail within 35 s (a stall of 30 s), /healthz must not (blocked is not stuck), and both must be
    fine again once node 3 is back."""
    settings = settings_from(cluster_env)
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw, settings.topic_deadletter])
        admin.create_topics(
            [NewTopic(settings.topic_predictions, replica_assignments={p: [3] for p in range(6)})]
        )  # node.id 3 is layout node 2
    finally:
        admin.close()
    port = free_port()
    consumer = start_script(
        "consumer.py", ["--metrics-port", str(port), "--duration", "200"], cluster_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    producer = start_script(
        "producer.py", ["--mode", "streaming", "--events-per-sec", "40", "--duration", "180"], cluster_env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: _readyz(port)[0] == 200, 60, "the consumer to be ready")
        broker.stop_node(cluster, 2)
        blocked_lag = _lag_records(port)
        took = wait_until(lambda: _readyz(port)[0] == 503, 60, "/readyz to fail")
        status, reason = _readyz(port)
        assert status == 503 and took <= 35.0, f"not ready only {took:.1f} s after the output was blocked"
        assert "busy in one batch" in reason or "no progress" in reason, reason
        assert _lag_records(port) > blocked_lag + 100  # ~40 events/s kept arriving
        assert http_get(f"http://127.0.0.1:{port}/healthz")[0] == 200

        broker.start_node(cluster, 2)
        broker.wait_until_ready(cluster)
        back = wait_until(lambda: _readyz(port)[0] == 200, 120, "readiness after the output came back")
        print(f"FIGURES readyz not_ready_after_s={took:.1f} ready_again_after_restart_s={back:.1f}")
    finally:
        if broker.node_pid(cluster, 2) is None:
            broker.start_node(cluster, 2)
            broker.wait_until_ready(cluster)
        for process in (producer, consumer):
            process.terminate()
        producer.communicate(timeout=60)
        _, err = consumer.communicate(timeout=120)
    assert consumer.returncode == 0, err[-3000:]

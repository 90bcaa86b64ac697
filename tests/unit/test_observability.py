"""Metrics, lag and health without a broker: fake clocks, a real prometheus_client registry, a real port."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping

import numpy as np
import pytest
from kafka.structs import TopicPartition
from prometheus_client import CollectorRegistry, Gauge, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from churnstream.errors import ConfigError
from churnstream.observability import metrics as m
from churnstream.observability import server as server_module
from churnstream.observability.health import Health
from churnstream.observability.lag import MAX_SAMPLES, LagProbe, LagTracker
from churnstream.observability.metrics import BatchHistogram, ConsumerMetrics, ProducerMetrics
from churnstream.observability.server import MAX_CONCURRENT_REQUESTS, MetricsServer

TP0 = TopicPartition("raw", 0)
TP1 = TopicPartition("raw", 1)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of the registry's exposition, parsed back as Prometheus would read it."""
    text = generate_latest(registry).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


# -- lag


def test_lag_in_records_is_the_watermark_minus_the_committed_offset() -> None:
    lag = LagTracker()
    lag.assigned([TP0], now=0.0)
    lag.observe(TP0, highwater=100, position=40, now=1.0)
    assert lag.partitions[TP0].records == 60
    lag.committed(TP0, 90, now=2.0)
    assert lag.partitions[TP0].records == 10
    lag.committed(TP0, 100, now=3.0)
    assert lag.total_records() == 0


def test_lag_in_seconds_is_the_age_of_the_oldest_record_waiting() -> None:
    lag = LagTracker()
    lag.assigned([TP0], now=0.0)
    lag.observe(TP0, highwater=10, position=10, now=0.0)  # caught up
    lag.observe(TP0, highwater=20, position=None, now=5.0)  # offsets 10..19 arrived by t=5
    lag.observe(TP0, highwater=30, position=None, now=8.0)  # 20..29 by t=8
    assert lag.partitions[TP0].seconds(now=11.0) == pytest.approx(6.0)  # offset 10 has waited since t=5
    lag.committed(TP0, 20, now=11.0)
    assert lag.partitions[TP0].seconds(now=11.0) == pytest.approx(3.0)  # offset 20 since t=8
    lag.committed(TP0, 30, now=12.0)
    assert lag.partitions[TP0].seconds(now=20.0) == 0.0


def test_a_partition_is_stalled_only_with_records_waiting_and_no_progress() -> None:
    lag = LagTracker()
    lag.assigned([TP0, TP1], now=0.0)
    lag.observe(TP0, highwater=5, position=0, now=0.0)
    lag.observe(TP1, highwater=0, position=0, now=0.0)  # idle: nothing waits
    assert lag.stalled(now=29.0, after_s=30.0) == []
    assert lag.stalled(now=31.0, after_s=30.0) == [TP0]
    lag.committed(TP0, 3, now=31.0)  # progress, though records still wait
    assert lag.stalled(now=40.0, after_s=30.0) == []
    lag.revoked([TP0])
    assert lag.stalled(now=100.0, after_s=30.0) == []


class FakeBroker:
    """What the probe reads: end offsets and the group's committed offsets, or a broker away."""

    def __init__(self) -> None:
        self.ends: dict[TopicPartition, int] = {}
        self.committed: dict[TopicPartition, int] = {}
        self.asked: list[list[TopicPartition]] = []

    def __call__(self, partitions: list[TopicPartition]) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
        self.asked.append(partitions)
        if not self.ends:
            raise ConnectionError("broker away")
        return {tp: self.ends[tp] for tp in partitions}, dict(self.committed)


def test_the_probe_keeps_the_lag_growing_while_the_loop_is_blocked() -> None:
    """Blocked in its first batch, the loop has committed nothing and fetches nothing: the probe
    still knows where the group stands and how far the input has gone."""
    clock = Clock()
    lag = LagTracker()
    lag.assigned([TP0], now=clock.now)
    broker = FakeBroker()
    probe = LagProbe(lag, broker, clock=clock)
    probe.once()  # the broker is away: nothing changes, nothing raises
    assert lag.total_records() == 0
    broker.ends[TP0], broker.committed[TP0] = 180, 100
    clock.now += 5
    probe.once()
    broker.ends[TP0] = 260
    clock.now += 5
    probe.once()
    assert broker.asked[-1] == [TP0]
    [reading] = lag.readings(clock.now + 2)
    assert (reading.records, reading.seconds) == (160, pytest.approx(7.0))  # offset 100 is known since t+5
    lag.observe(TP0, highwater=120, position=None, now=clock.now)  # the loop's older view: ignored
    assert lag.total_records() == 160
    clock.now += 31
    assert lag.stalled(clock.now, 30.0) == [TP0]  # the group's offset as read is not progress...
    lag.committed(TP0, 200, clock.now)
    assert lag.stalled(clock.now, 30.0) == []  # ...a commit is
    lag.revoked([TP0])
    probe.once()  # nothing assigned: no request
    assert lag.readings(clock.now) == []


def test_one_partition_stuck_among_six_keeps_aging_and_makes_the_consumer_not_ready() -> None:
    """The issue's case: the loop turns 20 times a second, 5 records a turn arrive on each of six
    partitions, five are processed and one is stuck for 120 s. Before: 600 samples covered the last
    30 s only, so the stuck partition's 12,000 records read 29.9 s old and /readyz stayed 200."""
    clock = Clock()
    health = Health(liveness_s=60.0, clock=clock)
    health.model_loaded = True
    partitions = [TopicPartition("raw", p) for p in range(6)]
    stuck = partitions[3]
    health.lag.assigned(partitions, now=clock.now)
    for tp in partitions:
        health.lag.observe(tp, highwater=0, position=0, now=clock.now)
    for turn in range(1, 120 * 20 + 1):
        clock.now += 0.05
        health.beat(joined=True)
        for tp in partitions:
            health.lag.observe(tp, highwater=5 * turn, position=None, now=clock.now)
            if tp != stuck:
                health.lag.committed(tp, 5 * turn, now=clock.now)
    readings = {reading.tp: reading for reading in health.lag.readings(clock.now)}
    assert readings[stuck].records == 12_000
    assert readings[stuck].seconds == pytest.approx(120.0, abs=0.1)
    assert all(readings[tp].records == 0 == readings[tp].seconds for tp in partitions if tp != stuck)
    assert health.ready() == (False, "records waiting and no progress for over 30 s on raw[3]")
    assert len(health.lag.partitions[stuck].samples) <= MAX_SAMPLES  # bounded all the same


def test_the_probe_dates_records_that_waited_before_the_consumer_looked() -> None:
    """Assigned a partition an hour behind (a restart): the table knows only since it looked; the
    oldest waiting record's own timestamp says an hour. Read once the table says a record has waited
    a probe interval, and once per processed offset."""
    clock = Clock()
    wall = 1_700_000_000.0
    lag = LagTracker()
    lag.assigned([TP0], now=clock.now)
    broker = FakeBroker()
    broker.ends[TP0], broker.committed[TP0] = 500, 100
    asked: list[dict[TopicPartition, int]] = []

    def date(offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, tuple[int, int]]:
        asked.append(dict(offsets))
        return {tp: (offset + 2, int((wall - 3600) * 1000)) for tp, offset in offsets.items()}  # past 2 markers

    probe = LagProbe(lag, broker, date, clock=clock, wall_clock=lambda: wall)
    probe.once()
    assert asked == [] and lag.readings(clock.now)[0].seconds == 0.0  # just seen: no fetch yet
    clock.now += 5
    wall += 5
    probe.once()
    assert asked == [{TP0: 100}]
    assert lag.readings(clock.now)[0].seconds == pytest.approx(3600.0)
    clock.now += 5
    wall += 5
    probe.once()
    assert asked == [{TP0: 100}]  # dated once: the processed offset has not moved
    assert lag.readings(clock.now)[0].seconds == pytest.approx(3605.0)
    lag.committed(TP0, 300, now=clock.now)  # waiting since the table's first look, 10 s ago
    probe.once()
    assert asked[-1] == {TP0: 300}


# -- health


def test_liveness_fails_when_the_loop_is_silent_past_its_bound() -> None:
    clock = Clock()
    health = Health(liveness_s=60.0, clock=clock)
    assert health.live() == (True, "starting")
    health.beat(joined=True)
    clock.now += 59
    assert health.live()[0]
    clock.now += 2
    ok, reason = health.live()
    assert not ok
    assert "silent for 61 s" in reason


def test_readiness_needs_the_model_the_group_partitions_and_progress() -> None:
    clock = Clock()
    health = Health(liveness_s=60.0, clock=clock)
    assert health.ready() == (False, "the model is not loaded")
    health.model_loaded = True
    assert health.ready() == (False, "not a member of the group yet")
    health.beat(joined=True)
    assert health.ready() == (False, "no partitions assigned")
    health.lag.assigned([TP0], now=clock.now)
    health.lag.observe(TP0, highwater=50, position=0, now=clock.now)
    assert health.ready() == (True, "ok")

    clock.now += 31  # records waiting, the loop turning, but nothing committed for 31 s
    health.beat(joined=True)
    ok, reason = health.ready()
    assert not ok
    assert "raw[0]" in reason

    health.lag.committed(TP0, 50, now=clock.now)  # recovered
    assert health.ready() == (True, "ok")

    clock.now += 31  # one batch that has not returned for 31 s
    ok, reason = health.ready()
    assert not ok
    assert "busy in one batch" in reason


# -- histograms and series


def test_the_batch_histogram_counts_as_prometheus_own_histogram_does() -> None:
    values = np.array([0.0, 0.005, 0.0051, 0.01, 0.3, 1.0, 59.0, 60.0, 61.0, 1e6])
    ours = CollectorRegistry()
    ours.register(BatchHistogram("x_seconds", "x", m.LATENCY_BUCKETS_S))
    next(iter(ours._collector_to_names)).observe_many(values)  # the only collector
    theirs = CollectorRegistry()
    reference = Histogram("x_seconds", "x", buckets=m.LATENCY_BUCKETS_S, registry=theirs)
    for value in values:
        reference.observe(float(value))
    assert samples(ours) == samples(theirs)


def test_a_batch_updates_every_counter_once_and_keeps_both_transaction_series() -> None:
    metrics = ConsumerMetrics(Health(liveness_s=60.0), LagTracker())
    before = samples(metrics.registry)
    assert before[("churn_transactions_total", (("result", "aborted"),))] == 0
    metrics.batch(consumed=10, scored=8, dead_by_stage={"validate": 2}, stage_seconds={"predict": 0.002})
    metrics.latencies(np.array([1000.0, 1900.0]), now_ms=2000.0)  # 1 s and 0.1 s
    metrics.aborted()
    after = samples(metrics.registry)
    assert after[("churn_events_consumed_total", ())] == 10
    assert after[("churn_events_scored_total", ())] == 8
    assert after[("churn_events_dead_lettered_total", (("stage", "validate"),))] == 2
    assert after[("churn_transactions_total", (("result", "committed"),))] == 1
    assert after[("churn_transactions_total", (("result", "aborted"),))] == 1
    assert after[("churn_event_latency_seconds_count", ())] == 2
    assert after[("churn_event_latency_seconds_sum", ())] == pytest.approx(1.1)
    assert after[("churn_batch_events_sum", ())] == 10
    assert after[("churn_batch_stage_duration_seconds_count", (("stage", "predict"),))] == 1
    assert not any(name.endswith("_created") for name, _ in after)


def test_a_revoked_partition_s_series_are_removed() -> None:
    health = Health(liveness_s=60.0)
    lag = health.lag
    metrics = ConsumerMetrics(health, lag)
    lag.assigned([TP0, TP1], now=0.0)
    lag.observe(TP0, highwater=7, position=0, now=0.0)
    lag.observe(TP1, highwater=3, position=0, now=0.0)
    series = samples(metrics.registry)
    assert series[("churn_consumer_lag_records", (("partition", "0"), ("topic", "raw")))] == 7
    assert series[("churn_assigned_partitions", ())] == 2

    lag.revoked([TP0])
    series = samples(metrics.registry)
    assert ("churn_consumer_lag_records", (("partition", "0"), ("topic", "raw"))) not in series
    assert ("churn_consumer_lag_seconds", (("partition", "0"), ("topic", "raw"))) not in series
    assert series[("churn_consumer_lag_records", (("partition", "1"), ("topic", "raw")))] == 3
    assert series[("churn_assigned_partitions", ())] == 1


def test_model_info_names_only_the_current_version() -> None:
    metrics = ConsumerMetrics(Health(liveness_s=60.0), LagTracker())
    metrics.model("v1")
    metrics.model("v2")
    series = samples(metrics.registry)
    assert series[("churn_model_info", (("version", "v2"),))] == 1
    assert ("churn_model_info", (("version", "v1"),)) not in series


class Counts:
    def __init__(self, sent: int, acknowledged: int, failed: int) -> None:
        self.sent, self.acknowledged, self.failed = sent, acknowledged, failed


def test_producer_metrics_read_the_delivery_counters_when_scraped() -> None:
    clock = Clock()
    metrics = ProducerMetrics(clock=clock)
    assert samples(metrics.registry)[("churn_producer_events_total", (("state", "sent"),))] == 0
    counts = Counts(0, 0, 0)
    metrics.watch(counts)
    counts.sent, counts.acknowledged, counts.failed = 500, 400, 1  # the loop and the sender thread count
    clock.now += 4.0
    series = samples(metrics.registry)
    assert series[("churn_producer_events_total", (("state", "sent"),))] == 500
    assert series[("churn_producer_events_total", (("state", "acknowledged"),))] == 400
    assert series[("churn_producer_events_total", (("state", "failed"),))] == 1
    assert series[("churn_producer_achieved_events_per_second", ())] == pytest.approx(100.0)
    assert ("churn_producer_checkpoint_rows", ()) not in series  # streaming: no checkpoint
    metrics.checkpointed(5000)
    assert samples(metrics.registry)[("churn_producer_checkpoint_rows", ())] == 5000


def exported(registry: CollectorRegistry) -> set[str]:
    """The metric names a registry exports, as PromQL names them (counters with ``_total``)."""
    return {family.name + ("_total" if family.type == "counter" else "") for family in registry.collect()}


def test_every_exported_name_is_one_of_the_named_constants_and_back() -> None:
    """monitoring/ and its test read the constants: a metric renamed in one place only would slip."""
    producer = ProducerMetrics()
    producer.checkpointed(1)
    names = exported(ConsumerMetrics(Health(liveness_s=60.0), LagTracker()).registry) | exported(producer.registry)
    assert names == set(m.EXPORTED)


# -- the port


def test_the_port_serves_metrics_and_probes_and_refuses_to_start_when_taken() -> None:
    health = Health(liveness_s=60.0)
    metrics = ConsumerMetrics(health, health.lag)
    server = MetricsServer(0, metrics.registry, health).start()
    base = f"http://127.0.0.1:{server.port}"
    try:
        body = urllib.request.urlopen(f"{base}/metrics", timeout=5).read().decode()
        assert "churn_events_scored_total 0.0" in body
        assert "churn_consumer_ready 0.0" in body  # the model is not loaded
        assert "churn_consumer_live 1.0" in body
        assert urllib.request.urlopen(f"{base}/healthz", timeout=5).status == 200
        with pytest.raises(urllib.error.HTTPError) as not_ready:
            urllib.request.urlopen(f"{base}/readyz", timeout=5)
        assert not_ready.value.code == 503
        assert not_ready.value.read().decode().strip() == "the model is not loaded"

        with pytest.raises(ConfigError) as taken:
            MetricsServer(server.port, CollectorRegistry())
        assert f"--metrics-port {server.port} cannot be used" in str(taken.value)
    finally:
        server.close()


def test_a_flood_of_connections_gets_a_bounded_number_of_threads() -> None:
    """Before: one thread per connection, without a cap (ThreadingHTTPServer): 3 x 8 idle connections
    held 24 threads. Now at most MAX_CONCURRENT_REQUESTS; the rest are closed at once, and once the
    flood is gone the port answers again."""
    registry = CollectorRegistry()
    Gauge("flood_survived", "answered after the flood", registry=registry)
    server = MetricsServer(0, registry).start()
    threads_before = threading.active_count()
    flood = [
        socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(3 * MAX_CONCURRENT_REQUESTS)
    ]
    try:
        time.sleep(0.5)  # every connection accepted, and each held idle (no request line yet)
        assert threading.active_count() - threads_before <= MAX_CONCURRENT_REQUESTS
        closed = 0
        for connection in flood:
            connection.settimeout(0.2)
            with contextlib.suppress(TimeoutError):  # a timeout: being served, waiting for its request line
                closed += connection.recv(1) == b""  # closed by the server at once, not left waiting
        assert closed >= 2 * MAX_CONCURRENT_REQUESTS
    finally:
        for connection in flood:
            connection.close()
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{server.port}/metrics", timeout=5).read()
        assert b"flood_survived 0.0" in body
    finally:
        server.close()


def test_clients_that_trickle_their_requests_cannot_hold_the_probes_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the timeout was per read, so a byte every few seconds kept a slot for ever, and eight such
    clients closed the port to the kubelet's /healthz. Now each request has one deadline from its
    connection (lowered here to 1 s; the trickle sends a byte every 0.2 s)."""
    monkeypatch.setattr(server_module, "REQUEST_TIMEOUT_S", 1.0)
    server = MetricsServer(0, CollectorRegistry(), Health(liveness_s=60.0)).start()
    slow = [socket.create_connection(("127.0.0.1", server.port), timeout=5) for _ in range(MAX_CONCURRENT_REQUESTS)]
    try:
        started, closed_after = time.monotonic(), {}
        while len(closed_after) < len(slow) and time.monotonic() - started < 4:
            for index, connection in enumerate(slow):
                if index not in closed_after:
                    try:
                        connection.sendall(b"G")
                    except OSError:  # reset by the server: it gave up on this request
                        closed_after[index] = time.monotonic() - started
            time.sleep(0.2)
        assert len(closed_after) == len(slow), f"{len(slow) - len(closed_after)} trickling clients still held"
        assert max(closed_after.values()) < 3
        assert urllib.request.urlopen(f"http://127.0.0.1:{server.port}/healthz", timeout=5).status == 200
    finally:
        for connection in slow:
            connection.close()
        server.close()


def test_the_port_listens_on_the_address_given_and_names_a_foreign_one() -> None:
    server = MetricsServer(0, CollectorRegistry(), address="127.0.0.1").start()
    try:
        assert server.url == f"http://127.0.0.1:{server.port}"
        assert urllib.request.urlopen(f"{server.url}/metrics", timeout=5).status == 200
        others = {info[4][0] for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET)}
        for address in others - {"127.0.0.1"}:  # this host's other IPv4 addresses: not listened on
            with pytest.raises(OSError):
                socket.create_connection((address, server.port), timeout=2).close()
    finally:
        server.close()
    with pytest.raises(ConfigError) as foreign:
        MetricsServer(0, CollectorRegistry(), address="192.0.2.1")  # TEST-NET-1: no host has it
    assert "on METRICS_ADDRESS/--metrics-address 192.0.2.1 cannot be used" in str(foreign.value)


@pytest.mark.parametrize("script", ["churnstream.cli.consumer", "churnstream.cli.producer"])
def test_a_metrics_port_in_use_stops_the_start_in_one_line(script: str) -> None:
    """Before the model, before the broker (none answers at the bootstrap address here): exit 3."""
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--metrics-port", str(port), "--bootstrap-server", "localhost:1"]
        if script.endswith("producer"):
            args += ["--mode", "streaming", "--events-per-sec", "1"]
        env = {**os.environ, "CHURN_DOTENV": "none"}
        result = subprocess.run(
            [sys.executable, "-m", script, *args], capture_output=True, text=True, env=env, timeout=60, check=False
        )
    assert result.returncode == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith("Error: ") and f"--metrics-port {port} cannot be used" in line


@pytest.mark.parametrize("script", ["churnstream.cli.consumer", "churnstream.cli.producer"])
def test_both_scripts_listen_where_metrics_address_says(script: str) -> None:
    """METRICS_ADDRESS, one variable for both: an address not of this host stops either in one line."""
    args = ["--metrics-port", "9", "--bootstrap-server", "localhost:1"]
    if script.endswith("producer"):
        args += ["--mode", "streaming", "--events-per-sec", "1"]
    env = {**os.environ, "CHURN_DOTENV": "none", "METRICS_ADDRESS": "192.0.2.1"}
    result = subprocess.run(
        [sys.executable, "-m", script, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )
    assert result.returncode == 3, result.stderr
    [line] = [line for line in result.stderr.splitlines() if line.strip()]
    assert "--metrics-port 9 on METRICS_ADDRESS/--metrics-address 192.0.2.1 cannot be used" in line


def test_a_transaction_marker_at_the_end_is_no_lag_once_the_consumer_is_idle() -> None:
    """A replay writes the raw topic in transactions: its commit marker takes an offset nobody
    processes. Committed 100, end offset 101: one record of lag forever, until the idle position."""
    lag = LagTracker()
    lag.assigned([TP0], now=0.0)
    lag.observe(TP0, highwater=101, position=None, now=0.0)
    lag.committed(TP0, 100, now=0.0)
    assert lag.total_records() == 1
    lag.idle(TP0, 101)  # the fetcher skipped the marker: position 101, nothing returned
    assert lag.total_records() == 0 and lag.stalled(now=100.0, after_s=30.0) == []
    lag.observe(TP0, highwater=150, position=None, now=100.0)  # new records: lag again, from 101
    assert lag.total_records() == 49


def test_a_burst_after_a_quiet_spell_is_not_a_stall() -> None:
    lag = LagTracker()
    lag.assigned([TP0], now=0.0)
    lag.observe(TP0, highwater=10, position=10, now=0.0)  # caught up at t=0, then quiet
    lag.observe(TP0, highwater=60, position=None, now=100.0)  # a burst at t=100
    assert lag.stalled(now=101.0, after_s=30.0) == []  # its records are 1 s old
    assert lag.stalled(now=131.0, after_s=30.0) == [TP0]  # and still uncommitted 31 s later

"""Prometheus metrics of the consumer and the producer, with the official client (prometheus_client).

Named by Prometheus' conventions: base units (seconds), ``_total`` for counters, one metric with a
label rather than one metric per stage or result. Each process has its own registry, served on
``--metrics-port`` by :mod:`churnstream.observability.server`. monitoring/ holds the Prometheus
configuration, the alert rules and a Grafana dashboard written against these names
(tests/unit/test_monitoring.py checks that every query names one of them).

Hot path: per batch, a few counter increments and one histogram update for the whole batch's
latencies (counted into buckets with numpy), never a call per event.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from churnstream.observability.lag import LagTracker

# End to end, event_ts -> output acknowledged: milliseconds at low rates, seconds during an outage.
disable_created_metrics()  # the *_created series double every counter and say nothing an operator needs

LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0)
BATCH_BUCKETS = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
STAGES = ("poll", "decode", "predict", "encode", "send", "flush", "commit")

# The names, for monitoring/ and its test: one place.
EVENTS_CONSUMED = "churn_events_consumed_total"
EVENTS_SCORED = "churn_events_scored_total"
EVENTS_DEAD_LETTERED = "churn_events_dead_lettered_total"
DEAD_LETTER_LINES_LEFT_OUT = "churn_dead_letter_log_lines_left_out_total"
TRANSACTIONS = "churn_transactions_total"
REBALANCES = "churn_rebalances_total"
MODEL_LOAD_FAILURES = "churn_model_load_failures_total"
MODEL_FALLBACK = "churn_model_fallback"  # 1 while the store's current version is refused and an earlier one serves
EVENT_LATENCY = "churn_event_latency_seconds"
STAGE_DURATION = "churn_batch_stage_duration_seconds"
BATCH_SIZE = "churn_batch_events"
LAG_RECORDS = "churn_consumer_lag_records"
LAG_SECONDS = "churn_consumer_lag_seconds"
ASSIGNED_PARTITIONS = "churn_assigned_partitions"
MODEL_INFO = "churn_model_info"
LAST_COMMIT = "churn_last_commit_timestamp_seconds"
FEATURE_PSI = "churn_feature_psi"  # population stability index of recent events against the training data
WINDOW_MEAN_PROBABILITY = "churn_window_mean_churn_probability"
READY = "churn_consumer_ready"  # /readyz as a series, so Prometheus can alert on it
LIVE = "churn_consumer_live"  # /healthz likewise
PRODUCER_EVENTS = "churn_producer_events_total"
PRODUCER_RATE = "churn_producer_achieved_events_per_second"
PRODUCER_CHECKPOINT = "churn_producer_checkpoint_rows"
EXPORTED = (
    EVENTS_CONSUMED,
    EVENTS_SCORED,
    EVENTS_DEAD_LETTERED,
    DEAD_LETTER_LINES_LEFT_OUT,
    TRANSACTIONS,
    REBALANCES,
    MODEL_LOAD_FAILURES,
    MODEL_FALLBACK,
    EVENT_LATENCY,
    STAGE_DURATION,
    BATCH_SIZE,
    LAG_RECORDS,
    LAG_SECONDS,
    ASSIGNED_PARTITIONS,
    MODEL_INFO,
    LAST_COMMIT,
    FEATURE_PSI,
    WINDOW_MEAN_PROBABILITY,
    READY,
    LIVE,
    PRODUCER_EVENTS,
    PRODUCER_RATE,
    PRODUCER_CHECKPOINT,
)


def _family(name: str) -> str:
    """A counter's family name, as prometheus_client wants it (it adds ``_total`` itself)."""
    return name.removesuffix("_total")


class BatchHistogram(Collector):
    """A histogram fed a whole batch of observations at once (numpy counts them into buckets)."""

    def __init__(self, name: str, documentation: str, buckets: Sequence[float]) -> None:
        self.name = name
        self.documentation = documentation
        self.bounds = np.asarray(buckets, dtype=float)
        self.counts = np.zeros(len(buckets) + 1, dtype=np.int64)  # the last: above every bound
        self.total = 0.0

    def observe_many(self, values: np.ndarray) -> None:
        if values.size == 0:
            return
        indexes = np.searchsorted(self.bounds, values, side="left")  # a value equal to a bound counts in it
        self.counts += np.bincount(indexes, minlength=len(self.counts))
        self.total += float(values.sum())

    def collect(self) -> Iterable[HistogramMetricFamily]:
        cumulative = np.cumsum(self.counts)
        buckets = [(floatToGoString(bound), int(count)) for bound, count in zip(self.bounds, cumulative, strict=False)]
        buckets.append(("+Inf", int(cumulative[-1])))
        family = HistogramMetricFamily(self.name, self.documentation)
        family.add_metric([], buckets, self.total)
        yield family


class Probes(Protocol):
    """What health.Health answers (kept as a protocol: the metrics need not know how)."""

    def live(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


class ProbeCollector(Collector):
    """The liveness and readiness checks as 1/0 gauges, evaluated when Prometheus scrapes."""

    def __init__(self, probes: Probes) -> None:
        self.probes = probes

    def collect(self) -> Iterable[Metric]:
        yield GaugeMetricFamily(READY, "1 when /readyz answers 200", value=int(self.probes.ready()[0]))
        yield GaugeMetricFamily(LIVE, "1 when /healthz answers 200", value=int(self.probes.live()[0]))


class LagCollector(Collector):
    """Lag per assigned partition, read from the tracker when Prometheus scrapes: a partition that
    is revoked leaves the tracker, so its series go with it; nothing to refresh from the loop."""

    def __init__(self, lag: LagTracker, clock: Callable[[], float] = time.monotonic) -> None:
        self.lag = lag
        self.clock = clock

    def collect(self) -> Iterable[Metric]:
        readings = self.lag.readings(self.clock())
        records = GaugeMetricFamily(LAG_RECORDS, "Records not yet committed", labels=["topic", "partition"])
        seconds = GaugeMetricFamily(
            LAG_SECONDS, "Age of the oldest record not yet committed", labels=["topic", "partition"]
        )
        for reading in readings:
            labels = [reading.tp.topic, str(reading.tp.partition)]
            records.add_metric(labels, reading.records)
            seconds.add_metric(labels, reading.seconds)
        yield records
        yield seconds
        yield GaugeMetricFamily(ASSIGNED_PARTITIONS, "Partitions assigned to this consumer", value=len(readings))


class ConsumerMetrics:
    """Everything the consumer exposes. The loop calls it once per batch; the endpoint reads the registry."""

    def __init__(self, probes: Probes, lag: LagTracker, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        r.register(ProbeCollector(probes))
        self.consumed = Counter(_family(EVENTS_CONSUMED), "Events polled from the raw topic and committed", registry=r)
        self.scored = Counter(_family(EVENTS_SCORED), "Events scored and published as predictions", registry=r)
        self.dead_lettered = Counter(
            _family(EVENTS_DEAD_LETTERED), "Events sent to the dead-letter topic, by stage", ["stage"], registry=r
        )
        self.dead_letter_lines_left_out_total = Counter(
            _family(DEAD_LETTER_LINES_LEFT_OUT),
            "Dead letters not logged one by one: over the log's rate limit (the dead-letter topic has them all)",
            registry=r,
        )
        self.transactions = Counter(
            _family(TRANSACTIONS),
            "Batches committed (a transaction, or at-least-once an offset commit) and aborted",
            ["result"],
            registry=r,
        )
        self.rebalances = Counter(_family(REBALANCES), "Partition assignments received", registry=r)
        self.model_load_failures = Counter(_family(MODEL_LOAD_FAILURES), "Models refused when loaded", registry=r)
        self.model_fallback = Gauge(
            MODEL_FALLBACK, "1 while the store's current version is refused and an earlier version serves", registry=r
        )
        self.latency = BatchHistogram(EVENT_LATENCY, "From event_ts to the output's commit", LATENCY_BUCKETS_S)
        r.register(self.latency)
        self.stage = Histogram(
            STAGE_DURATION, "Seconds per batch in each stage", ["stage"], buckets=STAGE_BUCKETS_S, registry=r
        )
        self.batch_size = Histogram(BATCH_SIZE, "Events per poll batch", buckets=BATCH_BUCKETS, registry=r)
        r.register(LagCollector(lag))
        self.model_info = Gauge(MODEL_INFO, "The model version scoring (value 1)", ["version"], registry=r)
        self.last_commit = Gauge(LAST_COMMIT, "Unix time of the last committed batch", registry=r)
        self.feature_psi = Gauge(
            FEATURE_PSI, "PSI of the recent events' feature against the training data", ["feature"], registry=r
        )
        self.window_mean = Gauge(
            WINDOW_MEAN_PROBABILITY, "Mean predicted churn probability of the recent events", registry=r
        )
        for result in ("committed", "aborted"):
            self.transactions.labels(result)  # both series exist from the start, at 0

    def model(self, version: str) -> None:
        self.model_info.clear()
        self.model_info.labels(version).set(1)

    def batch(self, consumed: int, scored: int, dead_by_stage: dict[str, int], stage_seconds: dict[str, float]) -> None:
        self.consumed.inc(consumed)
        self.scored.inc(scored)
        for stage, count in dead_by_stage.items():
            self.dead_lettered.labels(stage).inc(count)
        for stage, seconds in stage_seconds.items():
            self.stage.labels(stage).observe(seconds)
        self.batch_size.observe(consumed)
        self.transactions.labels("committed").inc()
        self.last_commit.set(time.time())

    def latencies(self, event_ms: np.ndarray, now_ms: float) -> None:
        self.latency.observe_many((now_ms - event_ms) / 1000.0)

    def drift(self, psi: Mapping[str, float], mean_probability: float | None) -> None:
        for feature, value in psi.items():
            self.feature_psi.labels(feature).set(value)
        if mean_probability is not None:
            self.window_mean.set(mean_probability)

    def drift_reset(self) -> None:
        self.feature_psi.clear()

    def dead_letter_lines_left_out(self, count: int) -> None:
        self.dead_letter_lines_left_out_total.inc(count)

    def model_refused(self) -> None:
        self.model_load_failures.inc()

    def model_fallback_active(self, active: bool) -> None:
        self.model_fallback.set(int(active))

    def aborted(self) -> None:
        self.transactions.labels("aborted").inc()

    def assignment(self) -> None:
        self.rebalances.inc()


class DeliveryCounts(Protocol):
    """What the producer's DeliveryTracker counts (read at scrape time, never pushed per event)."""

    sent: int
    acknowledged: int

    @property
    def failed(self) -> int: ...


class ProducerMetrics(Collector):
    """The producer's metrics, read from its delivery counters when Prometheus scrapes.

    Nothing runs per event: the send loop only keeps the counters it keeps anyway, and a scrape
    reads them (plain integers, written by the client's sender thread; a scrape may be one event old).
    """

    def __init__(self, registry: CollectorRegistry | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.registry = registry or CollectorRegistry()
        self.clock = clock
        self.counts: DeliveryCounts | None = None
        self.started: float | None = None
        self.checkpoint_rows: int | None = None
        self.registry.register(self)

    def watch(self, counts: DeliveryCounts) -> None:
        """The run's counters, from now on; the achieved rate is measured from this moment."""
        self.counts = counts
        self.started = self.clock()

    def checkpointed(self, next_row: int) -> None:
        self.checkpoint_rows = next_row

    def collect(self) -> Iterable[Metric]:
        events = CounterMetricFamily(
            _family(PRODUCER_EVENTS), "Events handed to the client, acknowledged and failed", labels=["state"]
        )
        counts = self.counts
        sent, acknowledged, failed = (0, 0, 0) if counts is None else (counts.sent, counts.acknowledged, counts.failed)
        for state, value in (("sent", sent), ("acknowledged", acknowledged), ("failed", failed)):
            events.add_metric([state], value)
        yield events
        elapsed = 0.0 if self.started is None else self.clock() - self.started
        yield GaugeMetricFamily(
            PRODUCER_RATE,
            "Acknowledged events per second since the run began",
            value=acknowledged / elapsed if elapsed > 0 else 0.0,
        )
        if self.checkpoint_rows is not None:
            yield GaugeMetricFamily(
                PRODUCER_CHECKPOINT, "Batch load: rows acknowledged and checkpointed", value=self.checkpoint_rows
            )

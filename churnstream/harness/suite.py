"""The documented benchmark (``--suite benchmark``), its quick twin, and the top-level figures of several runs.

A suite measures our consumer beside its baselines on one broker, in one run, interleaved: for
each repeat, each rate, the floor (the latency reader on the raw topic, no consumer), then the bare
loop and our consumer for each guarantee, then at the comparison's rate the bare loop, Quix Streams
and our consumer at-least-once; the order reversed every other repeat so a drift in the machine's
load falls on all alike. Then the throughput runs on a pre-filled backlog (the bare loop, our
consumer, the seed-style consumer), then the batch runs. ``goals`` judges the figures.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from churnstream.contract.outputs import Guarantee, Mode
from churnstream.harness.plan import RunPlan, Subject
from churnstream.harness.quix import QUIX_GUARANTEE
from churnstream.localkafka import DEFAULT_HOME, KAFKA_VERSION, load_layout
from churnstream.settings import Settings

# Run first and left out of the figures: a broker that has just started runs its code in the
# JVM's interpreter until the JIT compiles it, and creates its transaction and offsets topics on
# first use. Measured: p99 at 1,000 events/s was 462 ms on a just-started broker, 175 ms right after.
WARM_UP = RunPlan(mode=Mode.STREAMING, events_per_sec=1000, duration_s=20, label="warm-up (not judged)")
BOTH = (Guarantee.EXACTLY_ONCE, Guarantee.AT_LEAST_ONCE)


@dataclass(frozen=True)
class SuiteSpec:
    """What a suite runs, and the goals it is judged on (goals.py)."""

    name: str
    streaming: tuple[tuple[float, float], ...]  # (events/s, seconds) per rate
    guarantees: tuple[Guarantee, ...] = BOTH
    repeats: int = 3
    backlog_events: int = 30_000
    seed_max_events: int = 2_000
    seed_max_seconds: float = 10.0
    batch_limit: int | None = None  # None: the whole file (7,043 events)
    batch_repeats: int = 3
    warm_up: RunPlan | None = WARM_UP
    # Issue 20: at these rates (events/s, seconds), at-least-once, our consumer beside Quix Streams and
    # the bare loop, interleaved; the goal: our p99 below Quix Streams'.
    comparison: tuple[tuple[float, float], ...] = ()
    # The goals (issue 14). The calibration: the floor's p99 at this rate must be under this (None: no floor runs).
    calibration: tuple[float, float] | None = (1000, 10.0)
    exactly_once_ratio: float = 1.1  # our p99 <= this x the bare loop's, at every rate
    at_least_once_ratio: tuple[tuple[float, float], ...] = ((1000, 1.3),)  # (rate, x the bare loop's p99), issue 20
    at_least_once_p99_ms: tuple[tuple[float, float], ...] = ((5000, 100.0),)
    throughput_share: float = 0.85  # ours >= this share of the bare loop's events/s, per guarantee
    seed_speedup: float = 100.0  # ours (exactly-once) >= this x the seed-style consumer
    batch_goal_s: float = 3.0
    timeout_s: float = 60.0
    notes: tuple[str, ...] = field(default=())

    @property
    def rates(self) -> list[float]:
        return [rate for rate, _ in self.streaming]


BENCHMARK = SuiteSpec(name="benchmark", streaming=((1000, 30.0), (5000, 20.0)), comparison=((200, 30.0),))
# The same machinery in about two minutes, with figures too small to mean anything: the
# integration test runs it, and it checks a new broker or machine end to end before the real one.
QUICK = SuiteSpec(
    name="quick",
    streaming=((200, 2.0),),
    repeats=1,
    backlog_events=600,
    seed_max_events=50,
    seed_max_seconds=3.0,
    batch_limit=300,
    batch_repeats=1,
    warm_up=None,
    calibration=(200, 10.0),
    at_least_once_ratio=(),
    at_least_once_p99_ms=((200, 50.0),),
    timeout_s=30.0,
    notes=("a check of the machinery with tiny settings: its figures and verdict mean nothing",),
)
# Issue 20's comparison alone, by hand, in about six minutes: three interleaved repeats of our consumer, Quix
# Streams and the bare loop at 200 events/s for 30 s, at-least-once, after a short warm-up; no backlog, no batch.
QUIX = SuiteSpec(
    name="quix",
    streaming=(),
    guarantees=(QUIX_GUARANTEE,),
    comparison=((200, 30.0),),
    backlog_events=0,
    batch_repeats=0,
    warm_up=replace(WARM_UP, duration_s=10),
    calibration=None,
    at_least_once_ratio=(),
    at_least_once_p99_ms=(),
    notes=("issue 20's comparison alone (make benchmark runs it too, beside everything else)",),
)
SUITES = {spec.name: spec for spec in (BENCHMARK, QUICK, QUIX)}


def latency_plans(spec: SuiteSpec, rate: float, duration_s: float, repeat: int, base: RunPlan) -> list[RunPlan]:
    """One repeat at one rate: the floor, then the bare loop and our consumer per guarantee.

    Every other repeat runs them in the reverse order, so a slow drift of the machine's load does
    not always fall on the same kind of run.
    """
    common = {"mode": Mode.STREAMING, "events_per_sec": rate, "duration_s": duration_s, "timeout_s": spec.timeout_s}
    plans = [replace(base, **common, subject=Subject.FLOOR, inject_bad=0, consumer_args=(), label="floor")]
    for guarantee in spec.guarantees:
        plans.append(replace(base, **common, subject=Subject.BARE_LOOP, guarantee=guarantee, inject_bad=0,
                             consumer_args=(), label="bare loop"))  # fmt: skip
        plans.append(replace(base, **common, subject=Subject.CONSUMER, guarantee=guarantee, label="our consumer"))
    return plans if repeat % 2 == 0 else plans[::-1]


def comparison_plans(spec: SuiteSpec, rate: float, duration_s: float, repeat: int, base: RunPlan) -> list[RunPlan]:
    """One repeat of issue 20's comparison: the bare loop, Quix Streams and our consumer, at-least-once (the
    only guarantee Quix's subject runs); the order reversed every other repeat, as the latency runs'."""
    common = {"mode": Mode.STREAMING, "events_per_sec": rate, "duration_s": duration_s, "timeout_s": spec.timeout_s,
              "guarantee": QUIX_GUARANTEE}  # fmt: skip
    baselines = {"inject_bad": 0, "consumer_args": ()}
    plans = [
        replace(base, **common, **baselines, subject=Subject.BARE_LOOP, label="bare loop"),
        replace(base, **common, **baselines, subject=Subject.QUIX, label="Quix Streams"),
        replace(base, **common, subject=Subject.CONSUMER, label="our consumer"),
    ]
    return plans if repeat % 2 == 0 else plans[::-1]


def batch_plan(spec: SuiteSpec, base: RunPlan) -> RunPlan:
    return replace(
        base,
        mode=Mode.BATCH,
        limit=spec.batch_limit,
        subject=Subject.CONSUMER,
        guarantee=Guarantee.EXACTLY_ONCE,
        batch_goal_s=spec.batch_goal_s,
        timeout_s=spec.timeout_s,
        label="batch load",
    )


def summarise(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    """Top-level figures: the scenario's own for one run; sums (and worst latencies) for a suite."""
    if len(scenarios) == 1:
        only = scenarios[0]
        return {key: only[key] for key in ("scored", "dead_lettered", "lost", "duplicated", "latency_ms")}
    worst = {name: max((s["latency_ms"][name] or 0.0) for s in scenarios) for name in ("p50", "p95", "p99", "max")}
    return {
        "scored": sum(s["scored"] for s in scenarios),
        "dead_lettered": sum(s["dead_lettered"] for s in scenarios),
        "lost": sum(s["lost"] for s in scenarios),
        "duplicated": sum(s["duplicated"] for s in scenarios),
        "latency_ms": worst,
    }


def broker_note(settings: Settings) -> str:
    """Say so when the broker is this project's own launcher, which knows its exact version."""
    layout = load_layout(DEFAULT_HOME)
    if layout is not None and layout.bootstrap_servers == settings.bootstrap_servers:
        return f"the project's local launcher: Apache Kafka {KAFKA_VERSION}, KRaft"
    return ""

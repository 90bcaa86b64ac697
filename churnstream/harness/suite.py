"""The documented benchmark (``--suite benchmark``), and the top-level figures of a run of several scenarios."""

from __future__ import annotations

from typing import Any

from churnstream.contract.outputs import Mode
from churnstream.harness.plan import RunPlan
from churnstream.localkafka import DEFAULT_HOME, KAFKA_VERSION, load_layout
from churnstream.settings import Settings

# The goals of the harness issue, one scenario each.
BENCHMARK_SUITE = (
    RunPlan(mode=Mode.STREAMING, events_per_sec=1000, duration_s=60, p99_goal_ms=50, label="streaming 1,000 events/s"),
    RunPlan(mode=Mode.STREAMING, events_per_sec=5000, duration_s=30, p99_goal_ms=100, label="streaming 5,000 events/s"),
    RunPlan(mode=Mode.BATCH, batch_goal_s=3.0, label="batch, 7,043 events"),
)
# Run first and left out of the figures: a broker that has just started runs its code in the
# JVM's interpreter until the JIT compiles it, and creates its transaction and offsets topics on
# first use. Measured: p99 at 1,000 events/s was 462 ms on a just-started broker, 175 ms right after.
WARM_UP = RunPlan(mode=Mode.STREAMING, events_per_sec=1000, duration_s=20, label="warm-up (not judged)")


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

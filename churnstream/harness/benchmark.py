"""A suite run (``--suite benchmark`` or ``--suite quick``): every run in its order, then the goals judged.

The order is suite.py's: the latency runs interleaved (floor, bare loop and our consumer per
guarantee, per rate, then the bare loop, Quix Streams and our consumer at the comparison's rate, per
repeat), the throughput runs on a backlog (backlog.py), the batch runs; a suite may leave out any of them.
The results hold every run (without their raw latency samples, to keep the committed JSON small:
each run keeps its CCDF and its latency over time), the gathered figures, the goals and the verdict.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from churnstream.harness.backlog import run_backlog
from churnstream.harness.goals import check_goals, verdict
from churnstream.harness.plan import RunPlan
from churnstream.harness.results import load_average
from churnstream.harness.scenario import run_scenario
from churnstream.harness.suite import SuiteSpec, batch_plan, comparison_plans, latency_plans
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

HEAVY_KEYS = ("latencies_ms_sample",)


def _slim(run: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in run.items() if key not in HEAVY_KEYS}


def run_suite(settings: Settings, spec: SuiteSpec, base: RunPlan, runs_dir: Path, on_run: Any = None) -> dict[str, Any]:
    """Run the whole suite; ``base`` carries the flags that apply to every run (consumers, seed, ...).

    ``on_run(result)`` is called after each run (the CLI prints its block)."""
    started_load = load_average()
    warm_up = None
    if spec.warm_up is not None:
        logger.info("warm-up run: %s", spec.warm_up.describe())
        warm = replace(spec.warm_up, consumers=base.consumers, guarantee=base.guarantee, seed=base.seed,
                       consumer_args=base.consumer_args, connection_args=base.connection_args)  # fmt: skip
        warm_up = run_scenario(settings, warm, runs_dir)
    latency_runs: list[dict[str, Any]] = []
    for repeat in range(spec.repeats):
        plans = [plan for rate, seconds in spec.streaming for plan in latency_plans(spec, rate, seconds, repeat, base)]
        plans += [plan for rate, seconds in spec.comparison for plan in comparison_plans(spec, rate, seconds, repeat,
                                                                                         base)]  # fmt: skip
        for plan in plans:
            logger.info("repeat %d of %d: %s", repeat + 1, spec.repeats, plan.describe())
            result = run_scenario(settings, plan, runs_dir)
            latency_runs.append(result)
            if on_run is not None:
                on_run(result)
    backlog = None
    if spec.backlog_events:
        logger.info("throughput on a backlog of %d events", spec.backlog_events)
        backlog = run_backlog(settings, spec, runs_dir / f"backlog-{uuid.uuid4().hex[:10]}", base.consumer_args)
    batch_runs = []
    for _ in range(spec.batch_repeats):
        result = run_scenario(settings, batch_plan(spec, base), runs_dir)
        batch_runs.append(result)
        if on_run is not None:
            on_run(result)
    goals, gathered = check_goals(spec, latency_runs, backlog, batch_runs)
    passed, sentence = verdict(goals)
    return {
        "passed": passed,
        "verdict": sentence,
        "suite": spec.name,
        "suite_notes": list(spec.notes),
        "load_average_at_start": started_load,
        "goals": [goal.as_dict() for goal in goals],
        "latency_cells": gathered["latency_cells"],
        "correctness": gathered["correctness"],
        "backlog": backlog,
        "scenarios": [_slim(run) for run in (*latency_runs, *batch_runs)],
        "warm_up": None if warm_up is None else {"plan_text": warm_up["plan_text"], "passed": warm_up["passed"]},
    }

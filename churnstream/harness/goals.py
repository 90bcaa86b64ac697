"""A suite's figures, gathered over its repeats, and the goals of issues 14 and 20 judged on them. Pure.

:func:`gather` turns the runs into cells (rate, guarantee, subject) holding the median and the
range of p50/p95/p99 over the repeats; :func:`check_goals` judges each goal on medians and keeps
the baseline beside the measured value; :func:`verdict` says in one sentence what failed and by how much.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from churnstream.contract.outputs import Guarantee
from churnstream.harness import figures as fmt
from churnstream.harness.analysis import spread
from churnstream.harness.plan import Subject
from churnstream.harness.quix import QUIX_GUARANTEE
from churnstream.harness.suite import SuiteSpec

RANKS = ("p50", "p95", "p99")
# The run criteria that belong to the correctness goal (the rest: the run happened cleanly).
CORRECTNESS = (
    "lost = 0",
    "duplicated = 0",
    "dead letters = injected malformed events",
    "dead letters keep the original key and value bytes",
    "every valid event scored",
    "published probabilities equal offline predict_proba",
    "outputs well-formed",
)


def cell_key(rate: float, guarantee: str | None, subject: str) -> str:
    """ "rate/guarantee/subject, e.g. 1000/exactly-once/consumer; the floor has no guarantee (1000/-/floor)."""
    return f"{rate:g}/{guarantee or '-'}/{subject}"


def gather_latency(runs: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Streaming runs -> one cell per (rate, guarantee, subject): each rank's median and range."""
    grouped: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        plan = run["plan"]
        guarantee = None if run["subject"] == Subject.FLOOR else plan["guarantee"]
        grouped.setdefault(cell_key(plan["events_per_sec"], guarantee, run["subject"]), []).append(run)
    cells = {}
    for key, members in grouped.items():
        plan = members[0]["plan"]
        cells[key] = {
            "rate": plan["events_per_sec"],
            "guarantee": None if members[0]["subject"] == Subject.FLOOR else plan["guarantee"],
            "subject": members[0]["subject"],
            "runs": [m["run_id"] for m in members],
            "clean_runs": sum(1 for m in members if run_clean(m)),
            **{rank: spread([m["latency_ms"][rank] for m in members]) for rank in (*RANKS, "max")},
        }
    return cells


def run_clean(run: dict[str, Any]) -> bool:
    """Every criterion of a run passed, goals aside: its figures can be trusted."""
    return all(c["passed"] for c in run["criteria"] if not c["name"].startswith(("p99 ", "all outcomes readable")))


def gather_correctness(consumer_runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Our consumer's correctness over every run of it in the suite."""
    failed = sorted(
        {c["name"] for run in consumer_runs for c in run["criteria"] if c["name"] in CORRECTNESS and not c["passed"]}
    )
    return {
        "runs": len(consumer_runs),
        "raw_records": sum(r["raw_records"] for r in consumer_runs),
        "lost": sum(r["lost"] for r in consumer_runs),
        "duplicated": sum(r["duplicated"] + r["duplicate_event_ids"] for r in consumer_runs),
        "dead_lettered": sum(r["dead_lettered"] for r in consumer_runs),
        "injected": sum(r["injected_bad"] for r in consumer_runs),
        "checked": sum(r["sample_check"]["checked"] for r in consumer_runs),
        "mismatches": sum(r["sample_check"]["mismatches"] for r in consumer_runs),
        "failed_criteria": failed,
    }


@dataclass(frozen=True)
class Goal:
    """One goal: what it asks, what was measured, the baseline beside it, and by how much it missed."""

    name: str
    target: str
    measured: str
    baseline: str
    passed: bool
    shortfall: str = ""  # in words, when it failed

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _median(cell: dict[str, Any] | None, rank: str = "p99") -> float | None:
    return None if cell is None else cell[rank]["median"]


def _ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def calibration_goal(spec: SuiteSpec, cells: dict[str, Any]) -> Goal:
    assert spec.calibration is not None  # check_goals asks only a suite with floor runs
    rate, limit_ms = spec.calibration
    floor = _median(cells.get(cell_key(rate, None, Subject.FLOOR)))
    passed = floor is not None and floor <= limit_ms
    return Goal(
        f"instrument calibration: the floor's p99 at {fmt.rate(rate)}",
        f"<= {fmt.ms(limit_ms)}",
        fmt.spread_ms(cells[cell_key(rate, None, Subject.FLOOR)]["p99"]) if floor is not None else fmt.MISSING,
        "no consumer: the reader on the raw topic",
        passed,
        "" if passed else _over(floor, limit_ms, fmt.ms),
    )


def _over(value: float | None, limit: float, show: Any) -> str:
    if value is None:
        return "not measured"
    return f"{show(value)}, over the goal by {show(value - limit)} ({(value / limit - 1) * 100:.0f}%)"


def bare_ratio_goal(cells: dict[str, Any], rate: float, guarantee: Guarantee, limit: float) -> Goal:
    """Our p99 within ``limit`` x the bare loop's, for one guarantee at one rate (medians over the repeats)."""
    ours = cells.get(cell_key(rate, guarantee, Subject.CONSUMER))
    bare = cells.get(cell_key(rate, guarantee, Subject.BARE_LOOP))
    ratio = _ratio(_median(ours), _median(bare))
    passed = ratio is not None and ratio <= limit
    measured = fmt.MISSING if ours is None else f"{fmt.spread_ms(ours['p99'])} = {fmt.ratio(ratio)}"
    shortfall = ""
    if not passed:
        shortfall = (
            "not measured"
            if ratio is None
            else f"{fmt.ratio(ratio)} the bare loop's p99, over the goal by {(ratio / limit - 1) * 100:.0f}%"
        )
    return Goal(
        f"{guarantee} p99 at {fmt.rate(rate)}",
        f"<= {limit:g}x the bare loop's p99",
        measured,
        "bare loop " + (fmt.spread_ms(bare["p99"]) if bare else fmt.MISSING),
        passed,
        shortfall,
    )


def quix_goal(cells: dict[str, Any], rate: float) -> Goal:
    """Issue 20: our at-least-once p99 below Quix Streams' at the same rate, in the same run (medians)."""
    ours = cells.get(cell_key(rate, QUIX_GUARANTEE, Subject.CONSUMER))
    quix = cells.get(cell_key(rate, QUIX_GUARANTEE, Subject.QUIX))
    bare = cells.get(cell_key(rate, QUIX_GUARANTEE, Subject.BARE_LOOP))
    ratio = _ratio(_median(ours), _median(quix))
    passed = ratio is not None and ratio < 1.0
    shortfall = ""
    if not passed:
        shortfall = (
            "not measured"
            if ratio is None
            else f"{fmt.ratio(ratio)} Quix Streams' p99, {(ratio - 1) * 100:.0f}% over it"
        )
    baseline = "Quix Streams " + (fmt.spread_ms(quix["p99"]) if quix else fmt.MISSING)
    return Goal(
        f"{QUIX_GUARANTEE} p99 at {fmt.rate(rate)} against Quix Streams",
        "< Quix Streams' p99",
        fmt.MISSING if ours is None else f"{fmt.spread_ms(ours['p99'])} = {fmt.ratio(ratio)}",
        baseline + "; bare loop " + (fmt.spread_ms(bare["p99"]) if bare else fmt.MISSING),
        passed,
        shortfall,
    )


def at_least_once_goal(cells: dict[str, Any], rate: float, limit_ms: float) -> Goal:
    ours = cells.get(cell_key(rate, Guarantee.AT_LEAST_ONCE, Subject.CONSUMER))
    bare = cells.get(cell_key(rate, Guarantee.AT_LEAST_ONCE, Subject.BARE_LOOP))
    p99 = _median(ours)
    passed = p99 is not None and p99 <= limit_ms
    return Goal(
        f"at-least-once p99 at {fmt.rate(rate)}",
        f"<= {fmt.ms(limit_ms)}",
        fmt.spread_ms(ours["p99"]) if ours else fmt.MISSING,
        "bare loop " + (fmt.spread_ms(bare["p99"]) if bare else fmt.MISSING),
        passed,
        "" if passed else _over(p99, limit_ms, fmt.ms),
    )


def throughput_goal(spec: SuiteSpec, backlog: dict[str, Any], guarantee: str) -> Goal:
    figures = backlog.get("throughput", {}).get(guarantee, {})
    ours, bare = figures.get(Subject.CONSUMER, spread([])), figures.get(Subject.BARE_LOOP, spread([]))
    share = _ratio(ours["median"], bare["median"])
    passed = share is not None and share >= spec.throughput_share
    shortfall = ""
    if not passed:
        shortfall = (
            "not measured"
            if share is None
            else f"{fmt.percent(share)} of the bare loop, short of the goal by "
            f"{(spec.throughput_share - share) * 100:.0f} points"
        )
    return Goal(
        f"{guarantee} throughput on a {fmt.count(backlog.get('events'))}-event backlog",
        f">= {fmt.percent(spec.throughput_share)} of the bare loop",
        _rate_spread(ours) + ("" if share is None else f" = {fmt.percent(share)}"),
        "bare loop " + _rate_spread(bare),
        passed,
        shortfall,
    )


def _rate_spread(summary: dict[str, Any]) -> str:
    if summary["median"] is None:
        return fmt.MISSING
    return f"{fmt.rate(summary['median'])} ({fmt.rate(summary['min'], '')}-{fmt.rate(summary['max'], '')})"


def seed_goal(spec: SuiteSpec, backlog: dict[str, Any]) -> Goal:
    ours = backlog.get("throughput", {}).get(Guarantee.EXACTLY_ONCE, {}).get(Subject.CONSUMER, spread([]))
    seed = backlog.get("seed", spread([]))
    speedup = _ratio(ours["median"], seed["median"])
    passed = speedup is not None and speedup >= spec.seed_speedup
    shortfall = "" if passed else ("not measured" if speedup is None else f"{fmt.ratio(speedup)}, short of the goal")
    return Goal(
        "speed-up over the seed-style consumer (exactly-once)",
        f">= {spec.seed_speedup:g}x",
        fmt.MISSING if speedup is None else f"{fmt.ratio(speedup)}: ours {_rate_spread(ours)}",
        "seed-style " + _rate_spread(seed),
        passed,
        shortfall,
    )


def batch_goal(spec: SuiteSpec, batch_runs: Sequence[dict[str, Any]]) -> Goal:
    readable = spread([r["all_readable_after_producer_start_s"] for r in batch_runs])
    events = batch_runs[0]["raw_records"] if batch_runs else None
    value = readable["median"]
    passed = value is not None and value <= spec.batch_goal_s
    measured = fmt.MISSING
    if value is not None:
        low, high = (fmt.seconds(readable[k]).removesuffix(" s") for k in ("min", "max"))
        measured = f"{fmt.seconds(value)} ({low}-{high})"
    return Goal(
        f"batch: all {fmt.count(events)} outcomes readable after the producer starts",
        f"<= {fmt.seconds(spec.batch_goal_s)}",
        measured,
        "",
        passed,
        "" if passed else _over(value, spec.batch_goal_s, fmt.seconds),
    )


def correctness_goal(correctness: dict[str, Any]) -> Goal:
    failed = correctness["failed_criteria"]
    passed = correctness["runs"] > 0 and not failed
    measured = (
        f"lost {correctness['lost']}, duplicated {correctness['duplicated']} of "
        f"{fmt.count(correctness['raw_records'])} raw records in {correctness['runs']} runs; "
        f"dead letters {correctness['dead_lettered']} = injected {correctness['injected']}; "
        f"{fmt.count(correctness['checked'])} probabilities recomputed, {correctness['mismatches']} mismatches"
    )
    return Goal(
        "correctness of our consumer, every run",
        "lost 0, duplicated 0, dead letters = injected, probabilities equal offline",
        measured,
        "",
        passed,
        "" if passed else ("no run of our consumer" if not correctness["runs"] else "failed: " + ", ".join(failed)),
    )


def clean_runs_goal(runs: Sequence[dict[str, Any]], backlog: dict[str, Any] | None) -> Goal:
    """The baselines' figures count only if their runs were whole: no loss, no crash, no harness error."""
    backlog = backlog or {}
    unclean = [f"{r['label'] or r['subject']} run {r['run_id']}" for r in runs if not run_clean(r)]
    unclean += [failure.split(":")[0] for failure in backlog.get("failures", [])]  # the details are in the report
    return Goal(
        "every run complete (baselines and floor included)",
        "no harness error, no crash, nothing lost or duplicated",
        f"{len(runs) - len([r for r in runs if not run_clean(r)])} of {len(runs)} runs clean"
        + (f"; backlog: {len(backlog.get('failures', []))} failures" if backlog.get("failures") else ""),
        "",
        not unclean,
        "" if not unclean else "not clean: " + "; ".join(unclean[:5]),
    )


def check_goals(
    spec: SuiteSpec,
    latency_runs: Sequence[dict[str, Any]],
    backlog: dict[str, Any] | None,
    batch_runs: Sequence[dict[str, Any]],
) -> tuple[list[Goal], dict[str, Any]]:
    """Every goal of the suite, and the gathered figures they were judged on (``backlog`` None: no backlog runs)."""
    cells = gather_latency(latency_runs)
    consumer_runs = [r for r in (*latency_runs, *batch_runs) if r["subject"] == Subject.CONSUMER]
    correctness = gather_correctness(consumer_runs)
    goals = [] if spec.calibration is None else [calibration_goal(spec, cells)]
    if Guarantee.EXACTLY_ONCE in spec.guarantees:
        goals += [bare_ratio_goal(cells, rate, Guarantee.EXACTLY_ONCE, spec.exactly_once_ratio) for rate in spec.rates]
    if Guarantee.AT_LEAST_ONCE in spec.guarantees:
        goals += [
            bare_ratio_goal(cells, rate, Guarantee.AT_LEAST_ONCE, limit) for rate, limit in spec.at_least_once_ratio
        ]
        goals += [at_least_once_goal(cells, rate, limit) for rate, limit in spec.at_least_once_p99_ms]
    goals += [quix_goal(cells, rate) for rate, _ in spec.comparison]
    if backlog is not None:
        goals += [throughput_goal(spec, backlog, str(g)) for g in spec.guarantees]
        goals.append(seed_goal(spec, backlog))
    if spec.batch_repeats:
        goals.append(batch_goal(spec, batch_runs))
    goals.append(correctness_goal(correctness))
    goals.append(clean_runs_goal([*latency_runs, *batch_runs], backlog))
    return goals, {"latency_cells": cells, "correctness": correctness}


def verdict(goals: Sequence[Goal]) -> tuple[bool, str]:
    """PASSED or FAILED, and why, in one sentence: which goals missed and by how much."""
    missed = [goal for goal in goals if not goal.passed]
    if not missed:
        return True, f"PASSED: all {len(goals)} goals met."
    reasons = "; ".join(f"{goal.name}: {goal.shortfall or 'failed'}" for goal in missed)
    return False, f"FAILED: {len(missed)} of {len(goals)} goals missed. {reasons}."

"""The suite's sections of TEST_RESULTS.md: the goals with their baselines, latency, throughput, every run."""

from __future__ import annotations

from typing import Any

from churnstream.contract.outputs import Guarantee, Mode
from churnstream.harness import figures as fmt
from churnstream.harness.goals import cell_key
from churnstream.harness.plan import SUBJECT_TEXT, Subject

RANK_NAMES = ("p50", "p95", "p99", "max")


def _goal_rows(goals: list[dict[str, Any]]) -> list[str]:
    rows = ["| Goal | Target | Measured | Baseline | Result |", "| --- | --- | --- | --- | --- |"]
    for goal in goals:
        result = "pass" if goal["passed"] else f"**FAIL**: {goal['shortfall']}"
        rows.append(
            f"| {goal['name']} | {goal['target']} | {goal['measured']} | {goal['baseline'] or '-'} | {result} |"
        )
    return rows


def _cell_label(cell: dict[str, Any]) -> str:
    return SUBJECT_TEXT.get(Subject(cell["subject"]), cell["subject"])


def _by_rate(pairs: Any) -> dict[float, float]:
    """A spec's ((rate, figure), ...), as read back from JSON too (lists), keyed by the rate."""
    return {float(rate): figure for rate, figure in pairs or ()}


def p99_goal(cell: dict[str, Any], cells: dict[str, dict[str, Any]], spec: dict[str, Any]) -> tuple[str, float] | None:
    """The p99 a cell is held to: how it is set ("<=" a limit, "<= 1.3x bare", "< Quix Streams") and the figure
    in ms; None for a cell without one. goals.py judges them; the report's table and the plot's red line show them."""
    subject, rate = Subject(cell["subject"]), float(cell["rate"])
    if subject == Subject.FLOOR:
        calibration = spec.get("calibration")
        return ("<=", calibration[1]) if calibration and float(calibration[0]) == rate else None
    if subject != Subject.CONSUMER:
        return None
    guarantee = cell["guarantee"]
    others = {s: cells.get(cell_key(cell["rate"], guarantee, s)) for s in (Subject.BARE_LOOP, Subject.QUIX)}
    medians = {s: None if found is None else found["p99"]["median"] for s, found in others.items()}
    if guarantee == Guarantee.AT_LEAST_ONCE:
        if rate in _by_rate(spec.get("comparison")):
            quix = medians[Subject.QUIX]
            return None if quix is None else ("< Quix Streams", quix)
        if rate in _by_rate(spec.get("at_least_once_p99_ms")):
            return ("<=", _by_rate(spec.get("at_least_once_p99_ms"))[rate])
        ratio = _by_rate(spec.get("at_least_once_ratio")).get(rate)
    else:
        ratio = spec.get("exactly_once_ratio")
    bare = medians[Subject.BARE_LOOP]
    return None if ratio is None or bare is None else (f"<= {ratio:g}x bare", ratio * bare)


def _cell_goal(cell: dict[str, Any], cells: dict[str, dict[str, Any]], spec: dict[str, Any]) -> str:
    goal = p99_goal(cell, cells, spec)
    if goal is None:
        return "-"
    how, limit_ms = goal
    return f"<= {fmt.ms(limit_ms)}" if how == "<=" else f"{how} = {fmt.ms(limit_ms)}"


def _latency_rows(cells: dict[str, dict[str, Any]], spec: dict[str, Any]) -> list[str]:
    rows = [
        "| Rate | Guarantee | Between the raw topic and the reader | p50 ms | p95 ms | p99 ms | max ms | p99 goal "
        "| Clean runs |",
        "| --: | --- | --- | --: | --: | --: | --: | --- | --: |",
    ]
    order = {Subject.FLOOR: 0, Subject.BARE_LOOP: 1, Subject.QUIX: 2, Subject.CONSUMER: 3}
    for cell in sorted(cells.values(), key=lambda c: (c["rate"], c["guarantee"] or "", order[Subject(c["subject"])])):
        ranks = " | ".join(
            f"{fmt.ms_bare(cell[r]['median'])} ({fmt.ms_bare(cell[r]['min'])}-{fmt.ms_bare(cell[r]['max'])})"
            for r in RANK_NAMES
        )
        rows.append(
            f"| {fmt.rate(cell['rate'])} | {cell['guarantee'] or '-'} | {_cell_label(cell)} | {ranks} | "
            f"{_cell_goal(cell, cells, spec)} | {cell['clean_runs']} of {len(cell['runs'])} |"
        )
    return rows


def _rates(values: list[float | None]) -> str:
    return ", ".join(fmt.rate(v, "") for v in values)


def _throughput_rows(backlog: dict[str, Any]) -> list[str]:
    rows = [
        "| Guarantee | Bare loop, events/s | Our consumer, events/s | Ours / bare (medians) |",
        "| --- | --: | --: | --: |",
    ]
    for guarantee, by_subject in backlog.get("throughput", {}).items():
        bare, ours = by_subject[Subject.BARE_LOOP], by_subject[Subject.CONSUMER]
        share = ours["median"] / bare["median"] if ours["median"] and bare["median"] else None
        runs = backlog["runs"][guarantee]
        rows.append(
            f"| {guarantee} | {fmt.rate(bare['median'], '')} (runs {_rates(runs[Subject.BARE_LOOP])}) | "
            f"{fmt.rate(ours['median'], '')} (runs {_rates(runs[Subject.CONSUMER])}) | {fmt.percent(share)} |"
        )
    seed = backlog.get("seed", {})
    rows.append(
        f"| seed-style consumer (one event at a time) | | {fmt.rate(seed.get('median'), '')} "
        f"(runs {_rates(backlog.get('runs', {}).get('seed-style', []))}) | |"
    )
    return rows


def _run_rows(scenarios: list[dict[str, Any]]) -> list[str]:
    rows = ["| Run | What | p50 ms | p95 ms | p99 ms | max ms | Lost | Dup. | Load at start | Result |",
            "| --- | --- | --: | --: | --: | --: | --: | --: | --: | --- |"]  # fmt: skip
    for run in scenarios:
        latency = run["latency_ms"]
        load = run.get("load_average_at_start")
        rows.append(
            f"| {run['run_id']} | {run['plan_text']} | "
            + " | ".join(fmt.ms_bare(latency[r]) for r in RANK_NAMES)
            + f" | {run['lost']} | {run['duplicated']} | {'-' if load is None else f'{load:.2f}'} | "
            f"{'pass' if run['passed'] else 'FAIL'} |"
        )
    return rows


def suite_sections(results: dict[str, Any], plot_name: str | None) -> list[str]:
    """Goals first (what the verdict is made of), then the figures behind them, then every run."""
    backlog = results["backlog"]
    batch = [run for run in results["scenarios"] if run["mode"] == Mode.BATCH]
    batch_alt = ", batch produced and readable" if batch else ""
    lines: list[str] = []
    for note in results.get("suite_notes", []):
        lines += [f"> Suite `{results['suite']}`: {note}.", ""]
    lines += ["## Goals", "", *_goal_rows(results["goals"]), ""]
    lines += [
        "Latencies and rates are the median over the repeats, the range in brackets. A ratio is of medians.",
        "",
        "## Latency, end to end (ms)",
        "",
        "Every cell ran in the same run, interleaved; the floor is the latency reader on the raw topic with no "
        "consumer (the broker and client floor, which calibrates the instrument).",
        "",
        *_latency_rows(results["latency_cells"], results.get("suite_spec", {})),
        "",
    ]
    if backlog is not None:  # a suite without backlog runs (--suite quix) has no throughput to show
        lines += [
            f"## Throughput on a {fmt.count(backlog.get('events'))}-event backlog",
            "",
            *_throughput_rows(backlog),
            "",
        ]
        if backlog.get("failures"):
            lines += ["Backlog runs that failed:", "", *[f"- {failure}" for failure in backlog["failures"]], ""]
    if plot_name:
        lines += [
            "## Plots",
            "",
            f"![latency CCDFs with goals and baselines, latency over time{batch_alt}]({plot_name})",
            "",
            "Top: the share of events slower than x (CCDF, log axes), one line per repeat; the dotted line is "
            "p99 (1 in 100), the red one the goal. Middle: per quarter second, the median and the largest latency "
            "of one run of each (a pause makes every event late at once; commits make a saw-tooth)."
            + (" Bottom: the batch runs, events produced against outcomes readable." if batch else ""),
            "",
        ]
    lines += ["## Every run", "", *_run_rows(results["scenarios"]), ""]
    if results.get("warm_up"):
        lines += [f"Before them, a warm-up run ({results['warm_up']['plan_text']}), not judged or counted.", ""]
    return lines

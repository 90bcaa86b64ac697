"""The report's plot (matplotlib, the ``report`` extra): latency as CCDFs on log axes with the goals and
the baselines, latency over time, and produced against readable for the batch runs.

Latency is drawn as a CCDF, the share of events slower than x, on log-log axes: the tail, where
the goals are, gets as much room as the median, and curves of different runs compare at a glance.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from churnstream.contract.outputs import Mode
from churnstream.harness.goals import cell_key
from churnstream.harness.plan import SUBJECT_TEXT, Subject
from churnstream.harness.report_suite import p99_goal
from churnstream.plotting import pyplot

COLOURS = {Subject.FLOOR: "tab:gray", Subject.BARE_LOOP: "tab:blue", Subject.QUIX: "tab:green",
           Subject.CONSUMER: "tab:orange"}  # fmt: skip


def _ccdf(axis: Any, points: list[list[float]], **style: Any) -> None:
    if points:
        axis.step([p[0] for p in points], [p[1] for p in points], where="post", **style)


def _plain_ticks(axis: Any, which: str) -> None:
    """Log axes labelled 2, 5, 10, 20 ms rather than 2x10^0."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415 - the report extra

    target = axis.xaxis if which == "x" else axis.yaxis
    target.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
    target.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    target.set_minor_formatter(NullFormatter())


def _ccdf_axes(axis: Any, title: str) -> None:
    axis.set_xscale("log")
    axis.set_yscale("log")
    _plain_ticks(axis, "x")
    axis.axhline(0.01, color="black", linestyle=":", linewidth=0.8)
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("latency x, ms (log)", fontsize=8)
    axis.set_ylabel("share of events slower than x", fontsize=8)
    axis.tick_params(labelsize=7)


def _goal_line(results: dict[str, Any], spec: dict[str, Any], rate: float, guarantee: str) -> float | None:
    """Our p99's goal in this panel, in ms (a limit, a multiple of the bare loop's, or Quix Streams')."""
    cells = results["latency_cells"]
    ours = cells.get(cell_key(rate, guarantee, Subject.CONSUMER))
    goal = None if ours is None else p99_goal(ours, cells, spec)
    return None if goal is None else goal[1]


def _panel_ccdf(axis: Any, runs: list[dict[str, Any]], goal_ms: float | None, floor_goal: float | None) -> None:
    labelled: set[str] = set()
    for run in runs:
        subject = Subject(run["subject"])
        label = None if subject in labelled else SUBJECT_TEXT[subject]
        labelled.add(subject)
        _ccdf(axis, run["latency_ccdf"], color=COLOURS[subject], linewidth=1.0, alpha=0.85, label=label)
    if goal_ms is not None:
        axis.axvline(goal_ms, color="tab:red", linewidth=1.2, label=f"goal {goal_ms:.1f} ms")
    if floor_goal is not None:
        axis.axvline(floor_goal, color="tab:gray", linestyle="--", linewidth=1.0, label=f"floor goal {floor_goal:g} ms")
    axis.legend(fontsize=7)


def _panel_over_time(axis: Any, runs: list[dict[str, Any]], title: str) -> None:
    for subject in (Subject.BARE_LOOP, Subject.QUIX, Subject.CONSUMER):
        ranked = sorted((r for r in runs if r["subject"] == subject), key=lambda r: r["latency_ms"]["p99"] or 0.0)
        for run in ranked[len(ranked) // 2 :][:1]:  # the run with the median p99: a typical one
            over = run["latency_over_time"]
            axis.plot(over["bin_s"], over["max_ms"], color=COLOURS[subject], linewidth=0.8,
                      label=f"{SUBJECT_TEXT[subject]}: max")  # fmt: skip
            axis.plot(over["bin_s"], over["p50_ms"], color=COLOURS[subject], linewidth=0.8, linestyle=":",
                      label=f"{SUBJECT_TEXT[subject]}: median")  # fmt: skip
    axis.set_yscale("log")
    _plain_ticks(axis, "y")
    axis.set_title(title, fontsize=9)
    axis.set_xlabel("seconds since the producer started", fontsize=8)
    axis.set_ylabel("latency per 0.25 s, ms (log)", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=6)


def _panel_batch(axis: Any, runs: list[dict[str, Any]], goal_s: float | None) -> None:
    for index, run in enumerate(runs):
        timeline = run["timeline"]
        bin_s = timeline["bin_s"]
        for key, colour, name in (("produced_per_s", "tab:blue", "produced"), ("readable_per_s", "tab:orange",
                                                                               "readable")):  # fmt: skip
            totals = list(itertools.accumulate(rate * bin_s for rate in timeline[key]))
            axis.step([(i + 1) * bin_s for i in range(len(totals))], totals, where="post", color=colour,
                      linewidth=1.0, alpha=0.85, label=name if index == 0 else None)  # fmt: skip
    if goal_s is not None:
        axis.axvline(goal_s, color="tab:red", linewidth=1.2, label=f"goal {goal_s:g} s")
    axis.set_title("batch: cumulative events produced and outcomes readable", fontsize=9)
    axis.set_xlabel("seconds since the producer started", fontsize=8)
    axis.set_ylabel("events", fontsize=8)
    axis.tick_params(labelsize=7)
    axis.legend(fontsize=7)


def _panel_throughput(axis: Any, backlog: dict[str, Any]) -> None:
    """Events/s on the backlog: each run as a dot, the median as a bar."""
    labels, medians, runs = [], [], []
    for guarantee, by_subject in backlog.get("throughput", {}).items():
        for subject in (Subject.BARE_LOOP, Subject.CONSUMER):
            labels.append(f"{SUBJECT_TEXT[subject].removeprefix('the ')}\n{guarantee}")
            medians.append(by_subject[subject]["median"] or 0.0)
            runs.append([v for v in backlog["runs"][guarantee][subject] if v is not None])
    labels.append("seed-style\n(one at a time)")
    medians.append(backlog.get("seed", {}).get("median") or 0.0)
    runs.append([v for v in backlog.get("runs", {}).get("seed-style", []) if v is not None])
    colours = [COLOURS[Subject.BARE_LOOP], COLOURS[Subject.CONSUMER]] * ((len(labels) - 1) // 2) + ["tab:gray"]
    positions = list(range(len(labels)))
    axis.bar(positions, medians, color=colours, alpha=0.6)
    for position, values in zip(positions, runs, strict=True):
        axis.plot([position] * len(values), values, "k.", markersize=4)
    axis.set_xticks(positions, labels, fontsize=6)
    axis.set_yscale("log")
    axis.set_title(f"throughput on a {backlog.get('events', 0):,}-event backlog (dots: runs)", fontsize=9)
    axis.set_ylabel("events per second (log)", fontsize=8)
    axis.tick_params(labelsize=7)


def plot_suite(results: dict[str, Any], spec: dict[str, Any], path: Path) -> Path:
    """One figure: a row of CCDFs (one per rate and guarantee run), a row of latency over time, and a row for the
    batch runs and the backlog's throughput when the suite ran them."""
    plt = pyplot()
    streaming = [r for r in results["scenarios"] if r["mode"] == Mode.STREAMING]
    panels = sorted({(r["plan"]["events_per_sec"], r["plan"]["guarantee"]) for r in streaming
                     if r["subject"] != Subject.FLOOR})  # fmt: skip
    batch = [r for r in results["scenarios"] if r["mode"] == Mode.BATCH]
    backlog = results.get("backlog")
    bottom = bool(batch) or backlog is not None
    columns = max(len(panels), 2 if batch and backlog is not None else 1)
    rows = 3 if bottom else 2
    figure, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 3.7 * rows), squeeze=False)
    calibration_rate, calibration_ms = spec.get("calibration") or (None, None)
    for column, (rate, guarantee) in enumerate(panels):
        runs = [r for r in streaming if r["plan"]["events_per_sec"] == rate and
                (r["subject"] == Subject.FLOOR or r["plan"]["guarantee"] == guarantee)]  # fmt: skip
        _ccdf_axes(axes[0][column], f"{rate:,.0f} events/s, {guarantee}")
        _panel_ccdf(axes[0][column], runs, _goal_line(results, spec, rate, guarantee),
                    calibration_ms if rate == calibration_rate else None)  # fmt: skip
        _panel_over_time(axes[1][column], runs, f"{rate:,.0f} events/s, {guarantee}: latency over time")
    for row in range(2):
        for column in range(len(panels), columns):
            axes[row][column].axis("off")
    if bottom:
        used = 0
        if batch:
            _panel_batch(axes[2][0], batch, spec.get("batch_goal_s"))
            used = 1
        if backlog is not None:
            _panel_throughput(axes[2][used], backlog)
            used += 1
        for column in range(used, columns):
            axes[2][column].axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
    return path


def plot_runs(results: dict[str, Any], path: Path) -> Path:
    """Single runs: throughput over time and the latency CCDF (with the goal, if one was given), one row each."""
    plt = pyplot()
    scenarios = results["scenarios"]
    figure, axes = plt.subplots(len(scenarios), 2, figsize=(12, 3.6 * len(scenarios)), squeeze=False)
    for row, result in enumerate(scenarios):
        left, right = axes[row]
        timeline = result["timeline"]
        bin_s = timeline.get("bin_s", 1.0)
        for key, label in (("produced_per_s", "produced (raw topic)"), ("readable_per_s", "outcomes readable")):
            rates = timeline[key]
            if rates:
                left.stairs(rates, [i * bin_s for i in range(len(rates) + 1)], label=label, linewidth=1.5)
        left.set_title(f"{result['label'] or result['mode']}: throughput", fontsize=10)
        left.set_xlabel("seconds since the producer started")
        left.set_ylabel("events per second")
        left.legend(fontsize=8)
        _ccdf_axes(right, f"{result['label'] or result['mode']}: end-to-end latency (CCDF)")
        _ccdf(right, result.get("latency_ccdf", []), color="tab:green", linewidth=1.5, label="this run")
        goal = result["plan"].get("p99_goal_ms")
        if goal is not None:
            right.axvline(goal, color="tab:red", linewidth=1.2, label=f"p99 goal {goal:g} ms")
        right.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)
    return path

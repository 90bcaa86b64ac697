"""Everything a command shows on a terminal: summaries, window lines, check lines, a progress bar.

The library returns typed summaries and never prints; these functions turn them into text.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tqdm import tqdm

from churnstream.consumer.stats import ConsumerSummary, WindowSummary
from churnstream.producer.summary import RunSummary
from churnstream.replay import ReplaySummary

if TYPE_CHECKING:
    from churnstream.harness.verify import Check


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def format_window(window: WindowSummary) -> str:
    """The per-window line batch mode prints on stdout."""
    per_sec = "n/a" if window.events_per_sec is None else f"{window.events_per_sec:.1f}"
    return (
        f"window {window.window}: events={window.events} scored={window.scored} "
        f"dead_lettered={window.dead_lettered} "
        f"mean_churn_probability={_ratio(window.mean_churn_probability)} "
        f"churn_rate={_ratio(window.churn_rate)} "
        f"events_per_sec={per_sec}"
    )


def format_consumer_summary(summary: ConsumerSummary) -> str:
    """The consumer's final summary line on stdout (drift, versions and shadow only when there is news)."""
    line = (
        f"summary: mode={summary.mode} guarantee={summary.guarantee} consumed={summary.consumed} "
        f"scored={summary.scored} dead_lettered={summary.dead_lettered} batches={summary.batches} "
        f"transactions_aborted={summary.transactions_aborted} "
        f"mean_churn_probability={_ratio(summary.mean_churn_probability)} "
        f"churn_rate={_ratio(summary.churn_rate)} "
        f"events_per_sec={summary.events_per_sec:.1f} elapsed_s={summary.elapsed_s:.2f}"
    )
    if len(summary.scored_by_version) > 1:
        line += " scored_by_version=" + ",".join(f"{v}:{n}" for v, n in summary.scored_by_version.items())
    if summary.models_refused:
        line += " models_refused=" + ",".join(summary.models_refused)
    if summary.shadow_model_version is not None:
        line += (
            f" shadow={summary.shadow_model_version} shadow_scored={summary.shadow_scored} "
            f"shadow_dead_lettered={summary.shadow_dead_lettered}"
        )
    if summary.feature_psi:
        from churnstream.ml.drift import PSI_WARNING  # noqa: PLC0415 - pandas: only where there is drift to show

        drifting = {name: psi for name, psi in summary.feature_psi.items() if psi > PSI_WARNING}
    else:
        drifting = {}
    if drifting:
        line += " drift_psi=" + ",".join(f"{name}:{psi:.2f}" for name, psi in sorted(drifting.items()))
    return line


def format_producer_summary(summary: RunSummary) -> str:
    """The producer's summary block on stdout."""
    ident = f"run {summary.run_id}" if summary.run_id else f"load {summary.load_id}"
    lines = [f"producer {summary.mode} to {summary.topic} ({ident})"]
    items: list[tuple[str, str]] = [
        ("sent", f"{summary.sent:,}"),
        ("acknowledged", f"{summary.acknowledged:,}"),
        ("failed", f"{summary.failed:,}"),
        ("skipped rows", f"{summary.skipped_rows:,}"),
        ("elapsed", f"{summary.elapsed_s:.3f} s"),
    ]
    if summary.requested_rate is not None:
        items.append(("requested rate", f"{summary.requested_rate:,.2f} events/s"))
    items.append(("achieved rate", f"{summary.achieved_rate:,.2f} events/s"))
    if summary.max_sustainable_rate is not None:
        items.append(("max sustainable", f"{summary.max_sustainable_rate:,.0f} events/s (requested rate not met)"))
    if summary.total_rows is not None:
        done = "complete" if summary.completed else "incomplete: continue with --resume"
        items.append(("progress", f"{summary.next_row:,} of {summary.total_rows:,} rows acknowledged ({done})"))
    if summary.resumed_from_row is not None:
        items.append(("resumed from row", f"{summary.resumed_from_row:,}"))
    if summary.stopped_by:
        items.append(("stopped by", summary.stopped_by))
    lines.extend(f"  {name:<17}{value}" for name, value in items)
    return "\n".join(lines)


def format_replay_summary(summary: ReplaySummary, dry_run: bool) -> str:
    verb = "would replay" if dry_run else "replayed"
    count = summary.to_replay if dry_run else summary.replayed
    unsendable = f", {summary.unsendable} without key and value left" if summary.unsendable else ""
    return (
        f"{summary.dead_letters} dead letters, {summary.matching} matching, "
        f"{summary.already_replayed} already replayed, {verb} {count}{unsendable}"
    )


def format_checks(checks: Sequence[Check]) -> str:
    """``--verify-only``: one PASS/FAIL line per check."""
    width = max(len(c.name) for c in checks)
    return "\n".join(f"{'PASS' if c.passed else 'FAIL'}  {c.name:<{width}}  {c.detail}" for c in checks)


class ProgressBar:
    """tqdm on stderr (rows, rows/s, ETA) for a batch load: producer.loops.Progress."""

    def __init__(self) -> None:
        self._bar: tqdm | None = None

    def start(self, total: int, done: int) -> None:
        self._bar = tqdm(total=total, initial=done, unit="rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)

    def advance(self, rows: int) -> None:
        if self._bar is not None and rows:
            self._bar.update(rows)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()

"""Compare the main model's predictions with a shadow model's, event by event (``churn-model compare``).

The two topics are joined by ``event_id`` (the consumer writes both outputs of an event in the
same transaction, so a read_committed reader sees both or neither). Over the matched events:

* agreement: the share whose ``prediction`` (Yes/No, each model at its own threshold) is the same;
* ``|Δp|``: the absolute difference of the churn probabilities, its mean and 99th percentile
  (numpy's default percentile, linear interpolation: the project's one definition);
* with labels (a CSV's label column, joined by the events' key): each side's ROC-AUC of its
  probabilities, and precision and recall of its decisions, on the matched events that have a label.

A duplicate (the same ``event_id`` twice on one topic: an at-least-once consumer that restarted)
counts once, its last copy; the number of duplicates is reported.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from churnstream.contract.outputs import PREDICTION_YES, Prediction
from churnstream.errors import DataError
from churnstream.ml.dataset import choose_label, read_rows


@dataclass(frozen=True)
class SideMetrics:
    """One model's quality on the labelled matched events (roc_auc None when only one class is there)."""

    roc_auc: float | None
    precision: float
    recall: float


@dataclass(frozen=True)
class Comparison:
    matched: int
    only_main: int
    only_shadow: int
    agreement: float | None  # None when nothing matched
    main_yes_shadow_no: int
    main_no_shadow_yes: int
    mean_abs_delta: float | None
    p99_abs_delta: float | None
    main_versions: dict[str, int] = field(default_factory=dict)  # model_version -> predictions (matched or not)
    shadow_versions: dict[str, int] = field(default_factory=dict)
    duplicates_main: int = 0
    duplicates_shadow: int = 0
    labels_given: bool = False
    labelled: int = 0  # matched events with a label
    main_metrics: SideMetrics | None = None
    shadow_metrics: SideMetrics | None = None


def _by_event(predictions: Sequence[Prediction]) -> tuple[dict[str, Prediction], int]:
    by_event = {p.event_id: p for p in predictions}
    return by_event, len(predictions) - len(by_event)


def _side_metrics(labels: np.ndarray, probabilities: np.ndarray, decisions: np.ndarray) -> SideMetrics:
    both_classes = 0 < int(labels.sum()) < labels.size
    return SideMetrics(
        roc_auc=float(roc_auc_score(labels, probabilities)) if both_classes else None,
        precision=float(precision_score(labels, decisions, zero_division=0)),
        recall=float(recall_score(labels, decisions, zero_division=0)),
    )


def compare(main: Sequence[Prediction], shadow: Sequence[Prediction], labels: Mapping[str, int] | None) -> Comparison:
    """Join the two sides by event_id and measure how far apart they are (see the module doc)."""
    main_by_event, duplicates_main = _by_event(main)
    shadow_by_event, duplicates_shadow = _by_event(shadow)
    matched_ids = [event_id for event_id in main_by_event if event_id in shadow_by_event]
    pairs = [(main_by_event[event_id], shadow_by_event[event_id]) for event_id in matched_ids]
    main_p = np.array([m.churn_probability for m, _ in pairs], dtype=float)
    shadow_p = np.array([s.churn_probability for _, s in pairs], dtype=float)
    main_yes = np.array([m.prediction == PREDICTION_YES for m, _ in pairs], dtype=bool)
    shadow_yes = np.array([s.prediction == PREDICTION_YES for _, s in pairs], dtype=bool)
    delta = np.abs(main_p - shadow_p)
    comparison = Comparison(
        matched=len(pairs),
        only_main=len(main_by_event) - len(pairs),
        only_shadow=len(shadow_by_event) - len(pairs),
        agreement=float(np.mean(main_yes == shadow_yes)) if pairs else None,
        main_yes_shadow_no=int(np.sum(main_yes & ~shadow_yes)),
        main_no_shadow_yes=int(np.sum(~main_yes & shadow_yes)),
        mean_abs_delta=float(delta.mean()) if pairs else None,
        p99_abs_delta=float(np.percentile(delta, 99)) if pairs else None,
        main_versions=dict(Counter(p.model_version for p in main_by_event.values())),
        shadow_versions=dict(Counter(p.model_version for p in shadow_by_event.values())),
        duplicates_main=duplicates_main,
        duplicates_shadow=duplicates_shadow,
    )
    if labels is None:
        return comparison
    known = np.array([m.key in labels for m, _ in pairs], dtype=bool)
    if not known.any():
        return _with_labels(comparison, 0, None, None)
    truth = np.array([labels[m.key] for m, _ in pairs if m.key in labels], dtype=int)
    return _with_labels(
        comparison,
        int(known.sum()),
        _side_metrics(truth, main_p[known], main_yes[known].astype(int)),
        _side_metrics(truth, shadow_p[known], shadow_yes[known].astype(int)),
    )


def _with_labels(c: Comparison, labelled: int, main: SideMetrics | None, shadow: SideMetrics | None) -> Comparison:
    return replace(c, labels_given=True, labelled=labelled, main_metrics=main, shadow_metrics=shadow)


def load_labels(csv_path: Path, key_field: str, label_column: str, positive: str | None = None) -> dict[str, int]:
    """key -> 1 (churned) or 0, from a CSV's key and label columns (the label's two values as in training:
    ml.dataset.choose_label); DataError for an empty label or one with other than two values."""
    values: dict[str, str] = {}
    for line, row in read_rows(csv_path, [key_field, label_column]):
        value = (row.get(label_column) or "").strip()
        if not value:
            raise DataError(f"{csv_path}:{line}: the label column {label_column} is empty")
        values[row[key_field]] = value
    label = choose_label(label_column, list(values.values()), positive)
    return {key: int(value == label.positive) for key, value in values.items()}


def _number(value: float | None, digits: int = 4) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _versions(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{version} ({count})" for version, count in sorted(counts.items())) or "none"


def format_comparison(c: Comparison) -> str:
    """The comparison as lines for stdout (``name: value``, one per line, easy to grep)."""
    lines = [
        f"main versions: {_versions(c.main_versions)}",
        f"shadow versions: {_versions(c.shadow_versions)}",
        f"matched events: {c.matched} (only main: {c.only_main}, only shadow: {c.only_shadow}; "
        f"duplicates skipped: {c.duplicates_main} + {c.duplicates_shadow})",
        f"agreement: {_number(c.agreement)} (main Yes / shadow No: {c.main_yes_shadow_no}, "
        f"main No / shadow Yes: {c.main_no_shadow_yes})",
        f"mean |dp|: {_number(c.mean_abs_delta, 6)}",
        f"p99 |dp|: {_number(c.p99_abs_delta, 6)}",
    ]
    if c.labels_given and c.main_metrics is None:
        lines.append("labelled events: 0 (no matched event's customerID has a label)")
    for name, metrics in (("main", c.main_metrics), ("shadow", c.shadow_metrics)):
        if metrics is not None:
            lines.append(
                f"{name} on {c.labelled} labelled: roc_auc {_number(metrics.roc_auc)}, "
                f"precision {_number(metrics.precision)}, recall {_number(metrics.recall)}"
            )
    return "\n".join(lines)

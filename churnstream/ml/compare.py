"""Compare the main model's predictions with a shadow model's, event by event (``churn-model compare``).

The two topics are joined by ``event_id`` (the consumer writes both outputs of an event in the
same transaction, so a read_committed reader sees both or neither). Over the matched events:

* agreement: the share whose ``prediction`` (Yes/No, each model at its own threshold) is the same;
* ``|Δp|``: the absolute difference of the churn probabilities, its mean and 99th percentile
  (numpy's default percentile, linear interpolation: the project's one definition);
* judged on the holdout: each side's ROC-AUC of its probabilities, and precision and recall of its
  decisions, only on the matched events whose key is a test row of *both* versions that scored it
  (each version's holdout: churnstream.ml.holdout), never on rows either model was fitted or tuned on,
  which would flatter the one that overfits more. The labels are the holdouts' own, or a CSV's.
  A version without a holdout (made before card format 4) leaves the comparison unjudged.

A duplicate (the same ``event_id`` twice on one topic: an at-least-once consumer that restarted)
counts once, its last copy; the number of duplicates is reported.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from churnstream.contract.outputs import PREDICTION_YES, Prediction
from churnstream.errors import DataError
from churnstream.ml.dataset import choose_label, read_rows
from churnstream.ml.holdout import Holdout

logger = logging.getLogger(__name__)

HOLDOUT_LABELS = "the versions' holdout files"


@dataclass(frozen=True)
class SideMetrics:
    """One model's quality on the labelled matched events (roc_auc None when only one class is there)."""

    roc_auc: float | None
    precision: float
    recall: float


@dataclass(frozen=True)
class Labels:
    """What the two sides are judged with: outcomes by key, and the keys each version was tested on."""

    by_key: Mapping[str, int]  # key -> 1 (churned) or 0
    test_keys: Mapping[str, frozenset[str]]  # version -> its holdout's keys; a version without one is absent
    source: str  # where the outcomes come from, for the output


def holdout_labels(holdouts: Iterable[Holdout]) -> dict[str, int]:
    """The outcomes the holdouts recorded, by key; a key two holdouts label differently (two data sets of
    different dates) has no label."""
    labels: dict[str, int] = {}
    conflicting: set[str] = set()
    for holdout in holdouts:
        for key, label in zip(holdout.keys, holdout.labels.tolist(), strict=True):
            if labels.setdefault(key, label) != label:
                conflicting.add(key)
    if conflicting:
        logger.warning("%d key(s) have different labels in two holdouts; they are not judged", len(conflicting))
    return {key: label for key, label in labels.items() if key not in conflicting}


def labels_over(holdouts: Mapping[str, Holdout], by_key: Mapping[str, int] | None, source: str) -> Labels:
    """Labels over ``holdouts`` (version -> its holdout): their own outcomes, or ``by_key`` from ``source``."""
    return Labels(
        by_key=holdout_labels(holdouts.values()) if by_key is None else by_key,
        test_keys={version: frozenset(holdout.keys) for version, holdout in holdouts.items()},
        source=HOLDOUT_LABELS if by_key is None else source,
    )


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
    label_source: str = ""
    unjudged_versions: tuple[str, ...] = ()  # versions of matched events without a holdout: nothing judged
    judged: int = 0  # matched events whose key is a test row of both versions, and has a label
    left_out: int = 0  # matched events whose key is not a test row of both versions
    unlabelled: int = 0  # matched events whose key is a test row of both, without a label
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


def compare(main: Sequence[Prediction], shadow: Sequence[Prediction], labels: Labels | None) -> Comparison:
    """Join the two sides by event_id and measure how far apart they are; with ``labels``, judge each side
    on the matched events that are test rows of both versions (see the module doc)."""
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
    comparison = replace(comparison, labels_given=True, label_source=labels.source)
    versions = {m.model_version for m, _ in pairs} | {s.model_version for _, s in pairs}
    unjudged = tuple(sorted(v for v in versions if v not in labels.test_keys))
    if unjudged:
        return replace(comparison, unjudged_versions=unjudged)
    test_row = np.array(
        [m.key in labels.test_keys[m.model_version] and s.key in labels.test_keys[s.model_version] for m, s in pairs],
        dtype=bool,
    )
    judged = test_row & np.array([m.key in labels.by_key for m, _ in pairs], dtype=bool)
    comparison = replace(
        comparison,
        judged=int(judged.sum()),
        left_out=int((~test_row).sum()),
        unlabelled=int((test_row & ~judged).sum()),
    )
    if not judged.any():
        return comparison
    truth = np.array([labels.by_key[m.key] for (m, _), keep in zip(pairs, judged, strict=True) if keep], dtype=int)
    return replace(
        comparison,
        main_metrics=_side_metrics(truth, main_p[judged], main_yes[judged].astype(int)),
        shadow_metrics=_side_metrics(truth, shadow_p[judged], shadow_yes[judged].astype(int)),
    )


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
    if c.unjudged_versions:
        lines.append(
            f"judged: no ({', '.join(c.unjudged_versions)}: no holdout in the store, made by an older release or "
            "not in this store; retrain it to judge it on its test rows)"
        )
    elif c.labels_given:
        unlabelled = f"; {c.unlabelled} more have no label there" if c.unlabelled else ""
        lines += [
            f"judged on: {c.judged} matched events whose key is a test row of both versions "
            f"(labels: {c.label_source}{unlabelled})",
            f"left out: {c.left_out} matched events that are not test rows of both (either version was fitted or "
            "tuned on them, or they are not in its data)",
        ]
    for name, metrics in (("main", c.main_metrics), ("shadow", c.shadow_metrics)):
        if metrics is not None:
            lines.append(
                f"{name} on {c.judged} test rows: roc_auc {_number(metrics.roc_auc)}, "
                f"precision {_number(metrics.precision)}, recall {_number(metrics.recall)}"
            )
    return "\n".join(lines)

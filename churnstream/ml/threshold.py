"""Choose the decision threshold from validation probabilities, by a rule written down in the card.

The consumer predicts churn when ``p >= threshold``. The candidates are the distinct predicted
probabilities: any threshold between two of them makes the same decisions as the upper one, so
nothing else can do better on the validation data. Two rules:

* ``max_f1`` (the default): the candidate with the highest F1 of the churn class;
* ``min_cost`` (``cost_ratio=C``): the candidate with the lowest expected cost ``C * FN + FP``,
  where a missed churner costs C times a false alarm (C > 1 lowers the threshold).

Ties go to the highest threshold: the same score with fewer customers flagged. "Flag nobody" is
not a candidate (the threshold must stay below 1). Pure numpy: one sort, then cumulative counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RULE_MAX_F1 = "max_f1"
RULE_MIN_COST = "min_cost"


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    rule: str  # RULE_MAX_F1, RULE_MIN_COST, or "given" (churn-model import --threshold)
    precision: float
    recall: float
    f1: float
    expected_cost: float | None  # C * FN + FP per validation row, under min_cost; None under max_f1


def threshold_figures(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> tuple[float, float, float]:
    """(precision, recall, F1) of the churn class when churn is predicted at ``p >= threshold``."""
    labels = np.asarray(y_true, dtype=int)
    flagged = np.asarray(probabilities, dtype=float) >= threshold
    true_positives = float((flagged & (labels == 1)).sum())
    precision = true_positives / flagged.sum() if flagged.any() else 0.0
    recall = true_positives / labels.sum() if labels.any() else 0.0
    f1 = 2 * true_positives / (flagged.sum() + labels.sum()) if (flagged.any() or labels.any()) else 0.0
    return float(precision), float(recall), float(f1)


RULE_GIVEN = "given"


def fixed_threshold(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> ThresholdChoice:
    """A threshold given by the user (``churn-model import --threshold``), with its validation figures."""
    if not 0 < threshold < 1:
        raise ValueError(f"a threshold must be between 0 and 1 (exclusive), got {threshold!r}")
    precision, recall, f1 = threshold_figures(y_true, probabilities, threshold)
    return ThresholdChoice(threshold, RULE_GIVEN, precision, recall, f1, expected_cost=None)


def choose_threshold(y_true: np.ndarray, probabilities: np.ndarray, cost_ratio: float | None = None) -> ThresholdChoice:
    """The threshold the rule picks on these labels (0/1) and probabilities (see the module doc)."""
    labels = np.asarray(y_true, dtype=int)
    scores = np.asarray(probabilities, dtype=float)
    if labels.shape != scores.shape or labels.ndim != 1 or labels.size == 0:
        raise ValueError(f"need two equal, non-empty 1-D arrays; got shapes {labels.shape} and {scores.shape}")
    if not np.isin(labels, (0, 1)).all():
        raise ValueError("labels must be 0 or 1")
    if not np.isfinite(scores).all():
        raise ValueError("probabilities must be finite")
    if cost_ratio is not None and not 0 < cost_ratio < float("inf"):
        raise ValueError(f"cost_ratio must be a finite number above 0, got {cost_ratio!r}")
    # Descending scores: flagging everything from the top down to candidate k flags the first
    # (last index of k's score) + 1 rows, so the counts at every distinct score are cumulative sums.
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    last_of_value = np.flatnonzero(np.r_[sorted_scores[1:] != sorted_scores[:-1], True])
    candidates = sorted_scores[last_of_value]  # distinct scores, highest first
    true_positives = np.cumsum(sorted_labels)[last_of_value].astype(float)
    flagged = (last_of_value + 1).astype(float)
    positives = float(labels.sum())
    false_positives = flagged - true_positives
    false_negatives = positives - true_positives
    precision = true_positives / flagged
    recall = true_positives / positives if positives else np.zeros_like(true_positives)
    f1 = np.divide(2 * true_positives, flagged + positives, out=np.zeros_like(true_positives), where=flagged > 0)
    if cost_ratio is None:
        best = int(np.argmax(f1))  # first maximum = highest threshold among ties
        rule, expected_cost = RULE_MAX_F1, None
    else:
        cost = cost_ratio * false_negatives + false_positives
        best = int(np.argmin(cost))  # first minimum = highest threshold among ties
        rule, expected_cost = RULE_MIN_COST, float(cost[best]) / labels.size
    return ThresholdChoice(
        threshold=float(candidates[best]),
        rule=rule,
        precision=float(precision[best]),
        recall=float(recall[best]),
        f1=float(f1[best]),
        expected_cost=expected_cost,
    )

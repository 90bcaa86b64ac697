"""The threshold rule: a brute-force search agrees with it."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score

from churnstream.ml.threshold import RULE_MAX_F1, RULE_MIN_COST, choose_threshold

GRID = 1000  # probabilities and thresholds are k / GRID: the grid holds every candidate exactly


def brute_force(labels: np.ndarray, ticks: np.ndarray, cost_ratio: float | None) -> int:
    """The best grid threshold (in ticks): the counts at every point of the grid, plainly; ties: the
    highest. Thresholds that flag nobody are not candidates."""
    best_tick, best_score = -1, -np.inf
    for tick in range(GRID + 1):
        flagged = ticks >= tick
        if not flagged.any():
            continue
        true_positives = int(np.sum(flagged & (labels == 1)))
        false_positives = int(np.sum(flagged & (labels == 0)))
        false_negatives = int(np.sum(~flagged & (labels == 1)))
        if cost_ratio is None:
            score = 2 * true_positives / (2 * true_positives + false_positives + false_negatives)
        else:
            score = -(cost_ratio * false_negatives + false_positives)
        if score >= best_score:  # >=: a later (higher) threshold wins a tie
            best_tick, best_score = tick, score
    return best_tick


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("cost_ratio", [None, 0.5, 1.0, 3.0, 7.25])
def test_the_rule_picks_what_a_brute_force_search_over_a_grid_picks(seed: int, cost_ratio: float | None) -> None:
    rng = np.random.default_rng(seed)
    size = int(rng.integers(20, 400))
    ticks = rng.integers(1, GRID, size)  # probabilities on the grid, repeated values included
    labels = (rng.random(size) < ticks / GRID * rng.uniform(0.3, 1.5)).astype(int)
    labels[0], labels[1] = 0, 1  # both classes present
    choice = choose_threshold(labels, ticks / GRID, cost_ratio)
    expected_tick = brute_force(labels, ticks, cost_ratio)
    assert choice.threshold == expected_tick / GRID
    assert choice.rule == (RULE_MAX_F1 if cost_ratio is None else RULE_MIN_COST)
    predicted = (ticks >= expected_tick).astype(int)
    assert choice.precision == pytest.approx(precision_score(labels, predicted, zero_division=0), abs=1e-12)
    assert choice.recall == pytest.approx(recall_score(labels, predicted, zero_division=0), abs=1e-12)
    assert choice.f1 == pytest.approx(f1_score(labels, predicted, zero_division=0), abs=1e-12)
    if cost_ratio is None:
        assert choice.expected_cost is None
    else:
        _, false_positives, false_negatives, _ = confusion_matrix(labels, predicted).ravel()
        assert choice.expected_cost == pytest.approx((cost_ratio * false_negatives + false_positives) / size)


def test_ties_go_to_the_highest_threshold() -> None:
    labels = np.array([1, 0, 0, 1])
    probabilities = np.array([0.9, 0.8, 0.7, 0.6])
    # F1 is 2/3 at 0.9 (one churner flagged) and at 0.6 (everyone flagged); cost 2 at both with C=2
    assert choose_threshold(labels, probabilities).threshold == 0.9
    assert choose_threshold(labels, probabilities, cost_ratio=2.0).threshold == 0.9
    # a missed churner costing more moves the threshold down
    assert choose_threshold(labels, probabilities, cost_ratio=3.0).threshold == 0.6


@pytest.mark.parametrize(
    ("labels", "probabilities", "cost_ratio", "message"),
    [
        ([0, 1], [0.1], None, "equal, non-empty"),
        ([], [], None, "equal, non-empty"),
        ([0, 2], [0.1, 0.2], None, "0 or 1"),
        ([0, 1], [0.1, float("nan")], None, "finite"),
        ([0, 1], [0.1, 0.2], 0.0, "above 0"),
    ],
)
def test_bad_input_is_refused(
    labels: list[int], probabilities: list[float], cost_ratio: float | None, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        choose_threshold(np.array(labels), np.array(probabilities), cost_ratio)

"""The threshold rule: a brute-force search agrees with it, and the current card's threshold is the rule's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, f1_score, precision_score, recall_score
from sklearn.model_selection import train_test_split

from churnstream.files import sha256_file
from churnstream.ml.dataset import DATASET_LABEL
from churnstream.ml.model import load_model
from churnstream.ml.store import ModelStore
from churnstream.ml.threshold import RULE_MAX_F1, RULE_MIN_COST, choose_threshold
from churnstream.ml.train import labelled_frame
from churnstream.settings import DEFAULT_MODEL_STORE

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


def test_the_current_cards_threshold_is_the_one_its_rule_picks_on_its_validation_split(real_data_path: Path) -> None:
    """Rebuild the validation rows from the split the card records (with sklearn directly, not the
    training code), score them with the stored model, and apply the rule again."""
    store = ModelStore(DEFAULT_MODEL_STORE)
    version = store.current()
    assert version is not None, "no current model: run 'make model'"
    model = load_model(*store.paths(version))
    card = model.card
    assert card["training_data"]["sha256"] == sha256_file(real_data_path)
    split = card["split"]
    frame, labels = labelled_frame(model.contract, real_data_path, DATASET_LABEL)
    x_rest, _, y_rest, _ = train_test_split(
        frame, labels, test_size=split["test_size"], stratify=labels, random_state=split["random_state"]
    )
    _, x_validation, _, y_validation = train_test_split(
        x_rest,
        y_rest,
        test_size=split["validation_size"] / (1 - split["test_size"]),
        stratify=y_rest,
        random_state=split["random_state"],
    )
    assert len(y_validation) == card["validation"]["rows"]
    probabilities = model.pipeline.predict_proba(x_validation)[:, 1]
    choice = choose_threshold(y_validation, probabilities, card["threshold_rule"]["cost_ratio"])
    assert choice.rule == card["threshold_rule"]["rule"]
    assert card["threshold"] == pytest.approx(choice.threshold, rel=0, abs=1e-12)
    assert card["validation"]["precision"] == pytest.approx(choice.precision, abs=1e-12)
    assert card["validation"]["recall"] == pytest.approx(choice.recall, abs=1e-12)
    assert card["validation"]["f1"] == pytest.approx(choice.f1, abs=1e-12)

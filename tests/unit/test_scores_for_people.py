"""What a retention team reads off a prediction and a card: reasons, risk bands, calibration, lift.

The exactness of the linear reasons is checked on the real data; the card's figures against numbers
worked out by hand on small examples.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy.special import logit
from sklearn.isotonic import IsotonicRegression

from churnstream.ml.calibration import ISOTONIC, SIGMOID, Calibration, fit_calibration
from churnstream.ml.dataset import DATASET_LABEL, read_labelled
from churnstream.ml.evaluation import Bands, brier_score, choose_bands, evaluation, lift_table, reliability_bins
from churnstream.ml.explain import LinearExplainer, top_reasons
from churnstream.ml.model import ChurnModel, load_model
from tests.helpers import current_model_path, telco_contract


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    return load_model(current_model_path())


@pytest.fixture(scope="module")
def customers(real_data_path: Path) -> list[tuple]:
    return read_labelled(telco_contract(), real_data_path, DATASET_LABEL).rows


# --------------------------------------------------------------------- reasons


def test_the_linear_reasons_add_up_to_the_logit_on_the_real_data(model: ChurnModel, customers: list[tuple]) -> None:
    """base_logit + every feature's contribution = logit(p), for each of the 7,043 customers (and one whose
    category the model never saw)."""
    rows = [*customers, (*customers[0][:14], "Forever", *customers[0][15:])]
    assert isinstance(model.explainer, LinearExplainer)
    contributions = model.explainer.contributions(rows)
    assert contributions.shape == (len(rows), len(telco_contract().feature_names))
    total = model.explainer.base_logit + contributions.sum(axis=1)
    assert np.abs(total - logit(model.predict_proba(rows))).max() <= 1e-9


def test_a_customers_reasons_are_up_to_three_features_raising_the_risk_largest_first(
    model: ChurnModel, customers: list[tuple]
) -> None:
    rows = customers[:500]
    probabilities = model.predict_proba(rows)
    reasons = model.explain(rows, probabilities)
    assert reasons is not None and len(reasons) == len(rows)
    names = telco_contract().feature_names
    assert any(len(r) == 3 for r in reasons)
    for row, found in zip(rows, reasons, strict=True):
        assert len(found) <= 3
        amounts = [reason["contribution"] for reason in found]
        assert amounts == sorted(amounts, reverse=True) and all(amount > 0 for amount in amounts)
        for reason in found:
            assert reason["value"] == row[names.index(reason["feature"])]


def test_top_reasons_leave_out_what_lowers_the_risk() -> None:
    contributions = np.array([[0.5, -1.0, 0.2, 0.0], [-0.1, -0.2, -0.3, -0.4]])
    rows = [("a", 1, 2.5, None), ("b", 0, 1.0, True)]
    reasons = top_reasons(contributions, rows, ("f1", "f2", "f3", "f4"))
    assert reasons == [
        [{"feature": "f1", "value": "a", "contribution": 0.5}, {"feature": "f3", "value": 2.5, "contribution": 0.2}],
        [],
    ]


# --------------------------------------------------------------------- bands


def test_a_higher_probability_never_gets_a_lower_band() -> None:
    generator = np.random.default_rng(3)
    bands = choose_bands(generator.beta(2, 5, size=1000))
    probabilities = np.sort(generator.random(20_000))
    ranks = [bands.names.index(name) for name in bands.bands_of(probabilities)]
    assert ranks == sorted(ranks, reverse=True)  # names run from the highest band down
    assert [bands.band(float(p)) for p in probabilities[::97]] == bands.bands_of(probabilities[::97])
    assert bands.names == ("very high", "high", "medium", "low") and bands.cuts[-1] == 0.0


def test_the_band_cuts_rank_the_validation_rows_as_the_rule_says() -> None:
    probabilities = np.linspace(0.001, 1.0, 1000)
    bands = choose_bands(probabilities)
    counts = {name: bands.bands_of(probabilities).count(name) for name in bands.names}
    assert counts == {"very high": 100, "high": 200, "medium": 300, "low": 400}


def test_bands_from_a_card_are_checked() -> None:
    good = [{"name": "high", "min_probability": 0.5}, {"name": "low", "min_probability": 0}]
    assert Bands.from_card(good).band(0.7) == "high"
    for bad in (
        [{"name": "high", "min_probability": 0.2}, {"name": "low", "min_probability": 0.5}],
        [{"name": "high", "min_probability": 0.5}],
        [{"min_probability": 0.0}],
        [],
    ):
        with pytest.raises(ValueError):
            Bands.from_card(bad)


# --------------------------------------------------------------------- calibration


def _overconfident(size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels drawn at probability q, and a model that says q pushed towards 0 and 1."""
    generator = np.random.default_rng(seed)
    truth = generator.uniform(0.05, 0.95, size)
    labels = (generator.random(size) < truth).astype(int)
    return labels, 1 / (1 + np.exp(-3 * logit(truth)))


@pytest.mark.parametrize("method", [SIGMOID, ISOTONIC])
def test_calibration_fitted_on_validation_lowers_the_brier_score_on_test(method: str) -> None:
    labels, said = _overconfident(4000, seed=1)
    test_labels, test_said = _overconfident(4000, seed=2)
    calibration = fit_calibration(method, labels, said)
    assert brier_score(test_labels, calibration(test_said)) < brier_score(test_labels, test_said) - 0.01
    again = Calibration.from_card(calibration.as_card())
    np.testing.assert_allclose(again(test_said), calibration(test_said), rtol=0, atol=0)
    ranks = np.argsort(test_said, kind="stable")
    assert np.all(np.diff(calibration(test_said)[ranks]) >= -1e-12)  # monotone: the ranking stands


def test_the_isotonic_map_is_what_scikit_learn_predicts() -> None:
    labels, said = _overconfident(2000, seed=5)
    ours = fit_calibration(ISOTONIC, labels, said)
    theirs = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(said, labels)
    probe = np.linspace(0, 1, 501)
    np.testing.assert_allclose(ours(probe), theirs.predict(probe), rtol=0, atol=1e-12)


def test_a_sigmoid_calibration_scales_the_linear_reasons(model: ChurnModel, customers: list[tuple]) -> None:
    assert isinstance(model.explainer, LinearExplainer)
    scaled = LinearExplainer.of(model.explainer.linear, scale=0.5)
    rows = customers[:50]
    np.testing.assert_allclose(
        scaled.contributions(rows), 0.5 * model.explainer.contributions(rows), rtol=0, atol=1e-12
    )


# --------------------------------------------------------------------- the card's figures, by hand


def test_brier_reliability_and_lift_by_hand() -> None:
    labels = np.array([1, 0, 1, 0, 0, 1, 0, 0, 0, 0])
    probabilities = np.array([0.9, 0.8, 0.7, 0.3, 0.25, 0.2, 0.15, 0.1, 0.05, 0.0])
    assert brier_score(labels, probabilities) == pytest.approx(
        ((0.1**2) + 0.8**2 + 0.3**2 + 0.3**2 + 0.25**2 + 0.8**2 + 0.15**2 + 0.1**2 + 0.05**2 + 0) / 10
    )
    bins = reliability_bins(labels, probabilities)
    assert [b["count"] for b in bins] == [2, 2, 2, 1, 0, 0, 0, 1, 1, 1]
    assert bins[2]["observed_rate"] == 0.5 and bins[4]["mean_predicted"] is None
    lift = lift_table(labels, probabilities, shares=(0.1, 0.2, 0.3))
    # the base rate is 3/10; the top customer churned: gain 1/3, lift (1/1)/0.3
    assert lift[0] == {"top": 0.1, "customers": 1, "churners": 1, "cumulative_gain": 0.333333, "lift": 3.333333}
    assert lift[2]["churners"] == 2 and lift[2]["lift"] == pytest.approx((2 / 3) / 0.3, abs=1e-6)
    card = evaluation(labels, probabilities, threshold=0.5)
    assert card["at_threshold"] == {"threshold": 0.5, "flagged": 3, "precision": 0.666667, "recall": 0.666667}


def test_the_shipped_models_card_holds_calibration_lift_and_bands(model: ChurnModel) -> None:
    card = model.card
    figures = card["evaluation"]
    assert figures["rows"] == card["metrics"]["test_rows"] and 0 < figures["brier_score"] < 0.25
    assert [row["top"] for row in figures["lift"]] == [0.1, 0.2, 0.3]
    assert all(row["lift"] > 1 for row in figures["lift"])  # better than calling at random
    assert sum(b["count"] for b in figures["reliability"]) == figures["rows"]
    assert [band["name"] for band in card["risk_bands"]] == ["very high", "high", "medium", "low"]
    assert card["reasons"]["method"] == "linear" and card["calibration"] is None

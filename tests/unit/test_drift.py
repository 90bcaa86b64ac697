"""Drift on the real data: a random sample stays under the warning, one customer segment does not."""

from __future__ import annotations

import math
import random
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churnstream.errors import ModelIntegrityError
from churnstream.ml.dataset import DATASET_LABEL, read_labelled
from churnstream.ml.drift import (
    PSI_EPSILON,
    PSI_WARNING,
    DriftMonitor,
    drifting,
    population_stability,
    training_distribution,
)
from churnstream.ml.features import features_frame
from churnstream.ml.model import ChurnModel, load_model
from tests.helpers import current_model_path, telco_contract

WINDOW = 2000


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    return load_model(current_model_path())


Row = tuple[Any, ...]


@pytest.fixture(scope="module")
def customers(real_data_path: Path) -> list[Row]:
    """Every row of the real CSV as the validated feature tuple the consumer scores."""
    return read_labelled(telco_contract(), real_data_path, DATASET_LABEL).rows


def at(name: str) -> int:
    """A feature's place in the tuples."""
    return POSITION[name]


POSITION = {name: index for index, name in enumerate(telco_contract().feature_names)}


def monitor_of(model: ChurnModel, rows: list[Row], window: int = WINDOW, batch: int = 500) -> DriftMonitor:
    monitor = DriftMonitor(model.card, window=window)
    for start in range(0, len(rows), batch):
        chunk = rows[start : start + batch]
        monitor.update(chunk, model.predict_proba(chunk))
    return monitor


def test_a_random_sample_of_the_customers_does_not_drift(model: ChurnModel, customers: list[Row]) -> None:
    sample = random.Random(16).sample(customers, WINDOW)
    monitor = monitor_of(model, sample)
    psi = monitor.psi()
    assert set(psi) == set(model.card["features"])
    assert max(psi.values()) < PSI_WARNING, psi
    assert drifting(psi) == []
    assert monitor.count == WINDOW
    assert monitor.mean_probability() == pytest.approx(float(np.mean(model.predict_proba(sample))), abs=1e-12)


def test_month_to_month_fiber_optic_customers_push_contract_and_internet_service_over_the_warning(
    model: ChurnModel, customers: list[Row]
) -> None:
    segment = [
        c for c in customers if c[at("Contract")] == "Month-to-month" and c[at("InternetService")] == "Fiber optic"
    ]
    assert len(segment) > 1000
    monitor = monitor_of(model, random.Random(16).sample(segment, min(WINDOW, len(segment))))
    psi = monitor.psi()
    assert psi["Contract"] > PSI_WARNING
    assert psi["InternetService"] > PSI_WARNING
    assert {"Contract", "InternetService"} <= set(drifting(psi))
    # a riskier segment: the mean predicted probability rises above the random sample's
    everyone = monitor_of(model, random.Random(16).sample(customers, WINDOW))
    assert monitor.mean_probability() > everyone.mean_probability()  # type: ignore[operator]


def test_the_psi_is_the_documented_formula(model: ChurnModel, customers: list[Row]) -> None:
    """Contract's PSI recomputed by hand from the card's proportions and the window's counts."""
    rows = customers[:1500]
    entry = model.card["training_distribution"]["Contract"]
    counts = Counter(row[at("Contract")] for row in rows)
    by_hand = 0.0
    for category, share in zip(entry["categories"], entry["proportions"], strict=True):
        actual = max(counts[category] / len(rows), PSI_EPSILON)
        expected = max(share, PSI_EPSILON)
        by_hand += (actual - expected) * math.log(actual / expected)
    assert monitor_of(model, rows).psi()["Contract"] == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize(("window", "batch"), [(100, 30), (150, 100), (100, 250), (1, 7)])
def test_the_window_slides_old_events_leave(model: ChurnModel, customers: list[Row], window: int, batch: int) -> None:
    """After any sequence of batches, the monitor equals a fresh one fed only the last ``window`` events."""
    segment = [
        c for c in customers if c[at("Contract")] == "Month-to-month" and c[at("InternetService")] == "Fiber optic"
    ]
    others = [c for c in customers if c[at("Contract")] == "Two year"]
    stream = segment[:200] + others[:200]
    monitor = monitor_of(model, stream, window=window, batch=batch)
    fresh = monitor_of(model, stream[-window:], window=window, batch=window)
    assert monitor.count == fresh.count == window
    for name, value in fresh.psi().items():
        assert monitor.psi()[name] == pytest.approx(value, rel=1e-12, abs=1e-12), name
    assert monitor.mean_probability() == pytest.approx(fresh.mean_probability(), rel=1e-12)
    if window >= 100:  # only two-year customers are left: Contract drifts the other way now
        assert monitor.psi()["Contract"] == pytest.approx(
            population_stability(
                np.array([0.0, 0.0, 1.0, 0.0]),
                np.array([*model.card["training_distribution"]["Contract"]["proportions"], 0]),
            )
        )


def test_a_card_without_a_training_distribution_tracks_only_the_mean_probability(
    model: ChurnModel, customers: list[Row]
) -> None:
    old_card = {key: value for key, value in model.card.items() if key != "training_distribution"}
    monitor = DriftMonitor(old_card, window=10)
    assert monitor.psi() == {}
    monitor.update(customers[:4], np.array([0.1, 0.2, 0.3, 0.4]))
    assert monitor.psi() == {} and monitor.features == ()
    assert monitor.mean_probability() == pytest.approx(0.25) and monitor.count == 4


def test_an_empty_window_has_no_psi_and_no_mean(model: ChurnModel) -> None:
    monitor = DriftMonitor(model.card)
    monitor.update([], np.empty(0))
    assert monitor.psi() == {} and monitor.mean_probability() is None and monitor.count == 0


def test_a_malformed_distribution_is_refused_in_one_line(model: ChurnModel) -> None:
    card = dict(model.card)
    card["training_distribution"] = {"tenure": {"kind": "numeric", "edges": [3.0, 1.0], "proportions": [0.5, 0.5]}}
    with pytest.raises(ModelIntegrityError, match="needs sorted finite edges"):
        DriftMonitor(card)


def test_the_training_distribution_has_a_bin_for_every_row(customers: list[Row]) -> None:
    frame = features_frame(telco_contract().schema, customers)
    distribution = training_distribution(telco_contract().schema, frame)
    for name, entry in distribution.items():
        assert sum(entry["proportions"]) == pytest.approx(1.0), name
    total_charges = distribution["TotalCharges"]
    assert len(total_charges["edges"]) == 9  # interior deciles of a continuous column: all distinct
    assert total_charges["proportions"][-1] == pytest.approx(11 / len(customers))  # the blank ones: their own bin
    senior = distribution["SeniorCitizen"]  # 0/1: the deciles collapse to the distinct values
    assert senior["edges"] == [0.0, 1.0] and senior["proportions"][0] == 0.0


def test_a_nullable_string_feature_has_a_null_bin_so_nulls_are_not_drift() -> None:
    """Before: the nulls of a nullable string feature (a region unknown for 1 customer in 20) were in no
    training bin, and the same share live read as a PSI of 0.36 (seen with examples/mobile)."""
    from churnstream.contract.schema import schema_from_document  # noqa: PLC0415

    document = {
        "type": "object",
        "x-key": "id",
        "properties": {"id": {"type": "string"}, "region": {"type": ["string", "null"]}, "n": {"type": "integer"}},
        "required": ["id", "region", "n"],
    }
    schema = schema_from_document(document, "nullable")
    rows = [("DE-01" if i % 20 else None, i % 7) for i in range(2000)]
    distribution = training_distribution(schema, features_frame(schema, rows))
    assert distribution["region"]["categories"] == ["DE-01", None]
    assert distribution["region"]["proportions"] == pytest.approx([0.95, 0.05])
    monitor = DriftMonitor({"features": ["region", "n"], "training_distribution": distribution}, window=2000)
    monitor.update(rows, np.full(len(rows), 0.3))
    assert monitor.psi()["region"] == pytest.approx(0.0, abs=1e-9)

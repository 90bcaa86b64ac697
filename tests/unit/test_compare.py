"""churn-model compare's arithmetic: the join, the agreement, |dp| and each side's metrics on labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from churnstream.contract.outputs import Prediction
from churnstream.errors import DataError
from churnstream.ml.compare import compare, format_comparison, load_labels
from tests.helpers import make_rows, write_csv


def prediction(
    event_id: str, probability: float, yes: bool, customer: str | None = None, version: str = "m"
) -> Prediction:
    return Prediction(
        key_field="customerID",
        key=customer or f"cust-{event_id}",
        churn_probability=probability,
        prediction="Yes" if yes else "No",
        confidence_score=probability if yes else 1 - probability,
        event_ts="2026-12-01T00:00:00.000Z",
        processed_ts="2026-12-01T00:00:01.000Z",
        event_id=event_id,
        model_version=version,
        source_partition=0,
        source_offset=int(event_id.removeprefix("e")),
    )


MAIN = [
    prediction("e1", 0.5, False),  # an earlier copy of e1 (an at-least-once duplicate): the last copy counts
    prediction("e1", 0.9, True),
    prediction("e2", 0.2, False),
    prediction("e3", 0.6, True),
    prediction("e4", 0.4, False),
    prediction("e5", 0.5, True),  # only on main
    prediction("e7", 0.1, False, customer="unlabelled"),
]
SHADOW = [
    prediction("e1", 0.8, True, version="s"),
    prediction("e2", 0.3, False, version="s"),
    prediction("e3", 0.3, False, version="s"),
    prediction("e4", 0.7, True, version="s2"),
    prediction("e6", 0.5, True, version="s"),  # only on shadow
    prediction("e7", 0.1, False, customer="unlabelled", version="s"),
]
LABELS = {"cust-e1": 1, "cust-e2": 0, "cust-e3": 0, "cust-e4": 1, "cust-e5": 1, "cust-e6": 0}


def test_the_join_agreement_and_delta_worked_by_hand() -> None:
    c = compare(MAIN, SHADOW, None)
    assert (c.matched, c.only_main, c.only_shadow) == (5, 1, 1)  # e1-e4 and e7; e5; e6
    assert (c.duplicates_main, c.duplicates_shadow) == (1, 0)
    # decisions: e1 Y/Y, e2 N/N, e3 Y/N, e4 N/Y, e7 N/N -> 3 of 5 agree
    assert c.agreement == pytest.approx(3 / 5)
    assert (c.main_yes_shadow_no, c.main_no_shadow_yes) == (1, 1)
    # |dp|: e1 0.1, e2 0.1, e3 0.3, e4 0.3, e7 0 -> mean 0.16; p99 (linear) between the two 0.3s
    assert c.mean_abs_delta == pytest.approx(0.16)
    assert c.p99_abs_delta == pytest.approx(0.3)
    assert c.main_versions == {"m": 6} and c.shadow_versions == {"s": 5, "s2": 1}
    assert c.main_metrics is None and c.shadow_metrics is None and not c.labels_given


def test_metrics_on_the_labelled_matched_events_worked_by_hand() -> None:
    c = compare(MAIN, SHADOW, LABELS)
    assert c.labelled == 4  # e1-e4: e5 and e6 are not matched, e7's customer has no label
    assert c.main_metrics is not None and c.shadow_metrics is not None
    # main flags e1 (churner) and e3 (not): precision 1/2; misses e4: recall 1/2
    assert (c.main_metrics.precision, c.main_metrics.recall) == (0.5, 0.5)
    # main's probabilities: churners 0.9, 0.4 vs others 0.2, 0.6 -> 3 of 4 pairs ordered right
    assert c.main_metrics.roc_auc == pytest.approx(0.75)
    # shadow flags e1 and e4, both churners, and no one else
    assert (c.shadow_metrics.precision, c.shadow_metrics.recall, c.shadow_metrics.roc_auc) == (1.0, 1.0, 1.0)


def test_metrics_agree_with_sklearn_on_random_data() -> None:
    rng = np.random.default_rng(7)
    size = 500
    truth = rng.integers(0, 2, size)
    main_p = np.clip(truth * 0.3 + rng.random(size) * 0.7, 0, 1)
    shadow_p = np.clip(main_p + rng.normal(0, 0.1, size), 0, 1)
    main = [prediction(f"e{i}", float(p), bool(p >= 0.5)) for i, p in enumerate(main_p)]
    shadow = [prediction(f"e{i}", float(p), bool(p >= 0.4)) for i, p in enumerate(shadow_p)]
    labels = {f"cust-e{i}": int(t) for i, t in enumerate(truth)}
    c = compare(main, shadow, labels)
    assert c.matched == c.labelled == size
    assert c.agreement == pytest.approx(np.mean((main_p >= 0.5) == (shadow_p >= 0.4)))
    assert c.p99_abs_delta == pytest.approx(np.percentile(np.abs(main_p - shadow_p), 99))
    assert c.main_metrics is not None and c.shadow_metrics is not None
    assert c.main_metrics.roc_auc == pytest.approx(roc_auc_score(truth, main_p))
    assert c.shadow_metrics.precision == pytest.approx(precision_score(truth, shadow_p >= 0.4))
    assert c.shadow_metrics.recall == pytest.approx(recall_score(truth, shadow_p >= 0.4))


def test_one_class_of_labels_has_no_roc_auc_and_nothing_matched_has_no_figures() -> None:
    c = compare(MAIN, SHADOW, {"cust-e1": 1, "cust-e4": 1})
    assert c.main_metrics is not None and c.main_metrics.roc_auc is None
    empty = compare(MAIN[:1], SHADOW[4:5], LABELS)
    assert empty.matched == 0 and empty.agreement is None and empty.mean_abs_delta is None
    assert empty.labels_given and empty.labelled == 0
    assert "labelled events: 0" in format_comparison(empty)


def test_the_report_names_each_figure() -> None:
    lines = format_comparison(compare(MAIN, SHADOW, LABELS)).splitlines()
    assert "matched events: 5 (only main: 1, only shadow: 1; duplicates skipped: 1 + 0)" in lines
    assert "agreement: 0.6000 (main Yes / shadow No: 1, main No / shadow Yes: 1)" in lines
    assert "mean |dp|: 0.160000" in lines and "p99 |dp|: 0.300000" in lines
    assert "main on 4 labelled: roc_auc 0.7500, precision 0.5000, recall 0.5000" in lines
    assert "shadow on 4 labelled: roc_auc 1.0000, precision 1.0000, recall 1.0000" in lines
    assert "shadow versions: s (5), s2 (1)" in lines


def test_labels_come_from_the_label_column_by_key(tmp_path: Path) -> None:
    rows = make_rows(8)
    labels = load_labels(write_csv(tmp_path / "l.csv", rows), "customerID", "Churn")
    assert labels == {row["customerID"]: int(row["Churn"] == "Yes") for row in rows}
    rows[3]["Churn"] = "Maybe"
    with pytest.raises(DataError, match="the label column Churn holds 3 distinct value"):
        load_labels(write_csv(tmp_path / "bad.csv", rows), "customerID", "Churn")

"""churn-model compare's arithmetic: the join, the agreement, |dp|, and each side's metrics on the test rows
of both versions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from churnstream.contract.outputs import Prediction
from churnstream.errors import DataError
from churnstream.ml.compare import HOLDOUT_LABELS, Labels, compare, format_comparison, holdout_labels, load_labels
from churnstream.ml.holdout import Holdout
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


def all_rows_tested(by_key: dict[str, int], versions: tuple[str, ...] = ("m", "s", "s2")) -> Labels:
    """Labels under which every labelled key is a test row of every version (no row was trained on)."""
    return Labels(by_key, {version: frozenset(by_key) for version in versions}, "test.csv")


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
    c = compare(MAIN, SHADOW, all_rows_tested(LABELS))
    assert c.judged == 4  # e1-e4: e5 and e6 are not matched, e7's customer has no label
    assert (c.left_out, c.unlabelled) == (1, 0)  # e7's key is no version's test row
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
    c = compare(main, shadow, all_rows_tested(labels))
    assert c.matched == c.judged == size
    assert c.agreement == pytest.approx(np.mean((main_p >= 0.5) == (shadow_p >= 0.4)))
    assert c.p99_abs_delta == pytest.approx(np.percentile(np.abs(main_p - shadow_p), 99))
    assert c.main_metrics is not None and c.shadow_metrics is not None
    assert c.main_metrics.roc_auc == pytest.approx(roc_auc_score(truth, main_p))
    assert c.shadow_metrics.precision == pytest.approx(precision_score(truth, shadow_p >= 0.4))
    assert c.shadow_metrics.recall == pytest.approx(recall_score(truth, shadow_p >= 0.4))


def test_one_class_of_labels_has_no_roc_auc_and_nothing_matched_has_no_figures() -> None:
    c = compare(MAIN, SHADOW, all_rows_tested({"cust-e1": 1, "cust-e4": 1}))
    assert c.main_metrics is not None and c.main_metrics.roc_auc is None
    empty = compare(MAIN[:1], SHADOW[4:5], all_rows_tested(LABELS))
    assert empty.matched == 0 and empty.agreement is None and empty.mean_abs_delta is None
    assert empty.labels_given and empty.judged == 0 and empty.main_metrics is None
    assert "judged on: 0 matched events whose key is a test row of both versions (labels: test.csv)" in (
        format_comparison(empty).splitlines()
    )


def test_the_report_names_each_figure() -> None:
    lines = format_comparison(compare(MAIN, SHADOW, all_rows_tested(LABELS))).splitlines()
    assert "matched events: 5 (only main: 1, only shadow: 1; duplicates skipped: 1 + 0)" in lines
    assert "agreement: 0.6000 (main Yes / shadow No: 1, main No / shadow Yes: 1)" in lines
    assert "mean |dp|: 0.160000" in lines and "p99 |dp|: 0.300000" in lines
    assert "judged on: 4 matched events whose key is a test row of both versions (labels: test.csv)" in lines
    assert (
        "left out: 1 matched events that are not test rows of both (either version was fitted or tuned on them, or "
        "they are not in its data)" in lines
    )
    assert "main on 4 test rows: roc_auc 0.7500, precision 0.5000, recall 0.5000" in lines
    assert "shadow on 4 test rows: roc_auc 1.0000, precision 1.0000, recall 1.0000" in lines
    assert "shadow versions: s (5), s2 (1)" in lines


def test_labels_come_from_the_label_column_by_key(tmp_path: Path) -> None:
    rows = make_rows(8)
    labels = load_labels(write_csv(tmp_path / "l.csv", rows), "customerID", "Churn")
    assert labels == {row["customerID"]: int(row["Churn"] == "Yes") for row in rows}
    rows[3]["Churn"] = "Maybe"
    with pytest.raises(DataError, match="the label column Churn holds 3 distinct value"):
        load_labels(write_csv(tmp_path / "bad.csv", rows), "customerID", "Churn")


def test_only_the_test_rows_of_both_versions_are_judged() -> None:
    """The issue: compare --data judged both models on every labelled event, training rows included, which
    flatters the model that overfits more. Here the shadow is perfect on the rows it was trained on and a coin
    toss on its test rows; judged on everything it looked better than the main model."""
    rng = np.random.default_rng(11)
    size = 400
    truth = rng.integers(0, 2, size)
    main_p = np.clip(truth * 0.3 + rng.random(size) * 0.7, 0, 1)  # as good everywhere
    trained_on = np.zeros(size, dtype=bool)
    trained_on[: size // 2] = True  # the first half: the shadow's training rows
    shadow_p = np.where(trained_on, truth * 0.9 + 0.05, rng.random(size))  # memorised, then guessing
    main = [prediction(f"e{i}", float(p), bool(p >= 0.5)) for i, p in enumerate(main_p)]
    shadow = [prediction(f"e{i}", float(p), bool(p >= 0.5), version="s") for i, p in enumerate(shadow_p)]
    keys = [f"cust-e{i}" for i in range(size)]
    main_test = frozenset(keys[::2])  # the main model was tested on every other customer
    shadow_test = frozenset(k for k, trained in zip(keys, trained_on, strict=True) if not trained)
    labels = Labels({k: int(t) for k, t in zip(keys, truth, strict=True)}, {"m": main_test, "s": shadow_test}, "x")

    c = compare(main, shadow, labels)

    both = np.array([k in main_test and k in shadow_test for k in keys])
    assert c.judged == both.sum() == size // 4 and c.left_out == size - size // 4 and c.unlabelled == 0
    assert c.main_metrics is not None and c.shadow_metrics is not None
    assert c.main_metrics.roc_auc == pytest.approx(roc_auc_score(truth[both], main_p[both]))
    assert c.shadow_metrics.roc_auc == pytest.approx(roc_auc_score(truth[both], shadow_p[both]))
    assert c.shadow_metrics.recall == pytest.approx(recall_score(truth[both], shadow_p[both] >= 0.5))
    # what judging every labelled event said, and what the test rows say
    assert roc_auc_score(truth, shadow_p) > roc_auc_score(truth, main_p)
    assert c.shadow_metrics.roc_auc < c.main_metrics.roc_auc


def test_a_version_without_a_holdout_leaves_the_comparison_unjudged() -> None:
    labels = Labels(LABELS, {"m": frozenset(LABELS), "s": frozenset(LABELS)}, HOLDOUT_LABELS)  # no s2
    c = compare(MAIN, SHADOW, labels)
    assert c.unjudged_versions == ("s2",) and c.judged == 0 and c.main_metrics is None
    assert format_comparison(c).splitlines()[-1].startswith("judged: no (s2: no holdout in the store")
    assert compare(MAIN, [p for p in SHADOW if p.model_version != "s2"], labels).unjudged_versions == ()


def test_a_test_row_without_a_label_is_counted_not_judged() -> None:
    labels = Labels({"cust-e1": 1, "cust-e2": 0}, {v: frozenset(LABELS) | {"unlabelled"} for v in "ms"}, "x.csv")
    c = compare(MAIN[:3], SHADOW[:2], labels)  # e1 and e2 matched, labelled
    assert (c.judged, c.unlabelled, c.left_out) == (2, 0, 0)
    c = compare(MAIN, [p for p in SHADOW if p.model_version != "s2"], labels)
    assert (c.matched, c.judged, c.unlabelled, c.left_out) == (4, 2, 2, 0)  # e3 and e7 (unlabelled) have none
    assert "(labels: x.csv; 2 more have no label there)" in format_comparison(c)


def test_the_holdouts_labels_by_key_leave_out_a_key_they_disagree_on() -> None:
    def holdout(version: str, keys: tuple[str, ...], labels: list[int]) -> Holdout:
        return Holdout(version, keys, np.array(labels), np.full(len(keys), 0.5))

    first = holdout("a", ("k1", "k2", "k3"), [1, 0, 1])
    second = holdout("b", ("k2", "k3", "k4"), [0, 0, 1])  # k3: churned in one data set, stayed in the other
    assert holdout_labels([first, second]) == {"k1": 1, "k2": 0, "k4": 1}

"""``churn-model import``: a model made elsewhere, checked on labelled data through the schema, and each
refusal in one line. The example mobile operator (examples/mobile) stands for a telco's own data."""

from __future__ import annotations

import csv
import importlib.util
import json
import pickle
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from churnstream.cli import model as model_cli
from churnstream.contract.events import encode_event, load_contract
from churnstream.errors import EXIT_DATA, EXIT_MODEL_INTEGRITY, DataError, ModelIntegrityError
from churnstream.ml.features import features_frame
from churnstream.ml.importing import import_model
from churnstream.ml.model import load_model
from churnstream.ml.store import ModelStore
from tests.helpers import ROOT

EXAMPLE = ROOT / "examples" / "mobile"
SCHEMA = EXAMPLE / "mobile.schema.json"


def _example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"mobile_{name}", EXAMPLE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


make_data, train_elsewhere = _example("make_data"), _example("train_elsewhere")


def train_in_a_notebook(folder: Path, subscribers: int, trained_on: int, seed: int) -> tuple[Path, Path]:
    """(the pickle, the holdout CSV): the example notebook's pipeline fitted on the first ``trained_on``
    made-up subscribers; the rest are the holdout it never saw."""
    rows = make_data.subscribers(subscribers, seed=seed)
    train_csv = make_data.write(folder / "train.csv", rows[:trained_on])
    holdout = make_data.write(folder / "holdout.csv", rows[trained_on:])
    pickle_path = folder / "gb.pkl"
    assert train_elsewhere.main(["--data", str(train_csv), "--out", str(pickle_path)]) == 0
    return pickle_path, holdout


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    """(the pickle, the holdout CSV, the pipeline): trained on other rows, by scikit-learn alone."""
    pickle_path, holdout = train_in_a_notebook(tmp_path_factory.mktemp("mobile"), 1600, 1000, seed=3)
    return pickle_path, holdout, joblib.load(pickle_path)


def test_an_imported_pipeline_scores_as_it_does_offline_and_carries_its_card(
    trained: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    pickle_path, holdout, pipeline = trained
    contract = load_contract(SCHEMA)
    imported = import_model(pickle_path, contract, holdout, "churned", name="mobile-gb")
    card = imported.card
    assert imported.version.startswith("mobile-gb-") and card["model_kind"] == "imported"
    assert card["key_field"] == "subscriber_id" and card["features"] == list(contract.feature_names)
    assert card["label"] == {"column": "churned", "positive": "1", "negative": "0"}
    assert (
        card["metrics"]["validation_rows"] + card["metrics"]["test_rows"] == 600 and card["metrics"]["train_rows"] == 0
    )
    assert card["estimator"] == "Pipeline(ColumnTransformer, HistGradientBoostingClassifier)"
    assert imported.model_bytes == pickle_path.read_bytes()  # the store keeps the user's file as it is
    store = ModelStore(tmp_path / "models")
    store.add(imported.model_bytes, card)
    model = load_model(*store.paths(imported.version))
    assert model.linear is None  # not the project's own kind: its own predict_proba scores it
    offline_frame = pd.read_csv(holdout)  # what the notebook does
    offline = pipeline.predict_proba(offline_frame[list(contract.feature_names)])[:, 1]
    with holdout.open(newline="") as handle:  # each row as the producer sends it and the consumer reads it
        rows = [
            contract.decode(encode_event(contract.event_from_row(row, "e", "2026-01-01T00:00:00Z"))).features
            for row in csv.DictReader(handle)
        ]
    np.testing.assert_allclose(model.predict_proba(rows), offline, rtol=0, atol=1e-9)


def test_a_given_threshold_is_kept_with_its_validation_figures(trained: tuple[Path, Path, Any]) -> None:
    pickle_path, holdout, _ = trained
    card = import_model(pickle_path, load_contract(SCHEMA), holdout, "churned", threshold=0.3).card
    assert card["threshold"] == 0.3 and card["threshold_rule"]["rule"] == "given"
    assert 0 <= card["validation"]["precision"] <= 1 and 0 <= card["validation"]["recall"] <= 1


class _Constant:
    """An estimator whose probabilities leave [0, 1] (module level: it must pickle)."""

    classes_ = np.array([0, 1])

    def predict_proba(self, frame: Any) -> np.ndarray:
        return np.column_stack([np.full(len(frame), -0.5), np.full(len(frame), 1.5)])


def _refusal(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    code = model_cli.main(["-q", *args])
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("Error:")]
    return code, errors


def test_each_refusal_is_one_line_with_its_exit_code(
    trained: tuple[Path, Path, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pickle_path, holdout, pipeline = trained
    base = ["--store", str(tmp_path / "models"), "import"]
    data = ["--schema", str(SCHEMA), "--data", str(holdout), "--label", "churned"]

    truncated = tmp_path / "truncated.pkl"
    truncated.write_bytes(pickle_path.read_bytes()[:200])
    code, errors = _refusal([*base, str(truncated), *data], capsys)
    assert code == EXIT_MODEL_INTEGRITY and len(errors) == 1 and "cannot be loaded by this environment" in errors[0]

    leaves = tmp_path / "leaves.pkl"
    leaves.write_bytes(pickle.dumps(_Constant()))
    code, errors = _refusal([*base, str(leaves), *data], capsys)
    assert (
        code == EXIT_MODEL_INTEGRITY and len(errors) == 1 and "predict_proba leaves [0, 1] on 600 row(s)" in errors[0]
    )

    narrow = [{k: v for k, v in row.items() if k != "monthly_fee"} for row in _rows(holdout)]
    code, errors = _refusal(
        [*base, str(pickle_path), *data[:2], "--data", _csv(tmp_path / "n.csv", narrow), *data[4:]], capsys
    )
    assert code == EXIT_DATA and len(errors) == 1 and "lacks the column(s) monthly_fee" in errors[0]

    three = [{**row, "churned": "2"} if index < 5 else row for index, row in enumerate(_rows(holdout))]
    code, errors = _refusal(
        [*base, str(pickle_path), *data[:2], "--data", _csv(tmp_path / "t.csv", three), *data[4:]], capsys
    )
    assert code == EXIT_DATA and len(errors) == 1 and "holds 3 distinct value(s)" in errors[0]

    other = load_contract(ROOT / "schemas" / "event.schema.json")  # a pipeline fitted on other columns
    with pytest.raises(DataError, match="lacks the column"):
        import_model(pickle_path, other, holdout, "churned")
    assert pipeline is not None


def test_a_pickle_from_another_scikit_learn_is_refused_naming_both_versions(
    trained: tuple[Path, Path, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, holdout, pipeline = trained
    older = tmp_path / "older.pkl"
    monkeypatch.setattr("sklearn.base.__version__", "1.0.2")  # what BaseEstimator.__getstate__ records
    joblib.dump(pipeline, older)
    monkeypatch.undo()
    with pytest.raises(ModelIntegrityError, match=r"pickled by scikit-learn 1\.0\.2, this environment has"):
        import_model(older, load_contract(SCHEMA), holdout, "churned")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _csv(path: Path, rows: list[dict[str, str]]) -> str:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return str(path)


def test_an_imported_model_gets_reasons_by_occlusion_in_one_stacked_call_and_can_be_calibrated(
    trained: tuple[Path, Path, Any], tmp_path: Path
) -> None:
    pickle_path, holdout, _ = trained
    contract = load_contract(SCHEMA)
    imported = import_model(pickle_path, contract, holdout, "churned", calibrate="isotonic")
    card = imported.card
    assert card["reasons"]["method"] == "occlusion" and set(card["reasons"]["baselines"]) == set(contract.feature_names)
    assert card["reasons"]["baselines"]["plan"] == "prepaid"  # the most frequent plan in the data
    assert card["calibration"]["method"] == "isotonic"
    store = ModelStore(tmp_path / "models")
    store.add(imported.model_bytes, card, holdout=imported.holdout)
    model = load_model(*store.paths(imported.version))
    rows = [contract.features_of(contract.event_from_row(row, "e", "2026-01-01T00:00:00Z")) for row in _rows(holdout)]
    calls: list[int] = []
    real = model.pipeline.predict_proba
    model.pipeline.predict_proba = lambda frame: (calls.append(len(frame)), real(frame))[1]  # type: ignore[method-assign]
    probabilities = model.predict_proba(rows[:40])
    reasons = model.explain(rows[:40], probabilities)
    assert calls == [40, 40 * len(contract.feature_names)]  # the scores, then one stacked call for the reasons
    assert reasons is not None and len(reasons) == 40 and any(reasons)
    for found in reasons:
        amounts = [reason["contribution"] for reason in found]
        assert amounts == sorted(amounts, reverse=True) and all(amount > 0 for amount in amounts)
    raw = real(features_frame(contract.schema, rows[:40]))[:, 1]
    assert np.all(probabilities == model.calibration(raw))  # the published probability is the calibrated one
    off = import_model(pickle_path, contract, holdout, "churned", reasons=False).card
    assert off["reasons"]["method"] is None


def test_an_estimator_fitted_on_some_columns_in_its_own_order_with_an_optional_one_scores_as_offline(
    tmp_path: Path,
) -> None:
    """A notebook fits on a few columns in its own order (scikit-learn then checks names and order), one of
    them optional in the schema and left empty in some rows: imported, it scores as it does offline."""
    document = json.loads(SCHEMA.read_text())
    document["required"].remove("support_tickets")  # optional: an empty cell leaves it out of the event
    schema_path = tmp_path / "optional.schema.json"
    schema_path.write_text(json.dumps(document))
    contract = load_contract(schema_path)
    rows = make_data.subscribers(900, seed=5)
    for row in rows[::7]:
        row["support_tickets"] = ""
    train_csv, holdout = (
        make_data.write(tmp_path / "t.csv", rows[:500]),
        make_data.write(tmp_path / "h.csv", rows[500:]),
    )
    columns = ["support_tickets", "monthly_fee", "months_active", "roaming"]  # not the schema's order
    frame = pd.read_csv(train_csv)
    estimator = HistGradientBoostingClassifier(max_iter=30, random_state=0).fit(frame[columns], frame["churned"])
    pickle_path = tmp_path / "hgb.pkl"
    joblib.dump(estimator, pickle_path)

    imported = import_model(pickle_path, contract, holdout, "churned")
    store = ModelStore(tmp_path / "models")
    store.add(imported.model_bytes, imported.card)
    model = load_model(*store.paths(imported.version))
    with holdout.open(newline="") as handle:
        events = [contract.event_from_row(row, "e", "2026-01-01T00:00:00Z") for row in csv.DictReader(handle)]
    assert sum("support_tickets" not in event for event in events) >= 50  # left out, not null
    offline = estimator.predict_proba(pd.read_csv(holdout)[columns])[:, 1]
    decoded = [contract.decode(encode_event(event)).features for event in events]  # the bytes on the topic
    np.testing.assert_allclose(model.predict_proba(decoded), offline, atol=1e-9)

    other = HistGradientBoostingClassifier(max_iter=5).fit(
        frame[columns].rename(columns={"roaming": "roams"}), frame["churned"]
    )
    joblib.dump(other, pickle_path)
    with pytest.raises(ModelIntegrityError, match=r"fitted on column\(s\) that are not features of the schema: roams;"):
        import_model(pickle_path, contract, holdout, "churned")

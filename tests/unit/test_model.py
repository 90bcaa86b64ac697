from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from churnstream.contract.events import parse_features
from churnstream.contract.schema import CATEGORICAL_NAMES, FEATURES, Categorical
from churnstream.errors import ModelIntegrityError, ModelMissing
from churnstream.ml.features import TelcoFeatureEncoder, sklearn_reference_preprocessing
from churnstream.ml.model import features_frame, load_model, verify_model
from churnstream.ml.train import load_training_frame, train
from churnstream.settings import DEFAULT_MODEL_PATH
from tests.helpers import make_rows, write_csv

CARD = DEFAULT_MODEL_PATH.parent / "model_card.json"


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the trained model and card, safe to damage."""
    if not DEFAULT_MODEL_PATH.is_file():
        pytest.fail("no trained model: run 'make model' (make test does)")
    target = tmp_path / "sklearn_pipeline.pkl"
    shutil.copy(DEFAULT_MODEL_PATH, target)
    shutil.copy(CARD, tmp_path / "model_card.json")
    return target


def test_the_shipped_model_meets_its_goal_and_describes_itself(model_copy: Path) -> None:
    model = load_model(model_copy)
    card = model.card
    assert card["metrics"]["roc_auc"] >= 0.84
    assert card["threshold"] == 0.5
    assert card["categories"] == {f.name: list(f.allowed) for f in FEATURES if isinstance(f, Categorical)}
    assert set(card["categories"]) == set(CATEGORICAL_NAMES)
    assert card["training_data"]["rows"] == 7043
    assert model.version.startswith("logreg-")


def test_predict_proba_matches_the_pipeline_row_by_row(model_copy: Path) -> None:
    model = load_model(model_copy)
    rows = [parse_features(row) for row in make_rows(20)]
    batch = model.predict_proba(rows)
    single = [model.pipeline.predict_proba(features_frame([row]))[0, 1] for row in rows]
    np.testing.assert_allclose(batch, single, rtol=0, atol=1e-12)
    assert ((batch >= 0) & (batch <= 1)).all()


def test_a_missing_model_says_how_to_train_it(tmp_path: Path) -> None:
    with pytest.raises(ModelMissing, match="run 'make model'"):
        load_model(tmp_path / "absent.pkl")


def test_a_file_altered_by_one_byte_is_refused_before_unpickling(model_copy: Path, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    model_copy.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ModelIntegrityError, match="refusing to load it"):
        load_model(model_copy)
    assert not marker.exists()

    payload = bytearray((DEFAULT_MODEL_PATH).read_bytes())
    payload[len(payload) // 2] ^= 0x01
    model_copy.write_bytes(bytes(payload))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_model(model_copy, model_copy.parent / "model_card.json")


def test_another_scikit_learn_version_is_refused_clearly(model_copy: Path) -> None:
    card_path = model_copy.parent / "model_card.json"
    card = json.loads(card_path.read_text())
    card["sklearn_version"] = "0.24.2"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match=r"trained with scikit-learn 0\.24\.2 but this environment has"):
        load_model(model_copy)


def _edit_card(model_copy: Path, **changes: object) -> None:
    card_path = model_copy.parent / "model_card.json"
    card = json.loads(card_path.read_text())
    card.update(changes)
    card_path.write_text(json.dumps(card))


@pytest.mark.parametrize("threshold", [0, 1, 1.5, -0.2, "0.5", None, True])
def test_a_threshold_that_is_not_a_probability_is_refused_at_load(model_copy: Path, threshold: object) -> None:
    """Before: accepted at load, and the first batch failed on it."""
    _edit_card(model_copy, threshold=threshold)
    with pytest.raises(ModelIntegrityError, match="a number between 0 and 1"):
        load_model(model_copy)


def test_canary_rows_are_scored_at_load_and_must_match(model_copy: Path) -> None:
    card = json.loads((model_copy.parent / "model_card.json").read_text())
    assert len(card["canaries"]) == 5 and all(0 < c["probability"] < 1 for c in card["canaries"])
    assert load_model(model_copy).canary_problem() is None
    card["canaries"][2]["probability"] += 0.01
    _edit_card(model_copy, canaries=card["canaries"])
    with pytest.raises(ModelIntegrityError, match="canary row 2 scored"):
        load_model(model_copy)
    _edit_card(model_copy, canaries=[])
    with pytest.raises(ModelIntegrityError, match="no canary rows"):
        load_model(model_copy)


def test_training_is_deterministic(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", make_rows(400))
    cards = []
    for run in ("a", "b"):
        folder = tmp_path / run
        folder.mkdir()
        cards.append(train(data, folder / "m.pkl", folder / "model_card.json", verify_checksum=False))
    assert cards[0]["metrics"] == cards[1]["metrics"]
    assert cards[0]["model_sha256"] == cards[1]["model_sha256"]
    assert load_model(tmp_path / "a" / "m.pkl").version == cards[0]["model_version"]


def test_the_fast_encoder_computes_what_scikit_learns_encoders_compute(real_data_path: Path) -> None:
    frame, _ = load_training_frame(real_data_path)
    ours = TelcoFeatureEncoder().fit(frame)
    reference = sklearn_reference_preprocessing().fit(frame)
    np.testing.assert_allclose(ours.transform(frame), reference.transform(frame), rtol=0, atol=1e-12)
    unseen = frame.head(3).copy()
    unseen["Contract"] = "Forever"  # unknown categories encode as all zeros in both
    np.testing.assert_allclose(ours.transform(unseen), reference.transform(unseen), rtol=0, atol=1e-12)
    assert len(ours.get_feature_names_out()) == ours.transform(frame).shape[1]


def test_the_encoder_names_missing_columns() -> None:
    frame = features_frame([parse_features(row) for row in make_rows(5)])
    encoder = TelcoFeatureEncoder().fit(frame)
    with pytest.raises(ValueError, match="missing feature column"):
        encoder.transform(frame.drop(columns=["tenure"]))

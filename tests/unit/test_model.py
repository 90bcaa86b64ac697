from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import shutil
from pathlib import Path

import joblib
import numpy as np
import pytest
import sklearn

from churnstream.errors import ModelIntegrityError, ModelMissing
from churnstream.ml.dataset import DATASET_LABEL, read_labelled
from churnstream.ml.features import SchemaEncoder, encoder_columns, features_frame, sklearn_reference_preprocessing
from churnstream.ml.linear import LinearModel
from churnstream.ml.model import load_model, verify_model
from churnstream.ml.threshold import RULE_MAX_F1, RULE_MIN_COST
from churnstream.ml.train import TrainOptions, labelled_frame, state_digest, train
from tests.helpers import current_card_path, current_model_path, make_rows, telco_contract, telco_features, write_csv


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A private copy of the current model and its card, safe to damage."""
    target = tmp_path / "model.pkl"
    shutil.copy(current_model_path(), target)
    shutil.copy(current_card_path(), tmp_path / "model_card.json")
    return target


def test_the_shipped_model_meets_its_goal_and_describes_itself(model_copy: Path) -> None:
    model = load_model(model_copy)
    card = model.card
    assert card["metrics"]["roc_auc"] >= 0.84
    assert 0 < card["threshold"] < 1  # the rule's choice: tests/unit/test_threshold.py recomputes it
    assert card["threshold_rule"]["rule"] in (RULE_MAX_F1, RULE_MIN_COST)
    assert set(card["training_distribution"]) == set(card["features"])
    assert card["metrics"]["train_rows"] + card["metrics"]["validation_rows"] + card["metrics"]["test_rows"] == 7043
    schema = telco_contract().schema
    assert card["schema"] == schema.document and card["schema_sha256"] == schema.sha256
    assert card["features"] == list(telco_contract().feature_names) and card["key_field"] == "customerID"
    assert card["label"] == {"column": "Churn", "positive": "Yes", "negative": "No"}
    assert card["model_kind"] == "trained"
    assert card["training_data"]["rows"] == 7043
    assert model.version.startswith("logreg-")


def test_predict_proba_matches_the_pipeline_row_by_row(model_copy: Path) -> None:
    model = load_model(model_copy)
    rows = [telco_features(row) for row in make_rows(20)]
    batch = model.predict_proba(rows)
    single = [model.pipeline.predict_proba(features_frame(model.schema, [row]))[0, 1] for row in rows]
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

    payload = bytearray(current_model_path().read_bytes())
    payload[len(payload) // 2] ^= 0x01
    model_copy.write_bytes(bytes(payload))
    with pytest.raises(ModelIntegrityError, match="sha256"):
        verify_model(model_copy, model_copy.parent / "model_card.json")


def test_another_scikit_learn_version_is_refused_clearly(model_copy: Path) -> None:
    card_path = model_copy.parent / "model_card.json"
    card = json.loads(card_path.read_text())
    card["sklearn_version"] = "0.24.2"
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError) as refused:
        load_model(model_copy)
    message = str(refused.value)
    assert f"made with scikit-learn 0.24.2 but this environment has {sklearn.__version__}" in message
    assert "python -m churnstream.train --promote" in message  # the command that retrains it, with its options
    assert len(message.splitlines()) == 1


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


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"features": 5}, "features is 5, not a list of names"),
        ({"features": ["tenure", 3]}, "not a list of names"),
        ({"canaries": {"features": {}}}, "canaries is {'features': {}}, not a list"),
        ({"canaries": [7]}, "canary row 0 is 7, not an object"),
        ({"canaries": [{"features": [], "probability": 0.5}]}, "canary row 0 is"),
        ({"canaries": [{"features": {}, "probability": "0.5"}]}, "canary row 0 has probability '0.5'"),
        ({"canaries": [{"features": {}}]}, "canary row 0 has probability None"),
        ({"model_version": 12}, "model_version is 12, not a non-empty string"),
        ({"model_sha256": None}, "model_sha256 is None"),
        ({"sklearn_version": ["1.9"]}, "sklearn_version is ['1.9']"),
    ],
)
def test_a_card_of_the_wrong_types_is_one_integrity_error(
    model_copy: Path, changes: dict[str, object], message: str
) -> None:
    """Before: a TypeError or KeyError from the middle of a check (exit 1 at start, a crash at hot reload)."""
    _edit_card(model_copy, **changes)
    with pytest.raises(ModelIntegrityError, match="^model card .*: .*" + re.escape(message)) as refused:
        load_model(model_copy)
    assert len(str(refused.value).splitlines()) == 1


def test_a_card_that_is_not_an_object_is_an_integrity_error(model_copy: Path) -> None:
    (model_copy.parent / "model_card.json").write_text("[1, 2]")
    with pytest.raises(ModelIntegrityError, match="is not a JSON object"):
        load_model(model_copy)


def _matching_card(model_copy: Path, payload: bytes) -> None:
    """The model file becomes ``payload``, and its card says so: the hash check passes, unpickling does not."""
    model_copy.write_bytes(payload)
    _edit_card(model_copy, model_sha256=hashlib.sha256(payload).hexdigest())


class _RaisesTypeError:
    def __reduce__(self) -> tuple[object, tuple[int]]:
        return (len, (5,))  # len(5) at unpickling: TypeError


@pytest.mark.parametrize(
    ("payload", "raised"),
    [(b"not a pickle at all", "KeyError"), (pickle.dumps(_RaisesTypeError()), "TypeError")],
)
def test_a_pickle_that_fails_to_load_in_any_way_is_an_integrity_error(
    model_copy: Path, payload: bytes, raised: str
) -> None:
    """Before: only ImportError, AttributeError, EOFError and ValueError were; a KeyError ended the consumer."""
    _matching_card(model_copy, payload)
    with pytest.raises(ModelIntegrityError, match=f"cannot be loaded \\({raised}: "):
        load_model(model_copy)


def test_a_model_file_that_cannot_be_read_is_an_integrity_error(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Permissions cannot be tested by chmod as root: the read itself fails here, as it would."""

    def denied(path: Path) -> str:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr("churnstream.ml.model.sha256_file", denied)
    with pytest.raises(ModelIntegrityError, match=r"cannot be read \(PermissionError: .*Permission denied"):
        load_model(model_copy)


def test_training_is_deterministic_and_the_version_names_the_model_not_the_pickle(tmp_path: Path) -> None:
    """The same data and options give the same version, even after the process loaded another model
    (which changes which equal strings pickle shares, and so a few bytes of the pickle)."""
    data = write_csv(tmp_path / "train.csv", make_rows(400))
    first = train(data, telco_contract(), DATASET_LABEL)
    load_model(current_model_path())
    second = train(data, telco_contract(), DATASET_LABEL)
    assert first.card["metrics"] == second.card["metrics"]
    assert first.version == second.version
    (tmp_path / "m.pkl").write_bytes(first.model_bytes)
    (tmp_path / "model_card.json").write_text(json.dumps(first.card))
    assert load_model(tmp_path / "m.pkl").version == first.version


def test_each_option_gives_another_version(tmp_path: Path) -> None:
    data = write_csv(tmp_path / "train.csv", make_rows(400))
    variants = [TrainOptions(), TrainOptions(regularization=0.05), TrainOptions(class_weight="balanced")]
    variants.append(TrainOptions(cost_ratio=5.0))
    trained = [train(data, telco_contract(), DATASET_LABEL, options=options) for options in variants]
    assert len({t.version for t in trained}) == len(variants)
    # a cost ratio changes the threshold, not the fitted model: the version must differ all the same
    fitted = [state_digest(joblib.load(io.BytesIO(t.model_bytes))).hexdigest() for t in (trained[0], trained[3])]
    assert fitted[0] == fitted[1]
    assert trained[3].card["threshold_rule"] == {"rule": RULE_MIN_COST, "cost_ratio": 5.0}
    assert trained[3].card["training_options"]["cost_ratio"] == 5.0


def test_the_fast_encoder_computes_what_scikit_learns_encoders_compute(real_data_path: Path) -> None:
    schema = telco_contract().schema
    frame, _ = labelled_frame(telco_contract(), real_data_path, DATASET_LABEL)
    ours = SchemaEncoder(encoder_columns(schema)).fit(frame)
    reference = sklearn_reference_preprocessing(schema).fit(frame)
    np.testing.assert_allclose(ours.transform(frame), reference.transform(frame), rtol=0, atol=1e-12)
    unseen = frame.head(3).copy()
    unseen["Contract"] = "Forever"  # unknown categories encode as all zeros in both
    np.testing.assert_allclose(ours.transform(unseen), reference.transform(unseen), rtol=0, atol=1e-12)
    assert len(ours.get_feature_names_out()) == ours.transform(frame).shape[1]


def test_the_encoder_names_missing_columns() -> None:
    frame = features_frame(telco_contract().schema, [telco_features(row) for row in make_rows(5)])
    encoder = SchemaEncoder(encoder_columns(telco_contract().schema)).fit(frame)
    with pytest.raises(ValueError, match="missing feature column"):
        encoder.transform(frame.drop(columns=["tenure"]))


def test_the_linear_fast_path_equals_the_pipeline_on_the_real_data(real_data_path: Path) -> None:
    """The consumer scores the project's own model from tuples (churnstream.ml.linear): the same probabilities
    as the pipeline's predict_proba on the typed frame, to 1e-12, unknown categories and nulls included."""
    model = load_model(current_model_path())
    assert model.linear is not None
    rows = read_labelled(telco_contract(), real_data_path, DATASET_LABEL).rows
    rows += [(*rows[0][:14], "Forever", *rows[0][15:])]  # a category the encoder has never seen
    np.testing.assert_allclose(
        model.linear.predict_proba(rows), model.pipeline.predict_proba(features_frame(model.schema, rows))[:, 1],
        rtol=0, atol=1e-12,
    )  # fmt: skip
    assert LinearModel.of(model.pipeline.named_steps["classifier"]) is None  # not the project's own: no fast path


def test_a_card_of_an_older_release_is_refused_with_what_to_do(model_copy: Path) -> None:
    """A card without its event schema (format 2): the model cannot say what it reads."""
    card_path = model_copy.parent / "model_card.json"
    card = json.loads(card_path.read_text())
    del card["schema"]
    card["card_format"] = 2
    card_path.write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match=r"older release of this project .* run 'make model'"):
        load_model(model_copy)


def test_a_card_whose_schema_was_edited_is_refused(model_copy: Path) -> None:
    _edit_card(model_copy, schema={**telco_contract().schema.document, "title": "edited"})
    with pytest.raises(ModelIntegrityError, match="the card was edited"):
        load_model(model_copy)

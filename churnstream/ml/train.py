"""Train the churn model on any CSV that fits a schema (``churn-train``, ``make model``; CLI: churnstream.cli.train).

A scikit-learn Pipeline with preprocessing inside it (:class:`~churnstream.ml.features.SchemaEncoder`
built from the schema, then LogisticRegression), so the consumer feeds it validated fields. Training
rows are read through the schema (:func:`churnstream.ml.dataset.read_labelled`): the producer's CSV
parsing and the consumer's checks, so a blank cell is handled identically at training and scoring
(Telco's 11 blank ``TotalCharges``: null -> missing -> 0, what a customer in month 0 has paid).

The rows are split three ways, stratified by the label, with a fixed seed (:func:`split_indexes`):
60 % to fit the model, 20 % validation to choose the threshold (churnstream.ml.threshold), 20 %
test for the metrics the card reports, measured at that threshold. :func:`describe` writes the card
for a trained and an imported model alike (churnstream.ml.importing): the schema it carries, the
split's parameters (anyone can rebuild the validation rows and check the threshold), canary rows.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import platform
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from churnstream.contract.events import Contract, utc_now_iso
from churnstream.contract.schema import EventSchema
from churnstream.errors import DataError
from churnstream.files import json_bytes
from churnstream.ml.calibration import Calibration, fit_calibration
from churnstream.ml.dataset import LabelledRows, read_labelled
from churnstream.ml.drift import training_distribution
from churnstream.ml.evaluation import BAND_RULE, LOWEST_BAND, Bands, choose_bands, evaluation
from churnstream.ml.explain import LINEAR
from churnstream.ml.features import SchemaEncoder, encoder_columns, features_frame
from churnstream.ml.model import MODEL_KIND_TRAINED
from churnstream.ml.store import HOLDOUT_FILE, MODEL_FILE, ModelStore
from churnstream.ml.threshold import ThresholdChoice, choose_threshold, fixed_threshold

logger = logging.getLogger(__name__)

RANDOM_STATE = 42
CANARY_ROWS = 5  # test rows kept in the card with their probabilities: ChurnModel.canary_problem
TEST_SIZE = 0.2  # of all rows
VALIDATION_SIZE = 0.2  # of all rows: the threshold is chosen on these
MODEL_FAMILY = "logreg"
# 2: the store's cards (threshold rule, split, training distribution, trained_at);
# 3: the card carries its event schema (and its sha256), the label, and the model's kind;
# 4: and what a retention team reads: calibration, evaluation (Brier, reliability, lift), risk bands,
#    the reasons' method, and the holdout file.
CARD_FORMAT = 4
CLASS_WEIGHTS = ("balanced",)
MIN_ROWS_PER_CLASS = 5
LINEAR_REASONS = {
    "method": LINEAR,
    "about": "exact: coefficient x (value - training mean) in the transformed space, summed back to each "
    "feature; base_logit + every feature's contribution = the model's logit (churnstream.ml.explain)",
}  # fewer and a stratified three-way split cannot put one of each in every part


@dataclass(frozen=True)
class TrainOptions:
    """What a training run may change. Each changes the version name (train's ``version_name``)."""

    regularization: float = 1.0  # LogisticRegression's C: smaller is a simpler model
    class_weight: str | None = None  # "balanced": weigh churners by how rare they are
    cost_ratio: float | None = None  # None: the max-F1 threshold; C: the min-cost one (threshold.py)
    calibrate: str | None = None  # None, "sigmoid" or "isotonic" (churnstream.ml.calibration)

    def as_card(self) -> dict[str, Any]:
        return {
            "C": self.regularization,
            "class_weight": self.class_weight,
            "cost_ratio": self.cost_ratio,
            "calibrate": self.calibrate,
        }


@dataclass(frozen=True)
class TrainedModel:
    model_bytes: bytes
    card: dict[str, Any]
    holdout: dict[str, Any]  # the test rows' keys, labels and probabilities (ModelStore writes holdout.json)

    @property
    def version(self) -> str:
        return str(self.card["model_version"])


@dataclass(frozen=True)
class Split:
    """Row indexes of the three parts of a data set (see the module doc)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


def build_pipeline(schema: EventSchema, options: TrainOptions | None = None) -> Pipeline:
    """Preprocessing inside the pipeline, so the consumer feeds it validated fields."""
    options = options or TrainOptions()
    classifier = LogisticRegression(
        max_iter=2000, C=options.regularization, class_weight=options.class_weight, random_state=RANDOM_STATE
    )
    encoder = SchemaEncoder(columns=encoder_columns(schema), fill_value=0.0)
    return Pipeline([("preprocess", encoder), ("classifier", classifier)])


def split_indexes(
    labels: np.ndarray,
    test_size: float = TEST_SIZE,
    validation_size: float = VALIDATION_SIZE,
    random_state: int = RANDOM_STATE,
) -> Split:
    """The test rows first, then the validation rows from the rest (``validation_size`` is a share of
    all rows), both stratified by the label, with one seed: the same data gives the same split. When the
    two sizes add up to 1 (an import: the model was trained elsewhere) there are no training rows."""
    labels = np.asarray(labels)
    counts = np.bincount(labels, minlength=2)
    if counts.min() < MIN_ROWS_PER_CLASS:
        raise DataError(
            f"the data has {counts[1]} churner(s) and {counts[0]} other row(s); at least {MIN_ROWS_PER_CLASS} of "
            "each are needed to split it into validation and test rows"
        )
    everything = np.arange(labels.size)
    rest, test = train_test_split(everything, test_size=test_size, stratify=labels, random_state=random_state)
    if test_size + validation_size >= 1.0:
        return Split(train=np.empty(0, dtype=int), validation=rest, test=test)
    train, validation = train_test_split(
        rest, test_size=validation_size / (1 - test_size), stratify=labels[rest], random_state=random_state
    )
    return Split(train=train, validation=validation, test=test)


def state_digest(value: Any, digest: Any | None = None) -> Any:
    """A sha256 of an estimator's fitted state: every attribute of every step, arrays byte for byte.

    Not the pickle's bytes: pickle writes a string once and then refers to it when the *same object*
    appears again, so the bytes depend on which equal strings the process happens to share (training
    after loading another model changed 16 bytes of an identical model). This digest does not.
    """
    digest = digest if digest is not None else hashlib.sha256()
    if isinstance(value, np.ndarray):
        digest.update(f"ndarray {value.dtype.str} {value.shape}".encode())
        if value.dtype == object:
            digest.update(repr(value.tolist()).encode())
        else:
            digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"dict {len(value)}".encode())
        for key in sorted(value, key=repr):
            digest.update(repr(key).encode())
            state_digest(value[key], digest)
    elif isinstance(value, list | tuple):
        digest.update(f"{type(value).__name__} {len(value)}".encode())
        for item in value:
            state_digest(item, digest)
    elif hasattr(value, "__dict__") and not isinstance(value, type):
        digest.update(f"object {type(value).__module__}.{type(value).__qualname__}".encode())
        state_digest(vars(value), digest)
    else:
        digest.update(repr(value).encode())
    return digest


def version_name(pipeline: Pipeline, options: TrainOptions, threshold: float, schema: EventSchema) -> str:
    """``logreg-<12 hex>`` of the fitted state, the scikit-learn version, the options, the threshold and
    the schema.

    Two models that differ in any of these get different names (two cost ratios fit the same model
    but decide differently); training the same data with the same options gives the same name, in
    any process, so the store keeps one copy.
    """
    digest = state_digest(pipeline)
    digest.update(
        json.dumps(
            {
                "sklearn": sklearn.__version__,
                "options": options.as_card(),
                "threshold": threshold,
                "schema": schema.sha256,
            }
        ).encode()
    )
    return f"{MODEL_FAMILY}-{digest.hexdigest()[:12]}"


def _plain(value: Any) -> Any:
    """A feature value as JSON holds it: numpy scalars as Python ones, NaN as null."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and np.isnan(value):
        return None
    return value


def sha256_hex(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def pickled(pipeline: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    return buffer.getvalue()


def holdout_metrics(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    """The card's metrics of the test rows at the chosen threshold."""
    predicted = (probabilities >= threshold).astype(int)
    return {
        "roc_auc": round(float(roc_auc_score(labels, probabilities)), 6),
        "accuracy": round(float(accuracy_score(labels, predicted)), 6),
        "precision": round(float(precision_score(labels, predicted, zero_division=0)), 6),
        "recall": round(float(recall_score(labels, predicted, zero_division=0)), 6),
        "f1": round(float(f1_score(labels, predicted, zero_division=0)), 6),
    }


@dataclass(frozen=True)
class Assessment:
    """What the held-out rows decide and measure, after calibration when asked for: the threshold and the
    risk bands (validation rows), the test rows' probabilities (the card's metrics and evaluation)."""

    choice: ThresholdChoice
    bands: Bands
    test_probabilities: np.ndarray
    calibration: Calibration | None = None
    cost_ratio: float | None = None


def assess(
    labels: np.ndarray,
    split: Split,
    validation_raw: np.ndarray,
    test_raw: np.ndarray,
    *,
    calibrate: str | None = None,
    cost_ratio: float | None = None,
    threshold: float | None = None,
) -> Assessment:
    """Calibrate on the validation rows (when asked), then choose the threshold (max F1, min cost, or the one
    given) and the risk bands on the calibrated validation probabilities."""
    calibration = fit_calibration(calibrate, labels[split.validation], validation_raw) if calibrate else None
    validation_p = calibration(validation_raw) if calibration else np.asarray(validation_raw, dtype=float)
    test_p = calibration(test_raw) if calibration else np.asarray(test_raw, dtype=float)
    y = labels[split.validation]
    if threshold is None:
        choice = choose_threshold(y, validation_p, cost_ratio)
    else:
        choice = fixed_threshold(y, validation_p, threshold)
    return Assessment(choice, choose_bands(validation_p), test_p, calibration, cost_ratio)


def describe(
    *,
    pipeline: Any,
    model_bytes: bytes,
    version: str,
    kind: str,
    estimator: str,
    schema: EventSchema,
    data: LabelledRows,
    split: Split,
    frame: pd.DataFrame,
    assessment: Assessment,
    reasons: dict[str, Any],
    sizes: tuple[float, float] = (TEST_SIZE, VALIDATION_SIZE),
    extra: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The card of a model scored on ``data``, and its holdout (the test rows' keys, labels and published
    probabilities: churn-model report draws them, churn-model compare judges on them). The drift
    monitor's reference is the training rows, or all of ``data`` when there are none (an import)."""
    labels = np.asarray(data.labels, dtype=int)
    test = split.test
    choice, test_p = assessment.choice, assessment.test_probabilities
    metrics = {
        **holdout_metrics(labels[test], test_p, choice.threshold),
        "train_rows": int(split.train.size),
        "validation_rows": int(split.validation.size),
        "test_rows": int(test.size),
        "test_churn_rate": round(float(labels[test].mean()), 6),
    }
    canary_index = test[:CANARY_ROWS]
    canary_frame = frame.iloc[canary_index]
    canaries = [
        {"features": {name: _plain(value) for name, value in row.items()}, "probability": float(probability)}
        for row, probability in zip(
            canary_frame.to_dict(orient="records"), pipeline.predict_proba(canary_frame)[:, 1], strict=True
        )
    ]
    holdout = {
        "model_version": version,
        "rows": "the test split of the card's training_data, never used to fit the model nor to choose its threshold",
        "keys": [data.keys[i] for i in test.tolist()],
        "labels": labels[test].tolist(),
        "probabilities": [float(p) for p in test_p],
    }
    card = {
        "card_format": CARD_FORMAT,
        "model_version": version,
        "model_kind": kind,
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "model_file": MODEL_FILE,
        "trained_at": utc_now_iso(),
        "estimator": estimator,
        **(extra or {}),
        "calibration": assessment.calibration.as_card() if assessment.calibration else None,
        "threshold": choice.threshold,
        "threshold_rule": {"rule": choice.rule, "cost_ratio": assessment.cost_ratio},
        "validation": {
            "rows": int(split.validation.size),
            "precision": choice.precision,
            "recall": choice.recall,
            "f1": choice.f1,
            "expected_cost": choice.expected_cost,
        },
        "risk_bands": assessment.bands.as_card(),
        "risk_band_rule": "the validation customers ranked by (calibrated) probability, highest first: "
        + ", ".join(
            f"the {'top' if index == 0 else 'next'} {share - (BAND_RULE[index - 1][1] if index else 0):.0%} {name}"
            for index, (name, share) in enumerate(BAND_RULE)
        )
        + f", the rest {LOWEST_BAND}; a band holds probabilities from its min_probability up",
        "reasons": reasons,
        "schema": schema.document,
        "schema_sha256": schema.sha256,
        "key_field": schema.key_field,
        "features": list(schema.feature_names),
        "label": data.label.as_card(),
        "split": {
            "test_size": sizes[0],
            "validation_size": sizes[1],
            "stratified": True,
            "random_state": RANDOM_STATE,
            "method": "train_test_split(test_size) for test, then train_test_split(validation_size / "
            "(1 - test_size)) of the rest for validation (all of the rest when the sizes add up to 1), both "
            "stratified by the label, same random_state, over the data's rows in file order",
        },
        "metrics": metrics,
        "evaluation": evaluation(labels[test], test_p, choice.threshold),
        "holdout": {"file": HOLDOUT_FILE, "rows": int(test.size), "sha256": sha256_hex(json_bytes(holdout))},
        "training_distribution": training_distribution(schema, frame.iloc[split.train] if split.train.size else frame),
        "canaries": canaries,
        "training_data": {"file": data.path.name, "sha256": data.sha256, "rows": len(labels)},
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
    }
    return card, holdout


def labelled_frame(
    contract: Contract, csv_path: Path, label_column: str, positive: str | None = None
) -> tuple[pd.DataFrame, np.ndarray]:
    """A CSV as the typed frame a pipeline is fitted on, and its 0/1 labels (benchmarks, tests)."""
    data = read_labelled(contract, csv_path, label_column, positive)
    return features_frame(contract.schema, data.rows), np.asarray(data.labels, dtype=int)


def train(
    csv_path: Path,
    contract: Contract,
    label_column: str,
    *,
    positive: str | None = None,
    options: TrainOptions | None = None,
) -> TrainedModel:
    """Fit on the training split; calibrate (when asked), choose the threshold and the risk bands on validation;
    measure on test: the pickle, its card and its holdout."""
    options = options or TrainOptions()
    schema = contract.schema
    data = read_labelled(contract, csv_path, label_column, positive)
    labels = np.asarray(data.labels, dtype=int)
    split = split_indexes(labels)
    frame = features_frame(schema, data.rows)
    try:
        pipeline = build_pipeline(schema, options).fit(frame.iloc[split.train], labels[split.train])
    except ValueError as exc:  # SchemaEncoder: a string feature with too many values to be a category
        raise DataError(f"cannot train on {csv_path}: {exc}") from None
    assessment = assess(
        labels,
        split,
        pipeline.predict_proba(frame.iloc[split.validation])[:, 1],
        pipeline.predict_proba(frame.iloc[split.test])[:, 1],
        calibrate=options.calibrate,
        cost_ratio=options.cost_ratio,
    )
    model_bytes = pickled(pipeline)
    card, holdout = describe(
        pipeline=pipeline,
        model_bytes=model_bytes,
        version=version_name(pipeline, options, assessment.choice.threshold, schema),
        kind=MODEL_KIND_TRAINED,
        estimator="Pipeline(SchemaEncoder(one-hot, impute 0, standardize), LogisticRegression)",
        schema=schema,
        data=data,
        split=split,
        frame=frame,
        assessment=assessment,
        reasons=LINEAR_REASONS,
        extra={"training_options": options.as_card()},
    )
    logger.info("trained %s (threshold %.4f by %s)", card["model_version"], card["threshold"], assessment.choice.rule)
    return TrainedModel(model_bytes=model_bytes, card=card, holdout=holdout)


def train_into(
    store: ModelStore,
    csv_path: Path,
    contract: Contract,
    label_column: str,
    *,
    positive: str | None = None,
    options: TrainOptions | None = None,
) -> TrainedModel:
    """Train and add the result to ``store`` (not promoted: that is the caller's choice)."""
    trained = train(csv_path, contract, label_column, positive=positive, options=options)
    store.add(trained.model_bytes, trained.card, holdout=trained.holdout)
    return trained

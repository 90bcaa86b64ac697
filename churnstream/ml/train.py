"""Train the churn model (``python -m churnstream.train``, ``make model``; the CLI is churnstream.cli.train).

A scikit-learn Pipeline with preprocessing inside it, so the consumer feeds raw fields.
Training rows go through the same :func:`churnstream.events.parse_features` the consumer
uses, so the 11 blank ``TotalCharges`` rows are handled identically at training and scoring
(blank -> missing -> 0, which is what a customer with tenure 0 has paid).

The rows are split three ways, stratified by the label, with a fixed seed (:func:`split_rows`):
60 % to fit the model, 20 % validation to choose the threshold (churnstream.ml.threshold), 20 %
test for the metrics the card reports, which are measured at that threshold. The card records the
split's parameters, so anyone can rebuild the validation rows and check the threshold.
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

from churnstream.contract.events import parse_features, utc_now_iso
from churnstream.contract.schema import FEATURE_NAMES, FEATURES, LABEL_COLUMN, NUMERIC_NAMES, Categorical, Numeric
from churnstream.errors import DataError, InvalidEvent
from churnstream.files import sha256_file
from churnstream.ml.dataset import read_rows, verify_dataset
from churnstream.ml.drift import training_distribution
from churnstream.ml.features import TelcoFeatureEncoder
from churnstream.ml.model import encoder_path, features_frame
from churnstream.ml.store import MODEL_FILE, ModelStore
from churnstream.ml.threshold import choose_threshold

logger = logging.getLogger(__name__)

RANDOM_STATE = 42
CANARY_ROWS = 5  # test rows kept in the card with their probabilities: ChurnModel.canary_problem
TEST_SIZE = 0.2  # of all rows
VALIDATION_SIZE = 0.2  # of all rows: the threshold is chosen on these
MODEL_FAMILY = "logreg"
CARD_FORMAT = 2  # 2: the store's cards (threshold rule, split, training distribution, trained_at)
CLASS_WEIGHTS = ("balanced",)


@dataclass(frozen=True)
class TrainOptions:
    """What a training run may change. Each changes the version name (train's ``version_name``)."""

    regularization: float = 1.0  # LogisticRegression's C: smaller is a simpler model
    class_weight: str | None = None  # "balanced": weigh churners by how rare they are
    cost_ratio: float | None = None  # None: the max-F1 threshold; C: the min-cost one (threshold.py)

    def as_card(self) -> dict[str, Any]:
        return {"C": self.regularization, "class_weight": self.class_weight, "cost_ratio": self.cost_ratio}


@dataclass(frozen=True)
class TrainedModel:
    model_bytes: bytes
    card: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.card["model_version"])


def build_pipeline(options: TrainOptions | None = None) -> Pipeline:
    """Preprocessing inside the pipeline, so the consumer feeds it raw (validated) fields."""
    options = options or TrainOptions()
    classifier = LogisticRegression(
        max_iter=2000, C=options.regularization, class_weight=options.class_weight, random_state=RANDOM_STATE
    )
    return Pipeline([("preprocess", TelcoFeatureEncoder(fill_value=0.0)), ("classifier", classifier)])


def split_rows(
    frame: pd.DataFrame,
    labels: np.ndarray,
    test_size: float = TEST_SIZE,
    validation_size: float = VALIDATION_SIZE,
    random_state: int = RANDOM_STATE,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_validation, x_test, y_train, y_validation, y_test): the test rows first, then the
    validation rows from the rest (``validation_size`` is a share of all rows), both stratified."""
    x_rest, x_test, y_rest, y_test = train_test_split(
        frame, labels, test_size=test_size, stratify=labels, random_state=random_state
    )
    x_train, x_validation, y_train, y_validation = train_test_split(
        x_rest, y_rest, test_size=validation_size / (1 - test_size), stratify=y_rest, random_state=random_state
    )
    return x_train, x_validation, x_test, y_train, y_validation, y_test


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


def version_name(pipeline: Pipeline, options: TrainOptions, threshold: float) -> str:
    """``logreg-<12 hex>`` of the fitted state, the scikit-learn version, the options and the threshold.

    Two models that differ in any of these get different names (two cost ratios fit the same model
    but decide differently); training the same data with the same options gives the same name, in
    any process, so the store keeps one copy.
    """
    digest = state_digest(pipeline)
    digest.update(
        json.dumps({"sklearn": sklearn.__version__, "options": options.as_card(), "threshold": threshold}).encode()
    )
    return f"{MODEL_FAMILY}-{digest.hexdigest()[:12]}"


def load_training_frame(csv_path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    features: list[dict[str, Any]] = []
    labels: list[int] = []
    for line, row in read_rows(csv_path):
        try:
            features.append(parse_features(row))
        except InvalidEvent as exc:
            raise DataError(f"{csv_path}:{line}: {exc.reason}") from None
        label = row.get(LABEL_COLUMN)
        if label not in ("Yes", "No"):
            raise DataError(f"{csv_path}:{line}: {LABEL_COLUMN}={label!r}, expected Yes or No")
        labels.append(1 if label == "Yes" else 0)
    return features_frame(features), np.array(labels, dtype=int)


_WHOLE = {f.name for f in FEATURES if isinstance(f, Numeric) and f.kind is int}


def _plain_row(row: dict[str, Any]) -> dict[str, Any]:
    """A DataFrame row as the validator's features: NaN back to None (a blank TotalCharges), whole numbers as int."""
    plain: dict[str, Any] = {}
    for name, value in row.items():
        if isinstance(value, float) and np.isnan(value):
            plain[name] = None
        else:
            plain[name] = int(value) if name in _WHOLE else value
    return plain


def train(csv_path: Path, options: TrainOptions | None = None, verify_checksum: bool = True) -> TrainedModel:
    """Fit on the training split, choose the threshold on validation, measure on test; the pickle and its card."""
    options = options or TrainOptions()
    data_sha256 = verify_dataset(csv_path) if verify_checksum else sha256_file(csv_path)
    frame, labels = load_training_frame(csv_path)
    x_train, x_validation, x_test, y_train, y_validation, y_test = split_rows(frame, labels)
    pipeline = build_pipeline(options).fit(x_train, y_train)
    choice = choose_threshold(y_validation, pipeline.predict_proba(x_validation)[:, 1], options.cost_ratio)
    probabilities = pipeline.predict_proba(x_test)[:, 1]
    predicted = (probabilities >= choice.threshold).astype(int)
    metrics = {
        "roc_auc": round(float(roc_auc_score(y_test, probabilities)), 6),
        "accuracy": round(float(accuracy_score(y_test, predicted)), 6),
        "precision": round(float(precision_score(y_test, predicted, zero_division=0)), 6),
        "recall": round(float(recall_score(y_test, predicted, zero_division=0)), 6),
        "f1": round(float(f1_score(y_test, predicted, zero_division=0)), 6),
        "train_rows": len(y_train),
        "validation_rows": len(y_validation),
        "test_rows": len(y_test),
        "test_churn_rate": round(float(y_test.mean()), 6),
    }
    canary_frame = x_test.head(CANARY_ROWS)
    canaries = [
        {"features": _plain_row(row), "probability": float(probability)}
        for row, probability in zip(
            canary_frame.to_dict(orient="records"), pipeline.predict_proba(canary_frame)[:, 1], strict=True
        )
    ]
    buffer = io.BytesIO()
    joblib.dump(pipeline, buffer)
    model_bytes = buffer.getvalue()
    model_sha256 = hashlib.sha256(model_bytes).hexdigest()
    card = {
        "card_format": CARD_FORMAT,
        "model_version": version_name(pipeline, options, choice.threshold),
        "model_sha256": model_sha256,
        "model_file": MODEL_FILE,
        "trained_at": utc_now_iso(),
        "estimator": "Pipeline(TelcoFeatureEncoder(one-hot, impute 0, standardize), LogisticRegression)",
        "feature_encoder": encoder_path(),
        "training_options": options.as_card(),
        "threshold": choice.threshold,
        "threshold_rule": {"rule": choice.rule, "cost_ratio": options.cost_ratio},
        "validation": {
            "rows": len(y_validation),
            "precision": choice.precision,
            "recall": choice.recall,
            "f1": choice.f1,
            "expected_cost": choice.expected_cost,
        },
        "features": list(FEATURE_NAMES),
        "categories": {f.name: list(f.allowed) for f in FEATURES if isinstance(f, Categorical)},
        "numeric_features": list(NUMERIC_NAMES),
        "split": {
            "test_size": TEST_SIZE,
            "validation_size": VALIDATION_SIZE,
            "stratified": True,
            "random_state": RANDOM_STATE,
            "method": "train_test_split(test_size) for test, then train_test_split(validation_size / "
            "(1 - test_size)) of the rest for validation, both stratified by the label, same random_state",
        },
        "metrics": metrics,
        "training_distribution": training_distribution(x_train),
        "canaries": canaries,
        "training_data": {"file": csv_path.name, "sha256": data_sha256, "rows": len(labels)},
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
    }
    logger.info("trained %s (threshold %.4f by %s)", card["model_version"], choice.threshold, choice.rule)
    return TrainedModel(model_bytes=model_bytes, card=card)


def train_into(
    store: ModelStore, csv_path: Path, options: TrainOptions | None = None, verify_checksum: bool = True
) -> TrainedModel:
    """Train and add the result to ``store`` (not promoted: that is the caller's choice)."""
    trained = train(csv_path, options, verify_checksum)
    store.add(trained.model_bytes, trained.card)
    return trained

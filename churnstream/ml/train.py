"""Train the churn model (``python -m churnstream.train``, ``make model``; the CLI is churnstream.cli.train).

A scikit-learn Pipeline with preprocessing inside it, so the consumer feeds raw fields.
Training rows go through the same :func:`churnstream.events.parse_features` the consumer
uses, so the 11 blank ``TotalCharges`` rows are handled identically at training and scoring
(blank -> missing -> 0, which is what a customer with tenure 0 has paid).
"""

from __future__ import annotations

import hashlib
import io
import logging
import platform
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

from churnstream.contract.events import parse_features
from churnstream.contract.schema import FEATURE_NAMES, FEATURES, LABEL_COLUMN, NUMERIC_NAMES, Categorical, Numeric
from churnstream.errors import DataError, InvalidEvent
from churnstream.files import json_bytes, sha256_file, write_bytes_atomically
from churnstream.ml.dataset import read_rows, verify_dataset
from churnstream.ml.features import TelcoFeatureEncoder
from churnstream.ml.model import encoder_path, features_frame

logger = logging.getLogger(__name__)

RANDOM_STATE = 42
CANARY_ROWS = 5  # hold-out rows kept in the card with their probabilities: ChurnModel.canary_problem
TEST_SIZE = 0.2
THRESHOLD = 0.5
MODEL_FAMILY = "logreg"


def build_pipeline() -> Pipeline:
    """Preprocessing inside the pipeline, so the consumer feeds it raw (validated) fields."""
    classifier = LogisticRegression(max_iter=2000, C=1.0, random_state=RANDOM_STATE)
    return Pipeline([("preprocess", TelcoFeatureEncoder(fill_value=0.0)), ("classifier", classifier)])


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


def train(csv_path: Path, model_path: Path, card_path: Path, verify_checksum: bool = True) -> dict[str, Any]:
    """Fit on a stratified split, evaluate on the hold-out, save the model and its card."""
    data_sha256 = verify_dataset(csv_path) if verify_checksum else sha256_file(csv_path)
    frame, labels = load_training_frame(csv_path)
    x_train, x_test, y_train, y_test = train_test_split(
        frame, labels, test_size=TEST_SIZE, stratify=labels, random_state=RANDOM_STATE
    )
    pipeline = build_pipeline().fit(x_train, y_train)
    probabilities = pipeline.predict_proba(x_test)[:, 1]
    predicted = (probabilities >= THRESHOLD).astype(int)
    metrics = {
        "roc_auc": round(float(roc_auc_score(y_test, probabilities)), 6),
        "accuracy": round(float(accuracy_score(y_test, predicted)), 6),
        "precision": round(float(precision_score(y_test, predicted, zero_division=0)), 6),
        "recall": round(float(recall_score(y_test, predicted, zero_division=0)), 6),
        "f1": round(float(f1_score(y_test, predicted, zero_division=0)), 6),
        "train_rows": len(y_train),
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
    write_bytes_atomically(model_path, model_bytes)
    card = {
        "model_version": f"{MODEL_FAMILY}-{model_sha256[:12]}",
        "model_sha256": model_sha256,
        "model_file": model_path.name,
        "estimator": "Pipeline(TelcoFeatureEncoder(one-hot, impute 0, standardize), LogisticRegression)",
        "feature_encoder": encoder_path(),
        "threshold": THRESHOLD,
        "features": list(FEATURE_NAMES),
        "categories": {f.name: list(f.allowed) for f in FEATURES if isinstance(f, Categorical)},
        "numeric_features": list(NUMERIC_NAMES),
        "holdout": {"test_size": TEST_SIZE, "stratified": True, "random_state": RANDOM_STATE},
        "metrics": metrics,
        "canaries": canaries,
        "training_data": {"file": csv_path.name, "sha256": data_sha256, "rows": len(labels)},
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
    }
    write_bytes_atomically(card_path, json_bytes(card))
    logger.info("saved %s and %s", model_path, card_path)
    return card

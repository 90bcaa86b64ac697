"""Train the churn model: ``python -m churnstream.train`` (``make model``).

A scikit-learn Pipeline with preprocessing inside it, so the consumer feeds raw fields.
Training rows go through the same :func:`churnstream.events.parse_features` the consumer
uses, so the 11 blank ``TotalCharges`` rows are handled identically at training and scoring
(blank -> missing -> 0, which is what a customer with tenure 0 has paid).
"""

from __future__ import annotations

import json
import logging
import os
import platform
import tempfile
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

from churnstream.cli import add_logging_options, make_parser, run, setup_logging
from churnstream.data import read_rows, sha256_file, verify_dataset
from churnstream.errors import DataError, InvalidEvent, ModelIntegrityError, ModelMissing
from churnstream.events import parse_features
from churnstream.features import TelcoFeatureEncoder
from churnstream.model import features_frame, verify_model
from churnstream.schema import (
    FEATURE_NAMES,
    FEATURES,
    LABEL_COLUMN,
    NUMERIC_NAMES,
    Categorical,
)
from config import load_settings

logger = logging.getLogger("churnstream.train")

RANDOM_STATE = 42
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
    model_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=model_path.parent, prefix=f".{model_path.name}.")
    os.close(fd)
    joblib.dump(pipeline, tmp)
    model_sha256 = sha256_file(Path(tmp))
    Path(tmp).replace(model_path)
    card = {
        "model_version": f"{MODEL_FAMILY}-{model_sha256[:12]}",
        "model_sha256": model_sha256,
        "model_file": model_path.name,
        "estimator": "Pipeline(TelcoFeatureEncoder(one-hot, impute 0, standardize), LogisticRegression)",
        "threshold": THRESHOLD,
        "features": list(FEATURE_NAMES),
        "categories": {f.name: list(f.allowed) for f in FEATURES if isinstance(f, Categorical)},
        "numeric_features": list(NUMERIC_NAMES),
        "holdout": {"test_size": TEST_SIZE, "stratified": True, "random_state": RANDOM_STATE},
        "metrics": metrics,
        "training_data": {"file": csv_path.name, "sha256": data_sha256, "rows": len(labels)},
        "sklearn_version": sklearn.__version__,
        "joblib_version": joblib.__version__,
        "numpy_version": np.__version__,
        "pandas_version": pd.__version__,
        "python_version": platform.python_version(),
    }
    card_path.write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
    logger.info("saved %s and %s", model_path, card_path)
    return card


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m churnstream.train",
        "Train the churn model on the Telco CSV and write models/sklearn_pipeline.pkl and models/model_card.json.",
    )
    parser.add_argument("--data", type=Path, help="training CSV (default: DATA_PATH)")
    parser.add_argument("--model", type=Path, help="where to write the model (default: MODEL_PATH)")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a model that passes its checks exists"
    )
    add_logging_options(parser)
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        settings = load_settings()
        model_path = args.model or settings.model_path
        card_path = model_path.parent / "model_card.json"
        if args.if_missing:
            try:
                card = verify_model(model_path, card_path)
            except (ModelMissing, ModelIntegrityError) as exc:
                logger.info("training, because: %s", exc)
            else:
                print(f"model {card['model_version']} present (ROC-AUC {card['metrics']['roc_auc']:.4f})")
                return 0
        card = train(args.data or settings.data_path, model_path, card_path)
        print(
            f"trained {card['model_version']}: hold-out ROC-AUC {card['metrics']['roc_auc']:.4f}, "
            f"accuracy {card['metrics']['accuracy']:.4f} on {card['metrics']['test_rows']} rows -> {model_path}"
        )
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

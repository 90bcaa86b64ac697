"""Import a model made elsewhere (``churn-model import``): a fitted scikit-learn-compatible estimator, pickled.

The estimator (a ``Pipeline`` with its own preprocessing, gradient boosting, anything whose
``predict_proba`` takes a DataFrame of the schema's feature columns) is checked on the data it is
imported with, read through the schema as the producer and the consumer read events:

* the pickle loads with this environment's scikit-learn, without a version warning (loading across
  versions is unsupported: scikit-learn's model persistence page), and has ``predict_proba``;
* ``predict_proba`` on the data's typed frame (churnstream.ml.features.features_frame) returns one
  row of class probabilities per row, each in [0, 1];
* its churn column is found from the estimator's ``classes_`` and the label's churn value.

Then the card is written as for a trained model (churnstream.ml.train.describe): the data split the
same way (validation for the threshold, max F1 unless ``--threshold``; test for the metrics), canary
rows, the schema. The metrics are only honest if the model never saw these rows: import it with
data it was not trained on (the holdout of your notebook), or read them as an upper bound.

A pickle runs code when it is loaded: import only files you trust (the store then checks its sha256
before every load, as for a trained model).
"""

from __future__ import annotations

import hashlib
import json
import logging
import warnings
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import InconsistentVersionWarning

from churnstream.contract.events import Contract
from churnstream.contract.schema import EventSchema
from churnstream.errors import ConfigError, ModelIntegrityError
from churnstream.ml.dataset import Label, read_labelled
from churnstream.ml.explain import OCCLUSION, baselines
from churnstream.ml.features import encoder_columns, estimator_frame, features_frame, unknown_fitted_columns
from churnstream.ml.model import MODEL_KIND_IMPORTED
from churnstream.ml.store import valid_version_name
from churnstream.ml.train import TrainedModel, assess, describe, split_indexes

logger = logging.getLogger(__name__)

DEFAULT_FAMILY = "imported"
# The model was fitted elsewhere: the data is split in halves, validation (the threshold) and test (the metrics).
IMPORT_SIZES = (0.5, 0.5)


def load_estimator(path: Path) -> tuple[Any, bytes]:
    """The unpickled estimator and the file's bytes (the store keeps them as they are), or one line why not."""
    try:
        payload = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"model file {path} cannot be read: {exc.strerror or exc}") from None
    with warnings.catch_warnings():
        warnings.simplefilter("error", InconsistentVersionWarning)
        try:
            estimator = joblib.load(path)
        except InconsistentVersionWarning as exc:
            raise ModelIntegrityError(
                f"{path} was pickled by scikit-learn {exc.original_sklearn_version}, this environment has "
                f"{sklearn.__version__}; loading across versions is unsupported: pickle it with scikit-learn "
                f"{sklearn.__version__} (pip install scikit-learn=={sklearn.__version__} where you trained it)"
            ) from None
        except Exception as exc:  # an unpickling error is anything: a module missing, a truncated file
            raise ModelIntegrityError(
                f"{path} cannot be loaded by this environment (scikit-learn {sklearn.__version__}): "
                f"{type(exc).__name__}: {exc}"
            ) from None
    if not callable(getattr(estimator, "predict_proba", None)):
        raise ModelIntegrityError(f"{path} holds a {type(estimator).__name__}, which has no predict_proba")
    return estimator, payload


def churn_column(estimator: Any, label: Label) -> int:
    """Which column of ``predict_proba`` is churn: the class equal to the label's churn value, or 1 of
    classes (0, 1) or (False, True), as the data's labels were read."""
    classes = list(getattr(estimator, "classes_", []))
    if len(classes) != 2:
        raise ModelIntegrityError(f"the estimator has classes {classes!r}; two are needed (churned or not)")
    by_text = [index for index, value in enumerate(classes) if str(value) == label.positive]
    if len(by_text) == 1:
        return by_text[0]
    if sorted(str(value) for value in classes) in (["0", "1"], ["False", "True"]):
        return [str(value) for value in classes].index("1" if "1" in map(str, classes) else "True")
    raise ModelIntegrityError(
        f"the estimator's classes are {classes!r}, and none is the label's churn value {label.positive!r}: "
        "say which value means churn with --positive"
    )


def estimator_summary(estimator: Any) -> str:
    steps = getattr(estimator, "steps", None)
    if isinstance(steps, list):
        return "Pipeline(" + ", ".join(type(step).__name__ for _, step in steps) + ")"
    return type(estimator).__name__


def import_model(
    pickle_path: Path,
    contract: Contract,
    data_path: Path,
    label_column: str,
    *,
    positive: str | None = None,
    threshold: float | None = None,
    calibrate: str | None = None,
    name: str | None = None,
    reasons: bool = True,
) -> TrainedModel:
    """Check the estimator on the data and write its card (see the module doc); not added to a store here."""
    estimator, payload = load_estimator(pickle_path)
    schema = contract.schema
    data = read_labelled(contract, data_path, label_column, positive)
    labels = np.asarray(data.labels, dtype=int)
    split = split_indexes(labels, test_size=IMPORT_SIZES[0], validation_size=IMPORT_SIZES[1])
    unknown = unknown_fitted_columns(schema, estimator)
    if unknown:
        raise ModelIntegrityError(
            f"{pickle_path}: the estimator was fitted on column(s) that are not features of the schema: "
            f"{', '.join(unknown[:6])}; the stream gives only {', '.join(schema.feature_names)}"
        )
    frame = features_frame(schema, data.rows)  # every feature: the card's training distribution reads them all
    column = churn_column(estimator, data.label)
    try:
        scored = np.asarray(estimator.predict_proba(estimator_frame(schema, data.rows, estimator)), dtype=float)
    except Exception as exc:  # the user's estimator may raise anything on our frame: refused, in one line
        raise ModelIntegrityError(
            f"{pickle_path}: predict_proba failed on {data_path}'s rows ({type(exc).__name__}: {exc}); it must take "
            f"a DataFrame of the schema's columns ({', '.join(schema.feature_names[:6])}, ...)"
        ) from None
    if scored.ndim != 2 or scored.shape != (len(labels), 2):
        raise ModelIntegrityError(
            f"{pickle_path}: predict_proba returned shape {scored.shape} for {len(labels)} rows; (rows, 2) is needed"
        )
    probabilities = scored[:, column]
    outside = ~np.isfinite(probabilities) | (probabilities < 0) | (probabilities > 1)
    if outside.any():
        first = int(np.flatnonzero(outside)[0])
        raise ModelIntegrityError(
            f"{pickle_path}: predict_proba leaves [0, 1] on {int(outside.sum())} row(s) of {data_path}, the first "
            f"{probabilities[first]!r} (row {first + 1})"
        )
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError(f"--threshold {threshold!r}: a number between 0 and 1 (exclusive) is needed")
    assessment = assess(
        labels,
        split,
        probabilities[split.validation],
        probabilities[split.test],
        calibrate=calibrate,
        threshold=threshold,
    )
    family = name or DEFAULT_FAMILY
    digest = hashlib.sha256(payload)
    decided = {"threshold": assessment.choice.threshold, "schema": schema.sha256, "column": column,
               "calibration": assessment.calibration.as_card() if assessment.calibration else None}  # fmt: skip
    digest.update(json.dumps(decided).encode())
    version = f"{family}-{digest.hexdigest()[:12]}"
    if not valid_version_name(version):
        raise ConfigError(f"--name {family!r} gives the version name {version!r}; valid names: A-Z a-z 0-9 . _ -")
    card, holdout = describe(
        pipeline=_ChurnColumn(estimator, column),
        model_bytes=payload,
        version=version,
        kind=MODEL_KIND_IMPORTED,
        estimator=estimator_summary(estimator),
        schema=schema,
        data=data,
        split=split,
        frame=frame,
        assessment=assessment,
        reasons=occlusion_reasons(schema, data.rows) if reasons else NO_REASONS,
        sizes=IMPORT_SIZES,
        extra={"churn_column": column, "imported_from": pickle_path.name},
    )
    logger.info("imported %s as %s (threshold %.4f)", pickle_path, version, assessment.choice.threshold)
    return TrainedModel(model_bytes=payload, card=card, holdout=holdout)


NO_REASONS = {"method": None, "about": "imported with --reasons off: predictions carry reasons: null"}


def occlusion_reasons(schema: EventSchema, rows: list[tuple[Any, ...]]) -> dict[str, Any]:
    """The card's reasons for a model of any kind: occlusion against a typical customer of the import data."""
    kinds = [kind for _, kind, _ in encoder_columns(schema)]
    typical = baselines(rows, kinds)
    return {
        "method": OCCLUSION,
        "about": "model-agnostic: per feature, the batch scored again with the feature at its baseline (the most "
        "frequent value, or the median of a number, in the import data); contribution = logit(p) - logit(p "
        "at the baseline), in one stacked predict_proba call per batch (churnstream.ml.explain)",
        "baselines": dict(zip(schema.feature_names, typical, strict=True)),
    }


class _ChurnColumn:
    """The estimator with its churn column in place 1, for the card's canary rows (describe reads [:, 1]), fed
    the columns it was fitted on."""

    def __init__(self, estimator: Any, column: int) -> None:
        self._estimator, self._column = estimator, column
        names = getattr(estimator, "feature_names_in_", None)
        self._columns = None if names is None else list(names)

    def predict_proba(self, frame: Any) -> np.ndarray:
        given = frame if self._columns is None else frame[self._columns]
        scored = np.asarray(self._estimator.predict_proba(given), dtype=float)
        return np.column_stack([1 - scored[:, self._column], scored[:, self._column]])

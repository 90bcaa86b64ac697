"""The model's preprocessing as one scikit-learn transformer, fast enough for the hot path.

It computes exactly what ``ColumnTransformer([OneHotEncoder(categories=schema,
handle_unknown="ignore"), Pipeline([SimpleImputer(fill_value=0), StandardScaler()])])`` computes
(a test checks it on the real data), but validates the frame once instead of once per column:
scikit-learn's OneHotEncoder re-checks each of the 16 categorical columns on every call, which
cost 11-14 ms per ``predict_proba`` here for 1 to 500 rows (ours: 2-4 ms; benchmarks/bench_model.py),
and dominated the consumer's latency at streaming rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from churnstream.contract.schema import CATEGORICAL_NAMES, FEATURES, NUMERIC_NAMES, Categorical, Numeric


def sklearn_reference_preprocessing() -> Any:
    """What TelcoFeatureEncoder replaces: scikit-learn's own encoders, column by column (a
    ColumnTransformer, for the equivalence test and benchmarks/bench_model.py; imported here so
    the consumer's start-up does not pay for them)."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    categories = [list(f.allowed) for f in FEATURES if isinstance(f, Categorical)]
    numeric = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=0.0)), ("scale", StandardScaler())])
    return ColumnTransformer(
        [
            ("categorical", OneHotEncoder(categories=categories, handle_unknown="ignore"), list(CATEGORICAL_NAMES)),
            ("numeric", numeric, list(NUMERIC_NAMES)),
        ],
        sparse_threshold=0,
    )


class TelcoFeatureEncoder(TransformerMixin, BaseEstimator):
    """One-hot encode the schema's categoricals, impute and standardize its numerics.

    Categories are fixed by the schema, not learned, so an unseen value encodes as all zeros
    (as ``handle_unknown="ignore"`` does; the consumer rejects such events before scoring).
    Missing numbers (``TotalCharges`` is blank for new customers) become ``fill_value``, then
    every numeric column is standardized with the training mean and standard deviation.
    """

    def __init__(self, fill_value: float = 0.0) -> None:
        self.fill_value = fill_value

    def fit(self, X: pd.DataFrame, y: Any = None) -> TelcoFeatureEncoder:
        self.categories_ = {f.name: tuple(f.allowed) for f in FEATURES if isinstance(f, Categorical)}
        self.numeric_ = tuple(f.name for f in FEATURES if isinstance(f, Numeric))
        self._check_columns(X)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        numbers = self._numbers(X)
        self.mean_ = numbers.mean(axis=0)
        scale = numbers.std(axis=0)
        self.scale_ = np.where(scale == 0, 1.0, scale)  # a constant column stays 0, as StandardScaler does
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "mean_")
        self._check_columns(X)
        count = len(X)
        width = sum(len(allowed) for allowed in self.categories_.values()) + len(self.numeric_)
        out = np.zeros((count, width), dtype=float)
        rows = np.arange(count)
        offset = 0
        for name, allowed in self.categories_.items():
            lookup = {value: index for index, value in enumerate(allowed)}
            codes = np.fromiter((lookup.get(v, -1) for v in X[name].to_numpy()), dtype=np.intp, count=count)
            known = codes >= 0
            out[rows[known], offset + codes[known]] = 1.0
            offset += len(allowed)
        out[:, offset:] = (self._numbers(X) - self.mean_) / self.scale_
        return out

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "mean_")
        names = [f"{name}_{value}" for name, allowed in self.categories_.items() for value in allowed]
        return np.asarray(names + list(self.numeric_), dtype=object)

    def _numbers(self, X: pd.DataFrame) -> np.ndarray:
        numbers = X[list(self.numeric_)].to_numpy(dtype=float)
        return np.where(np.isnan(numbers), self.fill_value, numbers)

    def _check_columns(self, X: pd.DataFrame) -> None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} needs a pandas DataFrame, got {type(X).__name__}")
        missing = [name for name in (*self.categories_, *self.numeric_) if name not in X.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")

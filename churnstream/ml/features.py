"""The model's input, from the schema: a typed DataFrame, and the project's own encoder.

* :func:`features_frame`: validated feature rows -> the DataFrame a scikit-learn pipeline expects,
  typed by the schema, as ``pandas.read_csv`` would type the same CSV: strings as objects,
  integers as int64 (float64 with NaN when the schema allows null or the field is optional),
  numbers as float64, booleans as bool; a null is NaN. An imported model gets exactly this frame
  (:func:`estimator_frame`: in the columns it was fitted on), at import and in the stream.
* :class:`SchemaEncoder`: what the project's own model (``churn-train``) preprocesses with. It
  computes exactly what ``ColumnTransformer([OneHotEncoder(categories, handle_unknown="ignore"),
  Pipeline([SimpleImputer(fill_value=0), StandardScaler()])])`` computes (a test checks it on the
  real data), but checks the frame once instead of once per column, and encodes rows straight
  from the validated tuples (:meth:`SchemaEncoder.codes`) without a DataFrame: scikit-learn's
  encoders cost 11-14 ms per call here, the frame about 1 ms even for one row.
"""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from churnstream.contract.schema import BOOLEAN, INTEGER, EventSchema, Field

CATEGORICAL = "categorical"
NUMERIC = "numeric"
# A string feature whose schema lists no enum learns its categories from the training rows; past
# this many distinct values it is an identifier or free text, not a category.
MAX_LEARNED_CATEGORIES = 200

Column = tuple[str, str, tuple[str, ...] | None]  # (name, CATEGORICAL or NUMERIC, the schema's categories)


def encoder_columns(schema: EventSchema) -> tuple[Column, ...]:
    """The encoder's plan for a schema: each feature, categorical (strings) or numeric."""
    return tuple(
        (f.name, CATEGORICAL, f.categories) if f.categorical else (f.name, NUMERIC, None) for f in schema.features
    )


def _frame_column(field: Field, values: Sequence[Any]) -> np.ndarray:
    if field.categorical:
        return np.array([np.nan if v is None else v for v in values], dtype=object)
    if field.kind == BOOLEAN:
        if field.may_be_missing:
            return np.array([np.nan if v is None else v for v in values], dtype=object)
        return np.array(values, dtype=bool)
    if field.kind == INTEGER and not field.may_be_missing:
        return np.array(values, dtype=np.int64)
    return np.array(values, dtype=float)  # None -> NaN


def features_frame(schema: EventSchema, rows: Sequence[Sequence[Any]]) -> pd.DataFrame:
    """Validated feature rows (tuples in the schema's order) -> the typed DataFrame (see the module doc)."""
    features = schema.features
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in features]
    return pd.DataFrame(
        {field.name: _frame_column(field, column) for field, column in zip(features, columns, strict=True)},
        columns=[f.name for f in features],
    )


def estimator_frame(schema: EventSchema, rows: Sequence[Sequence[Any]], estimator: Any) -> pd.DataFrame:
    """The typed frame in the columns, and the order, the estimator was fitted on (``feature_names_in_``,
    which scikit-learn checks), or all of the schema's features when it recorded none: a notebook may
    fit on a few of the columns, in its own order."""
    frame = features_frame(schema, rows)
    names = getattr(estimator, "feature_names_in_", None)
    if names is None or (len(names) == len(frame.columns) and all(names == frame.columns)):
        return frame
    return frame[list(names)]


def unknown_fitted_columns(schema: EventSchema, estimator: Any) -> list[str]:
    """Columns the estimator was fitted on that are not features of the schema (it cannot be fed them)."""
    names = getattr(estimator, "feature_names_in_", None)
    features = set(schema.feature_names)
    return [] if names is None else [str(name) for name in names if name not in features]


def sklearn_reference_preprocessing(schema: EventSchema) -> Any:
    """What SchemaEncoder replaces: scikit-learn's own encoders, column by column (a ColumnTransformer,
    for the equivalence test and the benchmarks; imported here so the consumer's start-up does not pay)."""
    from sklearn.compose import ColumnTransformer  # noqa: PLC0415
    from sklearn.impute import SimpleImputer  # noqa: PLC0415
    from sklearn.pipeline import Pipeline  # noqa: PLC0415
    from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: PLC0415

    columns = encoder_columns(schema)
    categorical = [(name, list(categories or ())) for name, kind, categories in columns if kind == CATEGORICAL]
    numeric_names = [name for name, kind, _ in columns if kind == NUMERIC]
    numeric = Pipeline([("impute", SimpleImputer(strategy="constant", fill_value=0.0)), ("scale", StandardScaler())])
    return ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(categories=[c for _, c in categorical], handle_unknown="ignore"),
                [n for n, _ in categorical],
            ),
            ("numeric", numeric, numeric_names),
        ],
        sparse_threshold=0,
    )


class _Codes(dict):
    """A category's index; -1 for anything else (an unseen value, a null, a non-string): looked up in C by
    ``map(codes.__getitem__, column)``, the hot path's one loop over a string feature's values."""

    def __missing__(self, value: Any) -> int:
        return -1


_LOOKUPS: weakref.WeakKeyDictionary[SchemaEncoder, dict[tuple[Any, ...], _Codes]] = weakref.WeakKeyDictionary()


class SchemaEncoder(TransformerMixin, BaseEstimator):
    """One-hot encode the schema's string features, impute and standardize the rest (booleans as 0/1).

    ``columns`` is :func:`encoder_columns` of the schema (plain tuples, so the pickle names no schema
    object). A string feature's categories are the schema's enum, else the training rows' distinct
    values; an unseen value encodes as all zeros (``handle_unknown="ignore"``; the consumer refuses
    values outside an enum before scoring). A missing number becomes ``fill_value``, then every
    numeric column is standardized with the training mean and standard deviation. The output: the
    one-hot blocks in feature order, then the numeric columns.
    """

    def __init__(self, columns: tuple[Column, ...] = (), fill_value: float = 0.0) -> None:
        self.columns = columns
        self.fill_value = fill_value

    def fit(self, X: pd.DataFrame, y: Any = None) -> SchemaEncoder:
        self._check_columns(X)
        categories: dict[str, tuple[Any, ...]] = {}
        for name, kind, listed in self.columns:
            if kind != CATEGORICAL:
                continue
            if listed is not None:
                categories[name] = tuple(listed)
                continue
            seen = sorted({v for v in X[name].tolist() if isinstance(v, str)})
            if len(seen) > MAX_LEARNED_CATEGORIES:
                raise ValueError(
                    f"{name} has {len(seen)} distinct values in the training rows, over {MAX_LEARNED_CATEGORIES}: "
                    "an identifier or free text, not a category; give it an enum in the schema or leave it out"
                )
            categories[name] = tuple(seen)
        self.categories_ = categories
        # Each category's share of the training rows: the one-hot columns' training means (explain.py).
        self.category_shares_ = {
            name: np.array([np.mean([v == c for v in X[name].tolist()]) if len(X) else 0.0 for c in listed])
            for name, listed in categories.items()
        }
        self.numeric_ = tuple(name for name, kind, _ in self.columns if kind == NUMERIC)
        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        self.n_features_in_ = len(self.feature_names_in_)
        numbers = self._numbers(X[list(self.numeric_)].to_numpy(dtype=float))
        self.mean_ = numbers.mean(axis=0) if len(numbers) else np.zeros(len(self.numeric_))
        scale = numbers.std(axis=0) if len(numbers) else np.ones(len(self.numeric_))
        self.scale_ = np.where(scale == 0, 1.0, scale)  # a constant column stays 0, as StandardScaler does
        return self

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "mean_")
        self._check_columns(X)
        codes = [self._codes(self.categories_[name], X[name].tolist()) for name in self.categories_]
        return self._assemble(codes, X[list(self.numeric_)].to_numpy(dtype=float))

    def transform_rows(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """:meth:`transform` of feature tuples in the schema's order, without a DataFrame."""
        check_is_fitted(self, "mean_")
        codes, numbers = self.codes(rows)
        return self._assemble(codes, numbers)

    def codes(self, rows: Sequence[Sequence[Any]]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per categorical feature, each row's category index (-1: unknown or null), and the raw numbers
        (rows x numeric features, NaN for null): the parts a linear model needs, from the tuples."""
        columns = list(zip(*rows, strict=True)) if rows else [() for _ in self.columns]
        codes: list[np.ndarray] = []
        numeric: list[Sequence[Any]] = []
        for (name, kind, _), column in zip(self.columns, columns, strict=True):
            if kind == CATEGORICAL:
                codes.append(self._codes(self.categories_[name], column))
            else:
                numeric.append(column)
        numbers = np.array(numeric, dtype=float).T if numeric else np.empty((len(rows), 0))
        return codes, numbers.reshape(len(rows), len(self.numeric_))

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        check_is_fitted(self, "mean_")
        names = [f"{name}_{value}" for name, allowed in self.categories_.items() for value in allowed]
        return np.asarray(names + list(self.numeric_), dtype=object)

    def standardized(self, numbers: np.ndarray) -> np.ndarray:
        return (self._numbers(numbers) - self.mean_) / self.scale_

    # ------------------------------------------------------------------ internals

    def _codes(self, categories: tuple[Any, ...], values: Sequence[Any]) -> np.ndarray:
        lookups = _LOOKUPS.get(self)
        if lookups is None:
            lookups = _LOOKUPS[self] = {}  # per fitted encoder, outside its state: not pickled, not in its digest
        lookup = lookups.get(categories)
        if lookup is None:
            lookup = lookups[categories] = _Codes({value: index for index, value in enumerate(categories)})
        return np.fromiter(map(lookup.__getitem__, values), dtype=np.intp, count=len(values))

    def _assemble(self, codes: list[np.ndarray], numbers: np.ndarray) -> np.ndarray:
        count = len(numbers)
        widths = [len(c) for c in self.categories_.values()]
        out = np.zeros((count, sum(widths) + len(self.numeric_)), dtype=float)
        rows = np.arange(count)
        offset = 0
        for width, column in zip(widths, codes, strict=True):
            known = column >= 0
            out[rows[known], offset + column[known]] = 1.0
            offset += width
        out[:, offset:] = self.standardized(numbers)
        return out

    def _numbers(self, numbers: np.ndarray) -> np.ndarray:
        return np.where(np.isnan(numbers), self.fill_value, numbers)

    def _check_columns(self, X: pd.DataFrame) -> None:
        if not isinstance(X, pd.DataFrame):
            raise TypeError(f"{type(self).__name__} needs a pandas DataFrame, got {type(X).__name__}")
        missing = [name for name, _, _ in self.columns if name not in X.columns]
        if missing:
            raise ValueError(f"missing feature column(s): {', '.join(missing)}")

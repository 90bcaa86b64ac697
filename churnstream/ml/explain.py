"""Reasons: which features raise this customer's risk, and by how much in log-odds, in the stream.

Two methods, chosen when the model is made and written in its card (``reasons``):

* ``linear`` (the project's own model, exact): each feature's contribution is the sum, over its
  columns in the transformed space, of coefficient x (value - training mean): the one-hot block
  of a string feature, the standardized number of a numeric one (whose training mean is 0). With
  ``base_logit`` = intercept + the coefficients times the training means, base_logit + the sum of
  every feature's contribution = logit(p), exactly (what SHAP's LinearExplainer computes, here from
  the same sums the model is scored with: churnstream.ml.linear).
* ``occlusion`` (any other estimator, model-agnostic): each feature set to its baseline (the most
  frequent value of a string or boolean, the median of a number, in the data the model was
  imported with) for the whole batch, the batch scored again in ONE stacked ``predict_proba`` call
  (rows x features), and the contribution is logit(p) - logit(p with the feature at its baseline):
  what this customer's value adds to the risk against a typical one. Not additive (interactions
  are not split), and it costs one more model call per batch over (features x rows) rows.

A prediction's ``reasons`` are up to three features with a contribution above 0, largest first,
each ``{"feature", "value", "contribution"}`` (the event's value; the contribution rounded to six
decimals). A model calibrated by a sigmoid (churnstream.ml.calibration) scales its log-odds by
``a``, so its contributions are scaled too; an isotonic calibration is not linear in log-odds, and
the contributions stay the model's own (the card says so).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import logit

from churnstream.ml.features import CATEGORICAL
from churnstream.ml.linear import LinearModel, Parts

LINEAR, OCCLUSION = "linear", "occlusion"
MAX_REASONS = 3
_EDGE = 1e-12


@dataclass(frozen=True)
class LinearExplainer:
    """Contributions from the linear model's own parts (churnstream.ml.linear)."""

    linear: LinearModel
    base_logit: float
    block_means: np.ndarray  # per string feature: the sum of its block's coefficient x training share
    categorical_places: np.ndarray  # where each string feature stands in the schema's feature order
    numeric_places: np.ndarray
    scale: float = 1.0  # a sigmoid calibration's a: contributions in calibrated log-odds

    @classmethod
    def of(cls, linear: LinearModel, scale: float = 1.0) -> LinearExplainer:
        encoder = linear.encoder
        shares = encoder.category_shares_
        means = []
        for name, start, end in zip(encoder.categories_, linear.block_starts, linear.block_ends, strict=True):
            means.append(float(np.dot(linear.category_weights[start:end], shares[name])))
        kinds = [kind for _, kind, _ in encoder.columns]
        return cls(
            linear=linear,
            base_logit=linear.intercept + float(np.sum(means)),
            block_means=np.asarray(means, dtype=float),
            categorical_places=np.asarray([i for i, k in enumerate(kinds) if k == CATEGORICAL], dtype=np.intp),
            numeric_places=np.asarray([i for i, k in enumerate(kinds) if k != CATEGORICAL], dtype=np.intp),
            scale=scale,
        )

    def contributions(self, rows: Sequence[Sequence[Any]], parts: Parts | None = None) -> np.ndarray:
        """(rows x features) contributions in log-odds, in the schema's feature order; from ``parts`` when the
        caller scored the rows from them already (ChurnModel does: one encoding serves both)."""
        categorical, numeric = parts if parts is not None else self.linear.parts(rows)
        out = np.empty((len(rows), self.categorical_places.size + self.numeric_places.size))
        out[:, self.categorical_places] = (categorical - self.block_means[:, None]).T
        out[:, self.numeric_places] = numeric
        return out * self.scale if self.scale != 1.0 else out


@dataclass(frozen=True)
class OcclusionExplainer:
    """Contributions of any estimator: each feature at its baseline, one stacked call per batch."""

    score: Callable[[Sequence[Sequence[Any]]], np.ndarray]  # rows -> the model's (uncalibrated) probabilities
    baselines: tuple[Any, ...]  # per feature, in the schema's order

    def contributions(self, rows: Sequence[Sequence[Any]], probabilities: np.ndarray) -> np.ndarray:
        count, features = len(rows), len(self.baselines)
        stacked = [
            (*row[:place], baseline, *row[place + 1 :]) for place, baseline in enumerate(self.baselines) for row in rows
        ]
        occluded = np.asarray(self.score(stacked), dtype=float).reshape(features, count).T
        return _logit(probabilities)[:, None] - _logit(occluded)


def _logit(p: np.ndarray) -> np.ndarray:
    return logit(np.clip(np.asarray(p, dtype=float), _EDGE, 1 - _EDGE))


def baselines(rows: Sequence[Sequence[Any]], kinds: Sequence[str]) -> list[Any]:
    """Per feature: the most frequent value (strings, booleans, and where a value is often null) or the
    median (numbers) of ``rows``: a typical customer, for occlusion."""
    columns = list(zip(*rows, strict=True))
    out: list[Any] = []
    for kind, column in zip(kinds, columns, strict=True):
        present = [v for v in column if v is not None]
        if kind == CATEGORICAL or not present or all(isinstance(v, bool) for v in present):
            counts: dict[Any, int] = {}
            for value in column:
                counts[value] = counts.get(value, 0) + 1
            out.append(max(counts, key=lambda value: counts[value]))
        else:
            median = float(np.median(np.asarray(present, dtype=float)))
            out.append(round(median) if all(isinstance(v, int) for v in present) else median)
    return out


def top_reasons(
    contributions: np.ndarray, rows: Sequence[Sequence[Any]], names: Sequence[str], limit: int = MAX_REASONS
) -> list[list[dict[str, Any]]]:
    """Per row, up to ``limit`` features with a contribution above 0, largest first. One argsort for the
    batch; the loop only builds the reasons (three dicts spelled out: the hot path's costliest part)."""
    if not len(rows):
        return []
    k = min(limit, contributions.shape[1])
    top = np.argsort(-contributions, axis=1, kind="stable")[:, :k]
    values = np.round(np.take_along_axis(contributions, top, axis=1), 6)
    positive = (values > 0).sum(axis=1).tolist()
    out: list[list[dict[str, Any]]] = []
    append = out.append
    if k == 3:
        for row, (i0, i1, i2), (a0, a1, a2), keep in zip(rows, top.tolist(), values.tolist(), positive, strict=True):
            if keep == 3:
                append(
                    [
                        {"feature": names[i0], "value": row[i0], "contribution": a0},
                        {"feature": names[i1], "value": row[i1], "contribution": a1},
                        {"feature": names[i2], "value": row[i2], "contribution": a2},
                    ]
                )
            else:
                reasons = [(i0, a0), (i1, a1)][:keep]
                append([{"feature": names[i], "value": row[i], "contribution": a} for i, a in reasons])
        return out
    for row, places, amounts, keep in zip(rows, top.tolist(), values.tolist(), positive, strict=True):
        append(
            [
                {"feature": names[place], "value": row[place], "contribution": amount}
                for place, amount in zip(places[:keep], amounts[:keep], strict=True)
            ]
        )
    return out

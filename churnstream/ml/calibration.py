"""Calibrated probabilities (``churn-train --calibrate``, ``churn-model import --calibrate``).

A model's probability is calibrated when, of the customers it gives 0.3, about 30 % churn; expected-
value targeting (probability x customer value) needs that. The calibrator is fitted on the
validation split's probabilities and labels, and the card carries it as plain numbers, so the
model's pickle stays what it was (an imported one byte for byte) and anyone can read the mapping:

* ``sigmoid`` (Platt scaling): ``p' = 1 / (1 + exp(-(a * logit(p) + b)))``, ``a`` and ``b`` fitted by
  logistic regression on ``logit(p)``; a monotone map, so the ranking (ROC-AUC, lift) is unchanged,
  and a linear model's reasons scale by ``a``;
* ``isotonic``: a non-decreasing step map, linear between the points scikit-learn's
  ``IsotonicRegression`` keeps (``X_thresholds_``, ``y_thresholds_``), clipped at the ends: exactly
  what its ``predict`` computes. Monotone too, but it may tie customers the model told apart.

The threshold and the risk bands are chosen after calibration, on the calibrated validation
probabilities; the card's evaluation is of the calibrated test probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

SIGMOID, ISOTONIC = "sigmoid", "isotonic"
METHODS = (SIGMOID, ISOTONIC)
_EDGE = 1e-12  # logit(0) and logit(1) are infinite: probabilities are kept this far from the ends


@dataclass(frozen=True)
class Calibration:
    method: str
    parameters: dict[str, Any]

    def __call__(self, probabilities: np.ndarray) -> np.ndarray:
        from scipy.special import expit, logit  # noqa: PLC0415 - the CLIs import this module for its names

        p = np.asarray(probabilities, dtype=float)
        if self.method == SIGMOID:
            return expit(self.parameters["a"] * logit(np.clip(p, _EDGE, 1 - _EDGE)) + self.parameters["b"])
        return np.interp(p, self.parameters["x"], self.parameters["y"])

    @property
    def logit_scale(self) -> float | None:
        """For sigmoid: ``a``, how much a log-odds contribution grows through the calibration; None else."""
        return float(self.parameters["a"]) if self.method == SIGMOID else None

    def as_card(self) -> dict[str, Any]:
        return {"method": self.method, **self.parameters}

    @classmethod
    def from_card(cls, entry: Any) -> Calibration:
        """The card's calibration; ValueError when it is not one of the two, with its numbers."""
        if not isinstance(entry, dict) or entry.get("method") not in METHODS:
            raise ValueError(f"calibration is {entry!r}, not a sigmoid or isotonic map")
        if entry["method"] == SIGMOID:
            a, b = entry.get("a"), entry.get("b")
            if not all(isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v) for v in (a, b)):
                raise ValueError("a sigmoid calibration needs finite numbers a and b")
            return cls(SIGMOID, {"a": float(a), "b": float(b)})
        x, y = entry.get("x"), entry.get("y")
        if (
            not isinstance(x, list)
            or not isinstance(y, list)
            or len(x) != len(y)
            or len(x) < 2
            or x != sorted(x)
            or y != sorted(y)
            or not all(0 <= v <= 1 for v in (*x, *y))
        ):
            raise ValueError("an isotonic calibration needs two equally long, non-decreasing lists x and y in [0, 1]")
        return cls(ISOTONIC, {"x": [float(v) for v in x], "y": [float(v) for v in y]})


def fit_calibration(method: str, labels: np.ndarray, probabilities: np.ndarray) -> Calibration:
    """The calibrator of ``method``, fitted on these labels (0/1) and the model's probabilities."""
    y, p = np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float)
    if method == SIGMOID:
        from scipy.special import logit  # noqa: PLC0415
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415

        score = logit(np.clip(p, _EDGE, 1 - _EDGE)).reshape(-1, 1)
        fitted = LogisticRegression(C=1e6, max_iter=1000).fit(score, y)
        return Calibration(SIGMOID, {"a": float(fitted.coef_[0, 0]), "b": float(fitted.intercept_[0])})
    if method == ISOTONIC:
        from sklearn.isotonic import IsotonicRegression  # noqa: PLC0415

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, y)
        return Calibration(
            ISOTONIC, {"x": [float(v) for v in fitted.X_thresholds_], "y": [float(v) for v in fitted.y_thresholds_]}
        )
    raise ValueError(f"calibration method {method!r}: one of {', '.join(METHODS)}")

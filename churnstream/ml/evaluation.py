"""What a retention team reads off a model, measured on rows it never saw: calibration, lift, risk bands.

Everything here takes the test split's labels (0/1) and churn probabilities, and returns plain JSON
for the card (churnstream.ml.train.describe). Pure numpy; the figures are defined once, here:

* **calibration**: the Brier score (mean squared error of the probabilities) and reliability bins:
  ten equal-width bins of predicted probability, each with its count, mean prediction and observed
  churn rate. A calibrated model's bins lie on the diagonal; expected-value targeting (probability
  x customer value) needs that.
* **lift**: the customers sorted by probability, highest first; for the top 10, 20 and 30 %: the
  share of all churners they hold (cumulative gain) and how many times the base rate their churn
  rate is (lift). Ties at the cut are counted in score order, as a call list would take them.
* **risk bands**: named bands by rank, for working down a call list: the top 10 % of the validation
  rows' probabilities are ``very high``, the next 20 % ``high``, the next 30 % ``medium``, the rest
  ``low`` (:func:`choose_bands`). A band is its lowest probability: a prediction's band is the highest
  whose cut it reaches, so a higher probability never gets a lower band.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

RELIABILITY_BINS = 10
LIFT_AT = (0.1, 0.2, 0.3)
# (name, share of the validation rows ranked at or above the band's cut); the last band takes the rest.
BAND_RULE: tuple[tuple[str, float], ...] = (("very high", 0.1), ("high", 0.3), ("medium", 0.6))
LOWEST_BAND = "low"


def brier_score(labels: np.ndarray, probabilities: np.ndarray) -> float:
    return float(np.mean((np.asarray(probabilities, dtype=float) - np.asarray(labels, dtype=float)) ** 2))


def reliability_bins(labels: np.ndarray, probabilities: np.ndarray, bins: int = RELIABILITY_BINS) -> list[dict]:
    """Equal-width bins of [0, 1] (the last includes 1.0): count, mean predicted, observed churn rate
    (None for an empty bin)."""
    y, p = np.asarray(labels, dtype=float), np.asarray(probabilities, dtype=float)
    index = np.minimum((p * bins).astype(int), bins - 1)
    out = []
    for b in range(bins):
        inside = index == b
        count = int(inside.sum())
        out.append(
            {
                "low": b / bins,
                "high": (b + 1) / bins,
                "count": count,
                "mean_predicted": round(float(p[inside].mean()), 6) if count else None,
                "observed_rate": round(float(y[inside].mean()), 6) if count else None,
            }
        )
    return out


def ranked(labels: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """The labels in the order a call list takes the customers: highest probability first (stable)."""
    order = np.argsort(-np.asarray(probabilities, dtype=float), kind="stable")
    return np.asarray(labels, dtype=float)[order]


def lift_table(labels: np.ndarray, probabilities: np.ndarray, shares: Sequence[float] = LIFT_AT) -> list[dict]:
    """For each share of the customers, highest risk first: its cumulative gain and its lift."""
    in_order = ranked(labels, probabilities)
    churners, total = float(in_order.sum()), in_order.size
    base_rate = churners / total if total else 0.0
    rows = []
    for share in shares:
        taken = max(1, round(share * total))
        caught = float(in_order[:taken].sum())
        rows.append(
            {
                "top": share,
                "customers": taken,
                "churners": int(caught),
                "cumulative_gain": round(caught / churners, 6) if churners else None,
                "lift": round((caught / taken) / base_rate, 6) if base_rate else None,
            }
        )
    return rows


def gains_curve(labels: np.ndarray, probabilities: np.ndarray, points: int = 101) -> dict[str, list[float]]:
    """The cumulative gains curve at ``points`` evenly spaced shares of the customers (for the report)."""
    in_order = ranked(labels, probabilities)
    churners = float(in_order.sum()) or 1.0
    caught = np.concatenate([[0.0], np.cumsum(in_order)]) / churners
    shares = np.linspace(0.0, 1.0, points)
    taken = np.round(shares * in_order.size).astype(int)
    return {"share": [round(float(s), 4) for s in shares], "gain": [round(float(caught[t]), 6) for t in taken]}


@dataclass(frozen=True)
class Bands:
    """Risk bands: names from the highest, and each one's lowest probability (the last is 0)."""

    names: tuple[str, ...]
    cuts: tuple[float, ...]

    def band(self, probability: float) -> str:
        for name, cut in zip(self.names, self.cuts, strict=True):
            if probability >= cut:
                return name
        return self.names[-1]

    def bands_of(self, probabilities: np.ndarray) -> list[str]:
        """Each probability's band, vectorised: the count of cuts it does not reach picks the name."""
        cuts = np.asarray(self.cuts[:-1], dtype=float)  # descending, without the last (0)
        index = (np.asarray(probabilities, dtype=float)[:, None] < cuts[None, :]).sum(axis=1)
        names = self.names
        return [names[i] for i in index.tolist()]

    def as_card(self) -> list[dict[str, Any]]:
        return [{"name": name, "min_probability": cut} for name, cut in zip(self.names, self.cuts, strict=True)]

    @classmethod
    def from_card(cls, entries: Any) -> Bands:
        """The card's bands; ValueError when they are not names with descending cuts ending at 0."""
        if not isinstance(entries, list) or not entries:
            raise ValueError("risk_bands is not a non-empty list")
        names, cuts = [], []
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise ValueError(f"risk band {entry!r} has no name")
            cut = entry.get("min_probability")
            if isinstance(cut, bool) or not isinstance(cut, int | float) or not 0 <= cut <= 1:
                raise ValueError(f"risk band {entry['name']!r} has min_probability {cut!r}")
            names.append(entry["name"])
            cuts.append(float(cut))
        if cuts != sorted(cuts, reverse=True) or cuts[-1] != 0.0:
            raise ValueError("risk bands need descending min_probability values, the last 0")
        return cls(tuple(names), tuple(cuts))


def choose_bands(probabilities: np.ndarray, rule: Sequence[tuple[str, float]] = BAND_RULE) -> Bands:
    """The cuts at the validation probabilities' quantiles of the rule (see the module doc); ties and a
    small data set can make two cuts equal, and then the higher band simply holds no one."""
    p = np.sort(np.asarray(probabilities, dtype=float))[::-1]
    names, cuts = [], []
    for name, share in rule:
        taken = max(1, round(share * p.size))
        names.append(name)
        cuts.append(float(p[taken - 1]))
    names.append(LOWEST_BAND)
    cuts.append(0.0)
    for index in range(1, len(cuts)):  # never above the band before it (equal cuts: the higher wins)
        cuts[index] = min(cuts[index], cuts[index - 1])
    return Bands(tuple(names), tuple(cuts))


def evaluation(labels: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, Any]:
    """The card's ``evaluation`` of the test split: calibration, lift, and precision and recall at the threshold."""
    y, p = np.asarray(labels, dtype=int), np.asarray(probabilities, dtype=float)
    flagged = p >= threshold
    true_positives = int((flagged & (y == 1)).sum())
    return {
        "rows": int(y.size),
        "brier_score": round(brier_score(y, p), 6),
        "reliability": reliability_bins(y, p),
        "lift": lift_table(y, p),
        "at_threshold": {
            "threshold": threshold,
            "flagged": int(flagged.sum()),
            "precision": round(true_positives / flagged.sum(), 6) if flagged.any() else None,
            "recall": round(true_positives / y.sum(), 6) if y.any() else None,
        },
    }

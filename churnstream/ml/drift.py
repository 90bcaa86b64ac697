"""Drift: how far recent events have moved from the data the model was trained on.

Training writes each feature's distribution into the card (:func:`training_distribution`):

* a string feature: its categories (the schema's enum, else the values training saw; null too when the
  schema allows it) and the share of training rows in each;
* a numeric feature (booleans as 0/1): its interior decile edges (the 10th..90th percentiles of the
  non-missing training values, duplicates removed) and the share of rows in each bin,
  ``[edge_i, edge_i+1)``, below the first and from the last edge up; missing values (a blank
  ``TotalCharges``) are a bin of their own, the last one.

The consumer keeps a :class:`DriftMonitor` and calls ``update`` once per batch. It holds the bins of
the last ``window`` events in a ring and their counts per bin, so each batch costs a few numpy
calls, whatever the window. ``psi()`` compares the window with training, per feature, by the
population stability index::

    PSI = sum over bins of (actual - expected) * ln(actual / expected)

where a bin's share is at least ``PSI_EPSILON`` (1e-4): an empty bin on either side would otherwise
make the index infinite. A PSI above ``PSI_WARNING`` (0.2) is the usual sign that a feature's
population has shifted enough to check the model. A category the schema does not know (the
consumer rejects such events before scoring) counts in an extra bin that training had empty.

A card written before training distributions existed makes a monitor that tracks nothing:
``psi()`` returns ``{}``, and the mean probability is still tracked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnstream.contract.schema import EventSchema
from churnstream.errors import ModelIntegrityError

PSI_WARNING = 0.2
PSI_EPSILON = 1e-4
DECILES = tuple(q / 10 for q in range(1, 10))
KIND_CATEGORICAL = "categorical"
KIND_NUMERIC = "numeric"


def training_distribution(schema: EventSchema, frame: pd.DataFrame) -> dict[str, Any]:
    """Each feature's distribution in ``frame`` (the training split), as the card records it. A string
    feature without an enum is described over the values training saw."""
    distribution: dict[str, Any] = {}
    total = len(frame)
    if total == 0:
        raise ValueError("cannot describe the distribution of no rows")
    for feature in schema.features:
        column = frame[feature.name]
        if feature.categorical:
            listed = feature.categories
            categories: list[str | None] = (
                list(listed) if listed is not None else sorted({v for v in column if isinstance(v, str)})
            )
            counts = column.value_counts()
            proportions = [float(counts.get(category, 0)) / total for category in categories]
            if (
                feature.may_be_missing
            ):  # null (or left out) is a value of its own here, or its share would look like drift
                categories.append(None)
                proportions.append(float(column.isna().sum()) / total)
            distribution[feature.name] = {
                "kind": KIND_CATEGORICAL,
                "categories": categories,
                "proportions": proportions,
            }
        else:
            values = column.to_numpy(dtype=float)
            present = values[~np.isnan(values)]
            edges = np.unique(np.quantile(present, DECILES)) if present.size else np.empty(0)
            codes = _numeric_codes(values, edges)
            counts = np.bincount(codes, minlength=edges.size + 2)
            distribution[feature.name] = {
                "kind": KIND_NUMERIC,
                "edges": [float(edge) for edge in edges],
                "proportions": [float(count) / total for count in counts],
            }
    return distribution


def distribution_problem(distribution: Any) -> str | None:
    """None when a card's ``training_distribution`` has the shape DriftMonitor needs, else what is wrong."""
    if not isinstance(distribution, dict):
        return "training_distribution is not an object"
    for name, entry in distribution.items():
        if not isinstance(entry, dict):
            return f"training_distribution[{name!r}] is not an object"
        proportions = entry.get("proportions")
        if not isinstance(proportions, list) or not all(_is_share(p) for p in proportions):
            return f"training_distribution[{name!r}] has no list of proportions between 0 and 1"
        kind = entry.get("kind")
        if kind == KIND_CATEGORICAL:
            categories = entry.get("categories")
            if not isinstance(categories, list) or len(categories) != len(proportions):
                return f"training_distribution[{name!r}] needs one proportion per category"
        elif kind == KIND_NUMERIC:
            edges = entry.get("edges")
            if (
                not isinstance(edges, list)
                or not all(isinstance(e, int | float) and not isinstance(e, bool) and np.isfinite(e) for e in edges)
                or sorted(edges) != edges
                or len(proportions) != len(edges) + 2
            ):
                return f"training_distribution[{name!r}] needs sorted finite edges and len(edges) + 2 proportions"
        else:
            return f"training_distribution[{name!r}] has kind {kind!r}, not categorical or numeric"
    return None


def population_stability(actual: np.ndarray, expected: np.ndarray) -> float:
    """PSI of two distributions over the same bins (each share at least PSI_EPSILON)."""
    a = np.maximum(np.asarray(actual, dtype=float), PSI_EPSILON)
    e = np.maximum(np.asarray(expected, dtype=float), PSI_EPSILON)
    return float(np.sum((a - e) * np.log(a / e)))


def drifting(psi: Mapping[str, float], limit: float = PSI_WARNING) -> list[str]:
    """The features whose PSI passes ``limit``, worst first."""
    return sorted((name for name, value in psi.items() if value > limit), key=lambda name: -psi[name])


@dataclass(frozen=True)
class _Tracked:
    """One feature the monitor bins: its place in a row, where its bins start in the flat count array,
    how to bin it."""

    name: str
    position: int  # in the feature tuples the consumer scores (the card's feature order)
    offset: int
    bins: int
    lookup: dict[Any, int] | None  # categorical: category -> bin (unknown -> the extra last bin)
    edges: np.ndarray | None  # numeric: interior edges (missing -> the last bin)


class DriftMonitor:
    """PSI per feature and the mean predicted probability over the last ``window`` events."""

    def __init__(self, card: Mapping[str, Any], window: int = 2000) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        self.window = window
        self.count = 0  # events in the window
        self._position = 0  # next slot of the ring
        self._probabilities = np.zeros(window, dtype=float)
        distribution = card.get("training_distribution")
        tracked: list[_Tracked] = []
        expected: list[float] = []
        if distribution is not None:
            problem = distribution_problem(distribution)
            if problem is not None:
                raise ModelIntegrityError(f"model {card.get('model_version')}: {problem}")
            for position, name in enumerate(card.get("features") or ()):
                entry = distribution.get(name)
                if entry is None:
                    continue
                if entry["kind"] == KIND_CATEGORICAL:
                    lookup = {category: index for index, category in enumerate(entry["categories"])}
                    shares = [*entry["proportions"], 0.0]  # the extra bin: categories training never saw
                    tracked.append(_Tracked(name, position, len(expected), len(shares), lookup, None))
                else:
                    shares = list(entry["proportions"])
                    edges = np.asarray(entry["edges"], dtype=float)
                    tracked.append(_Tracked(name, position, len(expected), len(shares), None, edges))
                expected.extend(float(share) for share in shares)
        self._tracked = tuple(tracked)
        self._expected = np.asarray(expected, dtype=float)
        self._starts = np.asarray([t.offset for t in tracked], dtype=np.intp)
        self._counts = np.zeros(len(expected), dtype=np.int64)
        self._codes = np.zeros((len(tracked), window), dtype=np.intp)  # flat bin index per feature, per slot

    @property
    def features(self) -> tuple[str, ...]:
        return tuple(t.name for t in self._tracked)

    def update(self, rows: Sequence[Sequence[Any]], probabilities: np.ndarray) -> None:
        """Add a batch: ``rows`` are the validated feature tuples the model scored (the card's feature
        order), with their probabilities. Events beyond the window push the oldest out."""
        scores = np.asarray(probabilities, dtype=float)
        if len(rows) != scores.size:
            raise ValueError(f"{len(rows)} rows but {scores.size} probabilities")
        if not rows:
            return
        if len(rows) > self.window:
            rows, scores = rows[-self.window :], scores[-self.window :]
        size = len(rows)
        slots = (self._position + np.arange(size)) % self.window
        if self._tracked:
            codes = np.empty((len(self._tracked), size), dtype=np.intp)
            for index, tracked in enumerate(self._tracked):
                codes[index] = self._bins(tracked, rows)
            codes += self._starts[:, None]
            # Until the ring is full it fills from slot 0 up, so the slots still live are below count.
            evicted = self._codes[:, slots[slots < self.count]]
            self._counts -= np.bincount(evicted.ravel(), minlength=self._counts.size)
            self._counts += np.bincount(codes.ravel(), minlength=self._counts.size)
            self._codes[:, slots] = codes
        self._probabilities[slots] = scores
        self._position = int((self._position + size) % self.window)
        self.count = min(self.window, self.count + size)

    def psi(self) -> dict[str, float]:
        """PSI of each tracked feature over the window; {} when nothing is tracked or the window is empty."""
        if not self._tracked or self.count == 0:
            return {}
        actual = np.maximum(self._counts / self.count, PSI_EPSILON)
        expected = np.maximum(self._expected, PSI_EPSILON)
        terms = (actual - expected) * np.log(actual / expected)
        sums = np.add.reduceat(terms, self._starts)
        return {tracked.name: float(value) for tracked, value in zip(self._tracked, sums, strict=True)}

    def mean_probability(self) -> float | None:
        """The mean predicted probability over the window; None when it is empty."""
        if self.count == 0:
            return None
        return float(self._probabilities[: self.count].mean())

    @staticmethod
    def _bins(tracked: _Tracked, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        position = tracked.position
        if tracked.lookup is not None:
            lookup, unknown = tracked.lookup, tracked.bins - 1
            return np.fromiter((lookup.get(row[position], unknown) for row in rows), dtype=np.intp, count=len(rows))
        assert tracked.edges is not None
        values = np.array([row[position] for row in rows], dtype=float)  # None -> NaN: missing
        return _numeric_codes(values, tracked.edges)


def _numeric_codes(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin of each value: the count of edges <= it (0..len(edges)); NaN -> len(edges) + 1."""
    codes = np.searchsorted(edges, values, side="right")
    codes[np.isnan(values)] = edges.size + 1
    return codes


def _is_share(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value <= 1

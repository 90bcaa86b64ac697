"""Drift, as the consumer sees it: recent events against the model's training data.

Fed each committed batch's scored events and probabilities (one vectorised update per batch, in
churnstream.ml.drift). The PSI per feature is recomputed at most once a second, exported as
``churn_feature_psi{feature}`` with the window's mean predicted probability, and a feature whose
PSI passes the threshold gets one warning line (again only after it has come back under it). A
swapped model brings its own training distribution: the window starts over.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

logger = logging.getLogger(__name__)

PSI_REFRESH_S = 1.0
# PSI over a handful of events says nothing: 10 events drawn from the training data itself put 16
# features over 0.2. Nothing is warned, exported or summarised before the window holds this many.
MIN_EVENTS = 500


class Monitor(Protocol):
    """What churnstream.ml.drift.DriftMonitor offers."""

    count: int  # events in the window

    def update(self, rows: Sequence[dict[str, Any]], probabilities: np.ndarray) -> None: ...

    def psi(self) -> dict[str, float]: ...

    def mean_probability(self) -> float | None: ...


class DriftSink(Protocol):
    def drift(self, psi: Mapping[str, float], mean_probability: float | None) -> None: ...

    def drift_reset(self) -> None: ...


class DriftWatch:
    def __init__(
        self,
        monitor: Monitor,
        *,
        warn_at: float,
        sink: DriftSink | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.monitor = monitor
        self.warn_at = warn_at
        self.sink = sink
        self._clock = clock
        self._next = clock()
        self._over: set[str] = set()
        self.last_psi: dict[str, float] = {}
        self.last_mean: float | None = None

    def restart(self, monitor: Monitor) -> None:
        """Another model scores from now on: measure against its training data, from an empty window."""
        self.monitor = monitor
        self._over.clear()
        self._next = self._clock()
        self.last_psi, self.last_mean = {}, None
        if self.sink is not None:
            self.sink.drift_reset()  # no gauge left from the previous model's training data

    def batch(self, rows: Sequence[dict[str, Any]], probabilities: Sequence[float]) -> None:
        if rows:
            self.monitor.update(rows, np.asarray(probabilities, dtype=float))
        now = self._clock()
        if now >= self._next:
            self._next = now + PSI_REFRESH_S
            self.refresh()

    def refresh(self) -> dict[str, float]:
        """The PSI per feature now (empty until the window holds MIN_EVENTS events)."""
        if self.monitor.count < MIN_EVENTS:
            return {}
        psi = self.monitor.psi()
        self.last_psi, self.last_mean = psi, self.monitor.mean_probability()
        for feature, value in sorted(psi.items()):
            if value > self.warn_at and feature not in self._over:
                self._over.add(feature)
                logger.warning(
                    "drift: %s has PSI %.3f against the training data (over %.1f): live events no longer look "
                    "like what the model learnt from",
                    feature,
                    value,
                    self.warn_at,
                )
            elif value <= self.warn_at:
                self._over.discard(feature)
        if self.sink is not None:
            self.sink.drift(psi, self.last_mean)
        return psi

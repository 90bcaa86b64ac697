"""The consumer's drift bookkeeping around the pure monitor: when it recomputes, when it warns."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pytest

from churnstream.consumer.drift import MIN_EVENTS, PSI_REFRESH_S, DriftWatch


class Monitor:
    def __init__(self) -> None:
        self.values: dict[str, float] = {}
        self.updates: list[int] = []
        self.computed = 0
        self.count = 0

    def update(self, rows: Sequence[dict[str, Any]], probabilities: np.ndarray) -> None:
        self.updates.append(len(rows))
        self.count = min(self.count + len(rows), 2000)

    def psi(self) -> dict[str, float]:
        self.computed += 1
        return dict(self.values)

    def mean_probability(self) -> float | None:
        return 0.3


class Sink:
    def __init__(self) -> None:
        self.seen: list[tuple[dict[str, float], float | None]] = []

    def drift(self, psi: Mapping[str, float], mean_probability: float | None) -> None:
        self.seen.append((dict(psi), mean_probability))

    def drift_reset(self) -> None:
        self.seen.append(({}, None))


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_psi_is_recomputed_at_most_once_a_second_and_each_crossing_warns_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    monitor, sink, clock = Monitor(), Sink(), Clock()
    watch = DriftWatch(monitor, warn_at=0.2, sink=sink, clock=clock)
    rows = [{"tenure": 1}] * 10
    monitor.count = MIN_EVENTS  # a full enough window (the warm-up is the next test)
    with caplog.at_level(logging.WARNING):
        monitor.values = {"Contract": 0.5, "tenure": 0.01}
        for _ in range(50):  # 50 batches within the same second
            watch.batch(rows, [0.1] * 10)
        assert monitor.updates == [10] * 50 and monitor.computed == 1
        clock.now += PSI_REFRESH_S
        watch.batch(rows, [0.1] * 10)  # still over: no second warning
        monitor.values["Contract"] = 0.1
        clock.now += PSI_REFRESH_S
        watch.batch(rows, [0.1] * 10)
        monitor.values["Contract"] = 0.25  # over again: warned again
        clock.now += PSI_REFRESH_S
        watch.batch(rows, [0.1] * 10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert all(w.startswith("drift: Contract has PSI ") for w in warnings)
    assert sink.seen[-1] == ({"Contract": 0.25, "tenure": 0.01}, 0.3)
    assert watch.last_psi == {"Contract": 0.25, "tenure": 0.01}


def test_nothing_is_said_about_drift_until_the_window_holds_enough_events(caplog: pytest.LogCaptureFixture) -> None:
    monitor, sink, clock = Monitor(), Sink(), Clock()
    monitor.values = {"Contract": 8.0}  # what a window of a few events looks like
    watch = DriftWatch(monitor, warn_at=0.2, sink=sink, clock=clock)
    with caplog.at_level(logging.WARNING):
        for _ in range(MIN_EVENTS // 10 - 1):
            clock.now += PSI_REFRESH_S
            watch.batch([{"a": 1}] * 10, [0.5] * 10)
        assert caplog.records == [] and sink.seen == [] and watch.refresh() == {}
        clock.now += PSI_REFRESH_S
        watch.batch([{"a": 1}] * 10, [0.5] * 10)
    assert len(caplog.records) == 1 and sink.seen[-1] == ({"Contract": 8.0}, 0.3)


def test_a_new_model_restarts_the_window_the_warnings_and_the_gauges() -> None:
    first, second, sink, clock = Monitor(), Monitor(), Sink(), Clock()
    first.count = second.count = MIN_EVENTS
    watch = DriftWatch(first, warn_at=0.2, sink=sink, clock=clock)
    watch.batch([{"a": 1}], [0.5])
    watch.restart(second)
    assert sink.seen[-1] == ({}, None) and watch.last_psi == {}
    watch.batch([{"a": 1}], [0.5])
    assert first.updates == [1] and second.updates == [1]
    assert second.computed == 1  # recomputed at once against the new card

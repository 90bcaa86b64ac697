"""What a consumer run counts: totals, batch-mode windows, stage timings, and the summary it ends with.

Pure bookkeeping: no Kafka and no printing. The loop hands every committed batch to
:meth:`RunStats.record`; the CLI prints the windows and the summary (cli.formatting).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from churnstream.consumer.options import ConsumerOptions
from churnstream.consumer.scoring import BatchResult, StageTimes

logger = logging.getLogger(__name__)


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


@dataclass(slots=True)
class Totals:
    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    probability_sum: float = 0.0
    churned: int = 0
    batches: int = 0

    def add(self, result: BatchResult) -> None:
        self.consumed += result.consumed
        self.scored += result.scored
        self.dead_lettered += len(result.dead_letters)
        self.probability_sum += result.probability_sum
        self.churned += result.churned
        self.batches += 1

    @property
    def mean_churn_probability(self) -> float | None:
        return self.probability_sum / self.scored if self.scored else None

    @property
    def churn_rate(self) -> float | None:
        return self.churned / self.scored if self.scored else None


@dataclass(frozen=True)
class WindowSummary:
    """One batch-mode window: ``window_size`` events, one stdout line."""

    window: int
    events: int
    scored: int
    dead_lettered: int
    mean_churn_probability: float | None
    churn_rate: float | None
    elapsed_s: float
    events_per_sec: float | None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Window:
    index: int
    started: float
    totals: Totals = field(default_factory=Totals)

    def close(self, now: float) -> WindowSummary:
        totals = self.totals
        elapsed = now - self.started
        return WindowSummary(
            window=self.index,
            events=totals.consumed,
            scored=totals.scored,
            dead_lettered=totals.dead_lettered,
            mean_churn_probability=_rounded(totals.mean_churn_probability),
            churn_rate=_rounded(totals.churn_rate),
            elapsed_s=round(elapsed, 3),
            events_per_sec=round(totals.consumed / elapsed, 1) if elapsed > 0 else None,
        )


@dataclass(frozen=True)
class ConsumerSummary:
    """What a run did: printed on stdout, written by ``--summary-json``, read by the harness."""

    mode: str
    guarantee: str
    consumed: int
    scored: int
    dead_lettered: int
    dead_lettered_by_stage: dict[str, int]
    batches: int
    elapsed_s: float
    processing_s: float
    processing_cpu_s: float
    events_per_sec: float
    mean_churn_probability: float | None
    churn_rate: float | None
    transactions_aborted: int
    model_version: str
    group: str
    instance_id: str
    transactional_id: str | None
    stopped_by: str
    stage_seconds: dict[str, float]
    windows: list[WindowSummary]
    # The model's life (issue 16): which versions scored how many events (a promotion mid-run shows
    # two), the versions refused, the shadow model's outputs, drift at the end of the run.
    scored_by_version: dict[str, int] = field(default_factory=dict)
    models_refused: list[str] = field(default_factory=list)
    shadow_model_version: str | None = None
    shadow_scored: int = 0
    shadow_dead_lettered: int = 0
    feature_psi: dict[str, float] = field(default_factory=dict)  # over the drift window, per feature
    window_mean_churn_probability: float | None = None  # over the same window

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConsumerSummary:
        values = dict(data)
        values["windows"] = [WindowSummary(**window) for window in values.get("windows", [])]
        return cls(**values)


class RunStats:
    """Counters, windows and timings of one run, fed one committed batch at a time."""

    def __init__(
        self,
        options: ConsumerOptions,
        on_window: Callable[[WindowSummary], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.on_window = on_window
        self._clock = clock
        self.totals = Totals()
        self.by_stage: Counter[str] = Counter()
        self.by_version: Counter[str] = Counter()
        self.shadow_scored = 0
        self.shadow_dead_lettered = 0
        self.stage_times = StageTimes()
        self.poll_s = 0.0
        self.aborted = 0
        self.windows: list[WindowSummary] = []
        self.window: Window | None = None
        self.windows_clock: float | None = None
        self.started = clock()
        self.first_record_at: float | None = None
        self.last_batch_at: float | None = None
        self.first_record_cpu = self.last_batch_cpu = 0.0  # process CPU seconds, for the benchmark

    @property
    def in_window(self) -> int:
        return self.window.totals.consumed if self.window is not None else 0

    def first_records(self) -> None:
        """The first records arrived: throughput clocks start now, not when we began joining."""
        now = self._clock()
        self.first_record_at = now
        self.first_record_cpu = time.process_time()
        self.windows_clock = now

    def record(self, result: BatchResult) -> None:
        """A batch is committed: count it, and close a full window."""
        now = self._clock()
        self.totals.add(result)
        self.last_batch_at = now
        self.last_batch_cpu = time.process_time()
        for dead in result.dead_letters:
            self.by_stage[dead.stage] += 1
        if result.scored:
            self.by_version[result.model_version] += result.scored
        self.shadow_scored += len(result.shadow_predictions)
        self.shadow_dead_lettered += len(result.shadow_dead_letters)
        if self.options.batch_mode:
            window = self._window(now)
            window.totals.add(result)
            if window.totals.consumed >= self.options.window_size:
                self.close_window()

    def _window(self, now: float) -> Window:
        if self.window is None:
            # A window's clock starts where the previous one stopped, the first one's when the
            # first records arrived: joining the group is not counted against the first window.
            started = self.windows_clock if self.windows_clock is not None else now
            self.window = Window(index=len(self.windows) + 1, started=started)
        return self.window

    def close_window(self) -> None:
        window, self.window = self.window, None
        if window is None or window.totals.consumed == 0:
            return
        now = self._clock()
        self.windows_clock = now
        closed = window.close(now)
        self.windows.append(closed)
        if self.on_window is not None:
            self.on_window(closed)

    def summary(
        self, sink_seconds: Mapping[str, float], *, model_version: str, group: str, instance_id: str,
        transactional_id: str | None, stopped_by: str,
    ) -> ConsumerSummary:  # fmt: skip
        self.close_window()
        totals = self.totals
        processing_s = 0.0
        if self.first_record_at is not None and self.last_batch_at is not None:
            processing_s = self.last_batch_at - self.first_record_at
        stage_seconds = {"poll": self.poll_s, **self.stage_times.as_dict(), **sink_seconds}
        return ConsumerSummary(
            mode=str(self.options.mode),
            guarantee=str(self.options.guarantee),
            consumed=totals.consumed,
            scored=totals.scored,
            dead_lettered=totals.dead_lettered,
            dead_lettered_by_stage=dict(sorted(self.by_stage.items())),
            batches=totals.batches,
            elapsed_s=round(self._clock() - self.started, 3),
            processing_s=round(processing_s, 3),
            processing_cpu_s=round(max(self.last_batch_cpu - self.first_record_cpu, 0.0), 3),
            events_per_sec=round(totals.consumed / processing_s, 1) if processing_s > 0 else 0.0,
            mean_churn_probability=_rounded(totals.mean_churn_probability),
            churn_rate=_rounded(totals.churn_rate),
            transactions_aborted=self.aborted,
            model_version=model_version,
            group=group,
            instance_id=instance_id,
            transactional_id=transactional_id,
            stopped_by=stopped_by,
            stage_seconds={name: round(seconds, 4) for name, seconds in stage_seconds.items()},
            windows=list(self.windows),
            scored_by_version=dict(self.by_version),
            shadow_scored=self.shadow_scored,
            shadow_dead_lettered=self.shadow_dead_lettered,
        )

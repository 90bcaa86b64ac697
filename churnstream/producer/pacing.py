"""Pacing the stream: an absolute rate schedule, and noticing a rate this machine cannot sustain."""

from __future__ import annotations

import math
from dataclasses import dataclass

# Behind schedule by more than this counts as "behind". Far above timer jitter (about 0.1 ms)
# and a GC pause, far below anything a user would call lag.
LAG_TOLERANCE_S = 0.1
# ... and only this long a stretch of "behind" is a ceiling, not a hiccup worth a warning.
SUSTAINED_LAG_S = 1.0


@dataclass(frozen=True)
class RateSchedule:
    """Event ``i`` is due ``i / events_per_sec`` seconds after the start: an absolute schedule.

    Lateness never accumulates (a slow send is caught up by the next burst), unlike
    ``sleep(1/R)``, whose error grows with every event. A run of ``duration_s`` seconds sends
    the events due strictly before its end, ``ceil(R * S)`` of them (R * S when whole), and
    lasts the full ``S`` seconds: the last event's slot ends at ``S``, not when it is sent.
    """

    events_per_sec: float
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if not self.events_per_sec > 0 or not math.isfinite(self.events_per_sec):
            raise ValueError(f"events_per_sec must be a positive number, got {self.events_per_sec!r}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {self.duration_s!r}")

    @property
    def total_events(self) -> int | None:
        if self.duration_s is None:
            return None
        # 1e-9 absorbs float error: 3 events/s for 2 s is 6 events, not 7
        return max(1, math.ceil(self.events_per_sec * self.duration_s - 1e-9))

    def due_time(self, index: int) -> float:
        """Seconds after the start at which event ``index`` (0-based) is due."""
        return index / self.events_per_sec

    def due_count(self, elapsed_s: float) -> int:
        """How many events are due ``elapsed_s`` seconds after the start (event 0 at once)."""
        if elapsed_s < 0:
            return 0
        count = math.floor(elapsed_s * self.events_per_sec + 1e-9) + 1
        total = self.total_events
        return count if total is None else min(count, total)


class PaceMonitor:
    """Notices a run that cannot keep its schedule, and measures the rate it does sustain.

    Behind by more than ``tolerance_s`` for ``sustained_s`` on end is a ceiling, not a hiccup.
    While behind, the loop sends as fast as the client takes events, so the rate over that
    stretch is the most this producer sustains here. The warning, early in the stretch, uses
    the rate the client *took* events at (acknowledgements lag at start-up: the producer id
    and the first batches); :meth:`finish` measures the stretch again by *acknowledged*
    events, to the last acknowledgement, for the summary.
    """

    def __init__(self, tolerance_s: float = LAG_TOLERANCE_S, sustained_s: float = SUSTAINED_LAG_S) -> None:
        self.tolerance_s = tolerance_s
        self.sustained_s = sustained_s
        self.max_lag_s = 0.0
        self.max_sustainable_rate: float | None = None
        self.overloaded = False
        self._behind_since: float | None = None
        self._sent_when_behind = 0
        self._acked_when_behind = 0

    def observe(self, now: float, sent: int, acknowledged: int, lag_s: float) -> bool:
        """Record the lag before a burst. True once: when the run is first found overloaded."""
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if lag_s <= self.tolerance_s:
            self._behind_since = None  # caught up: that stretch was a hiccup, or is over
            return False
        if self._behind_since is None:
            self._behind_since, self._sent_when_behind, self._acked_when_behind = now, sent, acknowledged
            return False
        span = now - self._behind_since
        if span < self.sustained_s:
            return False
        self.max_sustainable_rate = (sent - self._sent_when_behind) / span
        first = not self.overloaded
        self.overloaded = True
        return first

    def finish(self, now: float, acknowledged: int) -> None:
        """At the end of a run still behind: the acknowledged rate over that whole stretch."""
        if self._behind_since is not None and now - self._behind_since >= self.sustained_s:
            self.max_sustainable_rate = (acknowledged - self._acked_when_behind) / (now - self._behind_since)
            self.overloaded = True

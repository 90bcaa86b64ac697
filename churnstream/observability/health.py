"""Liveness and readiness, as a supervisor (Kubernetes, systemd) asks for them.

- live (``/healthz``): the loop has turned within ``liveness_s``. Every wait inside it is bounded
  (consumer.options), so a loop silent past the longest bound plus a margin is stuck for good:
  restart it.
- ready (``/readyz``): the input topic exists (a consumer may wait for it to be created), joined
  the group, partitions assigned, model loaded, and not stalled: the
  loop turned within ``stall_s``, and no assigned partition has records waiting with no committed
  progress for ``stall_s``. Not ready is a signal to look, not to restart.

The loop writes these fields from its thread; the HTTP server reads them from another. Each is a
plain attribute written whole, which Python makes atomic; readers may see a value one turn old.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from churnstream.observability.lag import LagTracker

READINESS_STALL_S = 30.0
LIVENESS_MARGIN_S = 15.0
HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


@dataclass
class Health:
    liveness_s: float
    stall_s: float = READINESS_STALL_S
    clock: Callable[[], float] = time.monotonic
    lag: LagTracker = field(default_factory=LagTracker)
    last_beat: float | None = None
    joined: bool = False
    model_loaded: bool = False
    waiting_for: str | None = None  # the input topic, while the consumer waits for it to be created

    def beat(self, joined: bool) -> None:
        self.last_beat = self.clock()
        self.joined = joined

    def live(self) -> tuple[bool, str]:
        if self.last_beat is None:
            return True, "starting"
        silent = self.clock() - self.last_beat
        if silent > self.liveness_s:
            return False, f"the loop has been silent for {silent:.0f} s (limit {self.liveness_s:.0f} s): stuck"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        now = self.clock()
        if not self.model_loaded:
            return False, "the model is not loaded"
        if self.waiting_for is not None:
            return False, f"waiting for topic {self.waiting_for} to be created"
        if self.last_beat is None or not self.joined:
            return False, "not a member of the group yet"
        if not self.lag.assignment():
            return False, "no partitions assigned"
        if now - self.last_beat > self.stall_s:
            return False, f"the loop has been busy in one batch for {now - self.last_beat:.0f} s"
        stalled = self.lag.stalled(now, self.stall_s)
        if stalled:
            names = ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(stalled))
            return False, f"records waiting and no progress for over {self.stall_s:.0f} s on {names}"
        return True, "ok"

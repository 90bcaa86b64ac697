"""What a long-running loop needs from its process: a stop flag it checks, and a quiet collector."""

from __future__ import annotations

import gc
import threading

GC_GEN0_THRESHOLD = 20_000


def tune_garbage_collector() -> None:
    """Freeze what start-up built and collect young objects less often.

    Call it once a long-running loop has built its long-lived state (imports, model, prepared
    rows). A full collection walks every object alive, and after importing scikit-learn and
    pandas that is a lot: measured 240 ms per 20,000 events in the consumer (12 us an event,
    ~10 % of its time), nearly all of it in generation-2 passes over the imported modules, and
    each pass holds the GIL, so the Kafka client's network thread stalls too (latency spikes).
    ``gc.freeze()`` moves that state out of the collector's sight; a larger generation-0
    threshold suits loops that make and drop batches of short-lived, acyclic objects (freed by
    reference counting anyway).
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


class StopFlag:
    """Set by SIGINT/SIGTERM (cli.common.stop_on_signals); loops check it between batches and stop cleanly."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal_name: str | None = None

    def set(self, signal_name: str = "request") -> None:
        if self.signal_name is None:
            self.signal_name = signal_name
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

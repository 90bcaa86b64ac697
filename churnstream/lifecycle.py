"""What a long-running loop needs from its process: a stop flag it checks, and a quiet collector."""

from __future__ import annotations

import contextlib
import gc
import os
import select
import weakref

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


# A wait longer than this is cut into pieces: select() refuses timeouts near 2**31 ms (seen with
# --events-per-sec 1e-12), and the caller looks at its clock again after each piece anyway.
MAX_WAIT_S = 3600.0


class StopFlag:
    """Set by SIGINT/SIGTERM (cli.common.stop_on_signals); loops check it between batches and stop cleanly.

    Safe to set from a signal handler. Python runs the handler in the main thread between two
    bytecodes, possibly while that thread holds a lock: a ``threading.Event`` here deadlocked the
    streaming producer (``Event.set()`` in the handler waited for the lock ``Event.wait()`` held in
    the pacing loop, for good). So :meth:`set` only assigns an attribute and writes one byte to a
    self-pipe, and :meth:`wait` sleeps in ``select()`` on that pipe, which the byte wakes at once.
    """

    def __init__(self) -> None:
        self.signal_name: str | None = None
        self._set = False
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._finalizer = weakref.finalize(self, _close_pipe, self._read_fd, self._write_fd)

    def set(self, signal_name: str = "request") -> None:
        if self.signal_name is None:
            self.signal_name = signal_name
        self._set = True
        with contextlib.suppress(OSError):  # a full pipe already wakes the waiter; a closed one has none
            os.write(self._write_fd, b"\0")

    def is_set(self) -> bool:
        return self._set

    def wait(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` seconds (at most MAX_WAIT_S), less if the flag is set. True if set."""
        if not self._set:
            select.select([self._read_fd], [], [], min(max(timeout, 0.0), MAX_WAIT_S))
        return self._set


def _close_pipe(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)

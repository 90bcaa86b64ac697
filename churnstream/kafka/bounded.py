"""Calls to the client that wait without a timeout, given one.

kafka-python 3.0.12's ``send_offsets_to_transaction``, ``commit_transaction`` and
``abort_transaction`` wait for the broker for good: a consumer stuck in one holds its partitions
and ignores SIGTERM. :class:`Bounded` runs such a call on a worker thread and gives up after a bound.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from churnstream.errors import PipelineError


class CallStalled(PipelineError):
    """A call to the broker did not return within its bound: stop, rather than hang. Exit 1."""


class Bounded:
    """Runs blocking client calls on one daemon worker thread, and gives up on them after a bound.

    A daemon thread, not a ThreadPoolExecutor: the executor joins its threads at exit, so a call
    stuck for good would keep the process from ever exiting. One thread for the object's life: a
    hand-over costs tens of microseconds, a new thread per call several times that.
    """

    def __init__(self) -> None:
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], list[Any], threading.Event]] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._work, name="bounded-calls", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while True:
            call, outcome, done = self._calls.get()
            try:
                outcome.append((True, call()))
            except BaseException as exc:  # handed to the caller, which re-raises it
                outcome.append((False, exc))
            done.set()

    def __call__(self, call: Callable[[], Any], timeout_s: float, what: str) -> Any:
        outcome: list[Any] = []
        done = threading.Event()
        self._calls.put((call, outcome, done))
        if not done.wait(timeout_s):
            raise CallStalled(
                f"{what} did not return within {timeout_s:.0f} s (is the broker, or the coordinator of this "
                "transaction, reachable?); stopping without committing"
            )
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

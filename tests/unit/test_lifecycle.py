"""The stop flag and the signal handlers: a stop signal always ends a run, however it lands."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from churnstream.lifecycle import MAX_WAIT_S, StopFlag
from tests.helpers import ROOT

# A child that paces like the streaming producer at a very high rate: it spends nearly all its
# time inside StopFlag.wait with tiny timeouts, where a handler that takes a lock deadlocks.
PACING_CHILD = """
import sys
from churnstream.cli.common import stop_on_signals
from churnstream.lifecycle import StopFlag
with stop_on_signals(StopFlag()) as stop:
    print("ready", flush=True)
    while not stop.is_set():
        stop.wait(0)
print("stopped cleanly", flush=True)
"""


@pytest.mark.timeout(120)
def test_a_stop_signal_during_a_pacing_wait_always_ends_the_process() -> None:
    """Before the fix, the handler's Event.set() waited for the lock Event.wait() held: the
    process hung for good, and later signals hung the same way (2 of 2 tries by hand)."""
    for attempt in range(20):
        child = subprocess.Popen(
            [sys.executable, "-c", PACING_CHILD], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        time.sleep(0.05 * (attempt % 5))
        child.send_signal(signal.SIGTERM)
        try:
            out, err = child.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            pytest.fail(f"attempt {attempt}: the process did not stop within 10 s of SIGTERM")
        assert child.returncode == 0, err
        assert out.strip() == "stopped cleanly"


def test_wait_returns_at_once_when_set_and_sleeps_otherwise() -> None:
    stop = StopFlag()
    started = time.monotonic()
    assert stop.wait(0.05) is False
    assert time.monotonic() - started >= 0.045
    stop.set("SIGTERM")
    stop.set("SIGINT")  # the first signal names the stop
    started = time.monotonic()
    assert stop.wait(30) is True and time.monotonic() - started < 0.5
    assert stop.signal_name == "SIGTERM"


def test_a_huge_wait_is_cut_to_a_bound_select_accepts() -> None:
    """``--events-per-sec 1e-12`` asked for a wait of 1e12 s, which overflowed."""
    stop = StopFlag()
    stop.set()
    assert stop.wait(1e12) is True  # no OverflowError
    assert MAX_WAIT_S <= 2**31 / 1000

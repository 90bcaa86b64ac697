"""Every command has --help, and usage errors are not confused with 'broker down'."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnstream.cli import run
from churnstream.errors import EXIT_INTERRUPTED, EXIT_USAGE
from tests.helpers import ROOT

COMMANDS = [
    ["config.py"],
    ["producer.py"],
    ["consumer.py"],
    ["test_pipeline.py"],
    ["-m", "churnstream.replay"],
    ["-m", "benchmarks.bench_producer"],
    ["-m", "benchmarks.bench_consumer"],
    ["-m", "benchmarks.bench_model"],
    ["-m", "churnstream.broker"],
    ["-m", "churnstream.data"],
    ["-m", "churnstream.train"],
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[-1])
def test_every_command_has_help(command: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, *command, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage:")
    assert len(result.stdout.splitlines()) > 3


def test_a_usage_error_exits_64_with_one_error_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "churnstream.broker", "frobnicate"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == EXIT_USAGE
    assert result.stderr.strip().splitlines()[-1].startswith("Error: argument COMMAND: invalid choice")


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--suite", "benchmark", "--duration", "5"], "--duration: not used by --suite"),
        (["--verify-only", "--consumers", "2"], "--consumers: not used by --verify-only"),
        (["--verify-only", "--results-json", str(ROOT / "README.md" / "x.json")], "is not a writable directory"),
        (["--verify-only", "--report", str(ROOT)], "is a directory, not a file"),
    ],
)
def test_test_pipeline_refuses_flags_it_would_ignore_and_unwritable_outputs(args: list[str], named: str) -> None:
    result = subprocess.run(
        [sys.executable, "test_pipeline.py", *args], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == EXIT_USAGE
    assert named in result.stderr.strip().splitlines()[-1]


def test_an_interrupt_outside_the_clean_stop_exits_130_not_0() -> None:
    def body() -> int:
        raise KeyboardInterrupt

    assert run(body) == EXIT_INTERRUPTED


def test_sigterm_runs_the_finally_blocks_of_the_harness_and_a_second_signal_does_not_cut_them() -> None:
    """The harness cleans up its subprocesses in ``finally``: SIGTERM must get there, as Ctrl-C does,
    and a second signal (CI cancellations often send two) must not interrupt the clean-up."""
    code = (
        "import os, signal, sys, time\n"
        "from churnstream.cli import interrupt_once, run\n"
        "def body():\n"
        "    try:\n"
        "        os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); return 0\n"
        "    finally:\n"
        "        os.kill(os.getpid(), signal.SIGINT); os.kill(os.getpid(), signal.SIGTERM); time.sleep(0.2)\n"
        "        print('cleaned up', flush=True)\n"
        "with interrupt_once():\n"
        "    sys.exit(run(body))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.stdout.strip() == "cleaned up"
    assert result.returncode == EXIT_INTERRUPTED

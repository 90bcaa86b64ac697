"""Every command has --help, and usage errors are not confused with 'broker down'."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnstream.errors import EXIT_USAGE
from tests.helpers import ROOT

COMMANDS = [
    ["config.py"],
    ["producer.py"],
    ["consumer.py"],
    ["test_pipeline.py"],
    ["-m", "churnstream.replay"],
    ["-m", "benchmarks.bench_producer"],
    ["-m", "benchmarks.bench_consumer"],
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

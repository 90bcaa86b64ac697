"""The local broker launcher, exercised on a private home and free ports."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from churnstream import localkafka as broker
from churnstream.errors import EXIT_BROKER_TOOLING
from tests.helpers import ROOT


def launcher(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "churnstream.broker", "--home", str(home), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )


@pytest.mark.timeout(300)
def test_up_twice_down_up_keeps_the_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    free = broker.private_layout(home)
    port, controller = free.port, free.controller_port
    ports = ["--port", str(port), "--controller-port", str(controller)]
    try:
        first = launcher(home, "up", *ports)
        assert first.returncode == 0, first.stderr
        assert f"Kafka 4.3.1 is up at localhost:{port}" in first.stdout

        second = launcher(home, "up")  # the home remembers its ports
        assert second.returncode == 0
        assert "already running" in second.stdout

        admin = KafkaAdminClient(bootstrap_servers=f"localhost:{port}", bootstrap_timeout_ms=5000)
        try:
            admin.create_topics([NewTopic("survivor", 2, 1)])
            assert admin._client.check_version()[:2] == (4, 3)
        finally:
            admin.close()
        assert "Kafka version: 4.3.1" in (home / "node-1" / "logs" / "server.log").read_text()

        status = launcher(home, "status")
        assert status.returncode == 0 and "running" in status.stdout

        stopped = launcher(home, "down")
        assert stopped.returncode == 0 and "data kept" in stopped.stdout
        assert launcher(home, "status").returncode == 1

        again = launcher(home, "up")
        assert again.returncode == 0, again.stderr
        admin = KafkaAdminClient(bootstrap_servers=f"localhost:{port}", bootstrap_timeout_ms=5000)
        try:
            assert "survivor" in admin.list_topics()
        finally:
            admin.close()

        tool = launcher(home, "tool", "kafka-topics", "--list")
        assert tool.returncode == 0 and "survivor" in tool.stdout
    finally:
        launcher(home, "down")


def test_a_port_taken_by_something_else_fails_in_one_line(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        controller = broker.private_layout(tmp_path / "unused").controller_port
        start = time.monotonic()
        result = launcher(tmp_path / "home", "up", "--port", str(port), "--controller-port", str(controller))
    assert result.returncode == EXIT_BROKER_TOOLING
    lines = result.stderr.strip().splitlines()
    assert lines == [
        f"Error: port {port} is already in use by another process (not this project's broker in "
        f"{tmp_path / 'home'}); stop that process, or choose other ports with --port/--controller-port"
    ]
    assert time.monotonic() - start < 30

"""The scripts a run starts, as subprocesses: logs in files, stopped by signal, never orphaned."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO

from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.settings import (
    ALL_VARIABLES,
    ENV_CONSUMER_INSTANCE_ID,
    ENV_DOTENV,
    ENV_LOG_FORMAT,
    PROJECT_ROOT,
    Settings,
    log_format,
)

logger = logging.getLogger(__name__)

GROUP_STABLE_TIMEOUT_S = 60.0
CONSUMER = "churnstream.cli.consumer"
PRODUCER = "churnstream.cli.producer"
# The benchmarks' baselines, run from a checkout (the folder is not part of the installed package).
BARE_LOOP = "benchmarks.bare_loop"
SEED_CONSUMER = "benchmarks.seed_consumer"


def child_environment(settings: Settings) -> dict[str, str]:
    """The environment that makes a child process load exactly these settings, and no ``.env``.

    How a child gets its connection, secrets included: a process's environment is readable by its
    own user only (``/proc/<pid>/environ``), its command line by everyone (``ps``). The variables
    these settings leave empty are removed, so the parent's environment cannot set them behind
    the settings' back; the log format, read beside the settings, goes along. Without
    CONSUMER_INSTANCE_ID: each consumer a run starts takes a slot of its own.
    """
    inherited = {k: v for k, v in os.environ.items() if k not in ALL_VARIABLES}
    ours = settings.environment(reveal_secrets=True)
    ours.pop(ENV_CONSUMER_INSTANCE_ID, None)
    return {**inherited, **ours, ENV_LOG_FORMAT: log_format(), ENV_DOTENV: "none", "PYTHONUNBUFFERED": "1"}


def script(module: str, *args: str) -> list[str]:
    """``python -m <module> ARGS``: the same ``main`` as the root script and the console script."""
    return [sys.executable, "-m", module, *args]


class ManagedProcess:
    """A script subprocess with its output in a log file, stopped by signal, never orphaned."""

    def __init__(self, name: str, command: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.started_at = time.time()
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            list(command),
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches only the harness, which then stops
            # each child with one SIGTERM (a clean stop) instead of the child seeing two signals.
            start_new_session=True,
        )

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not stop in time (and say so in the log)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                logger.warning("%s did not stop within %.0f s of SIGTERM; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def wait_for_group(
    settings: Settings,
    group: str,
    consumers: Sequence[ManagedProcess],
    timeout_s: float = GROUP_STABLE_TIMEOUT_S,
) -> float:
    """Wait until the consumers have joined and own partitions, so the first events wait for nobody."""
    members = len(consumers)
    admin = make_admin(settings, client_id="churn-harness-admin")
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout_s:
            exited = [c for c in consumers if c.poll() is not None]
            if exited:
                raise PipelineError(
                    f"{exited[0].name} exited with code {exited[0].poll()} before joining group {group}"
                )
            with kafka_errors_translated(settings):
                description = admin.describe_groups([group]).get(group, {})
            if description.get("group_state") == "Stable" and len(description.get("members", [])) >= members:
                return time.monotonic() - start
            time.sleep(0.2)
    finally:
        admin.close()
    raise PipelineError(f"consumer group {group} did not reach {members} stable member(s) within {timeout_s:.0f} s")

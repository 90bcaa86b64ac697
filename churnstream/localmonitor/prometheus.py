"""Prometheus from Debian's package, unpacked into ``.run/prometheus`` without root; started and stopped.

Where ``prometheus`` and ``promtool`` are already on PATH, those are used. Else, on a Debian-like
system, ``apt-get download prometheus`` fetches the package (no root: nothing is installed
system-wide) and ``dpkg-deb -x`` unpacks it; both binaries are static Go programs that need only
libc. Elsewhere, :class:`~churnstream.errors.BrokerToolingError` says in one line how to install it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnstream.errors import BrokerToolingError
from churnstream.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

RUN_DIR = PROJECT_ROOT / ".run" / "prometheus"  # generated, git-ignored: the unpacked package, data, pid
MONITORING_DIR = PROJECT_ROOT / "monitoring"
CONFIG_FILE = MONITORING_DIR / "prometheus.yml"
RULES_FILE = MONITORING_DIR / "alerts.yml"
DEFAULT_PORT = 9090
READY_TIMEOUT_S = 60.0
_children: dict[int, subprocess.Popen[bytes]] = {}  # started by this process: reaped on stop
INSTALL_HINT = (
    "Prometheus is not installed and cannot be fetched here: install it (Debian/Ubuntu: apt install prometheus; "
    "macOS: brew install prometheus) so that prometheus and promtool are on PATH"
)


@dataclass(frozen=True)
class Binaries:
    prometheus: Path
    promtool: Path

    def version(self) -> str:
        result = subprocess.run([str(self.prometheus), "--version"], capture_output=True, text=True, check=False)
        first = (result.stdout or result.stderr).splitlines()
        return first[0] if first else "unknown version"


def find_binaries(run_dir: Path = RUN_DIR) -> Binaries | None:
    """The unpacked package's binaries, else those on PATH, else None."""
    unpacked = Binaries(run_dir / "usr" / "bin" / "prometheus", run_dir / "usr" / "bin" / "promtool")
    if unpacked.prometheus.is_file() and unpacked.promtool.is_file():
        return unpacked
    on_path = shutil.which("prometheus"), shutil.which("promtool")
    if on_path[0] and on_path[1]:
        return Binaries(Path(on_path[0]), Path(on_path[1]))
    return None


def install(run_dir: Path = RUN_DIR) -> Binaries:
    """Prometheus and promtool, fetched from Debian's archive on first use."""
    found = find_binaries(run_dir)
    if found is not None:
        return found
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        raise BrokerToolingError(INSTALL_HINT)
    run_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="prometheus-deb-") as download:
        result = _apt_download(Path(download))
        if result.returncode != 0 and os.geteuid() == 0:  # package lists missing or stale: refresh once
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
            result = _apt_download(Path(download))
        packages = sorted(Path(download).glob("prometheus_*.deb"))
        if result.returncode != 0 or not packages:
            reason = (result.stderr or result.stdout).strip().splitlines()
            raise BrokerToolingError(f"{INSTALL_HINT} (apt-get download prometheus: {reason[-1] if reason else '?'})")
        unpacked = subprocess.run(
            ["dpkg-deb", "-x", str(packages[0]), str(run_dir)], capture_output=True, text=True, check=False
        )
        if unpacked.returncode != 0:
            raise BrokerToolingError(f"dpkg-deb -x {packages[0].name} failed: {unpacked.stderr.strip()[-300:]}")
    found = find_binaries(run_dir)
    if found is None:
        raise BrokerToolingError(f"the prometheus package unpacked into {run_dir} holds no usr/bin/prometheus")
    logger.info("installed %s into %s", found.version(), run_dir)
    return found


def _apt_download(folder: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["apt-get", "download", "-qq", "prometheus"], cwd=folder, capture_output=True, text=True, check=False
    )


def check(binaries: Binaries, config: Path = CONFIG_FILE) -> str:
    """``promtool check config`` (which checks the rule files it names as well): its report, or an error."""
    result = subprocess.run(
        [str(binaries.promtool), "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    report = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise BrokerToolingError(f"promtool check config {config} failed: {report[-500:]}")
    return report


@dataclass(frozen=True)
class Server:
    """A running Prometheus: its port, and the folder with its pid, log and data."""

    port: int
    home: Path

    @property
    def url(self) -> str:
        return f"http://localhost:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.home / "prometheus.pid"

    @property
    def log_file(self) -> Path:
        return self.home / "prometheus.log"

    def pid(self) -> int | None:
        try:
            pid = int(self.pid_file.read_text())
            os.kill(pid, 0)
        except (OSError, ValueError):
            return None
        return pid

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant PromQL query through the HTTP API: its result vector (or matrix)."""
        url = f"{self.url}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                body = json.loads(response.read())
        except urllib.error.HTTPError as exc:  # a bad query is a 400 with the reason in the body
            body = json.loads(exc.read() or b"{}")
        if body.get("status") != "success":
            raise BrokerToolingError(f"Prometheus refused {expr!r}: {body.get('error', body)}")
        return list(body["data"]["result"])

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(f"{self.url}{path}", timeout=10) as response:
            return json.loads(response.read())["data"]

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False


def start(binaries: Binaries, config: Path, port: int = DEFAULT_PORT, home: Path = RUN_DIR / "server") -> Server:
    """Start Prometheus in the background on ``port`` with ``config``; wait until it is ready."""
    server = Server(port, home)
    if server.pid() is not None:
        if server.ready():
            return server
        raise BrokerToolingError(f"a Prometheus from {home} runs (pid {server.pid()}) but does not answer on {port}")
    check(binaries, config)
    home.mkdir(parents=True, exist_ok=True)
    command = [
        str(binaries.prometheus),
        f"--config.file={config}",
        f"--web.listen-address=127.0.0.1:{port}",
        f"--storage.tsdb.path={home / 'data'}",
        "--storage.tsdb.retention.time=2d",
        "--web.enable-lifecycle",
    ]
    with server.log_file.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True)
    server.pid_file.write_text(str(process.pid))
    _children[process.pid] = process
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not server.ready():
        if process.poll() is not None:
            tail = server.log_file.read_text(errors="replace").strip().splitlines()[-3:]
            raise BrokerToolingError(f"Prometheus exited at start (code {process.returncode}): {' | '.join(tail)}")
        if time.monotonic() > deadline:
            stop(server)
            raise BrokerToolingError(f"Prometheus did not become ready on port {port} in {READY_TIMEOUT_S:.0f} s")
        time.sleep(0.2)
    return server


def stop(server: Server, timeout_s: float = 20.0) -> bool:
    """SIGTERM (Prometheus then writes its head block), then SIGKILL after ``timeout_s``."""
    pid = server.pid()
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    child = _children.pop(pid, None)
    if child is not None:  # ours: wait for it (else it lingers as a zombie that still "exists")
        try:
            child.wait(timeout_s)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
    else:
        deadline = time.monotonic() + timeout_s
        while server.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        if server.pid() is not None:
            os.kill(pid, signal.SIGKILL)
    server.pid_file.unlink(missing_ok=True)
    return True

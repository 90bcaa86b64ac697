"""Where a local cluster lives and which ports its nodes use.

One node by default (client port 29092, controller 29093), or three (ports +100 per node). The
runtime state lives in a home folder (default ``broker/run`` in the project, git-ignored): the
formatted storage, which survives restarts, the generated ``server.properties``, the pid files
and ``logs/server.log``.
"""

from __future__ import annotations

import json
import random
import socket
from dataclasses import dataclass
from pathlib import Path

from churnstream.errors import BrokerToolingError
from churnstream.settings import PROJECT_ROOT

BROKER_DIR = PROJECT_ROOT / "broker"  # generated: libs/ (Kafka's jars) and run/ (the default home)
DEFAULT_HOME = BROKER_DIR / "run"
NODE_PORT_STEP = 100


@dataclass(frozen=True)
class Layout:
    """Where a local cluster lives and which ports its nodes use."""

    home: Path = DEFAULT_HOME
    brokers: int = 1
    port: int = 29092
    controller_port: int = 29093
    secure: bool = False  # add a SASL_SSL (SCRAM-SHA-512) listener on port + 2, mutual TLS on port + 3

    def secure_port(self, node: int) -> int:
        return self.port + 2 + NODE_PORT_STEP * node

    @property
    def secure_bootstrap_servers(self) -> str:
        return ",".join(f"localhost:{self.secure_port(n)}" for n in range(self.brokers))

    def mtls_port(self, node: int) -> int:
        return self.port + 3 + NODE_PORT_STEP * node

    @property
    def mtls_bootstrap_servers(self) -> str:
        return ",".join(f"localhost:{self.mtls_port(n)}" for n in range(self.brokers))

    def client_port(self, node: int) -> int:
        return self.port + NODE_PORT_STEP * node

    def node_controller_port(self, node: int) -> int:
        return self.controller_port + NODE_PORT_STEP * node

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(f"localhost:{self.client_port(n)}" for n in range(self.brokers))

    def node_dir(self, node: int) -> Path:
        return self.home / f"node-{node + 1}"

    def pid_file(self, node: int) -> Path:
        return self.node_dir(node) / "kafka.pid"

    def log_file(self, node: int) -> Path:
        return self.node_dir(node) / "logs" / "server.log"

    def properties_file(self, node: int) -> Path:
        return self.node_dir(node) / "server.properties"

    @property
    def state_file(self) -> Path:
        return self.home / "launcher.json"


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def private_layout(home: Path, brokers: int = 1, secure: bool = False) -> Layout:
    """A layout on free ports, for tests and benchmarks that need a cluster of their own.

    Ports are taken below the kernel's ephemeral range (32768-60999 on Linux): a port there can be
    free when checked and then taken by some client's outgoing connection before the JVM binds it
    (seen: a 3-node benchmark cluster failing with "Address already in use"). Every port of every
    node (client, controller, SASL_SSL, mutual TLS) must be free.
    """
    offsets = (0, 1, 2, 3) if secure else (0, 1)
    rng = random.Random()
    for _ in range(1000):
        base = rng.randrange(20_000, 32_000 - NODE_PORT_STEP * brokers)
        ladder = [base + offset + NODE_PORT_STEP * node for node in range(brokers) for offset in offsets]
        if all(_bindable(port) and not port_in_use(port) for port in ladder):
            return Layout(home=home, brokers=brokers, port=base, controller_port=base + 1, secure=secure)
    raise BrokerToolingError("found no free ports for a private cluster between 20000 and 32000")


def load_layout(home: Path) -> Layout | None:
    """The layout a home was formatted with, if any."""
    try:
        state = json.loads((home / "launcher.json").read_text())
    except (OSError, ValueError):
        return None
    if "brokers" not in state:
        return None
    return Layout(
        home=home,
        brokers=state["brokers"],
        port=state["port"],
        controller_port=state["controller_port"],
        secure=state.get("secure", False),
    )

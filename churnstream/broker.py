"""A local Apache Kafka (KRaft) the project starts itself, without Docker.

``python -m churnstream.broker up|down|status|reset|kill|tool|fetch`` (the Make targets
``kafka-up``, ``kafka-down``, ``kafka-status``, ``kafka-reset`` and ``kafka-tool`` call it).

The broker and its tools are resolved from Maven Central with the machine's ``mvn`` into
``broker/libs`` (git-ignored). Each node is a combined broker+controller JVM; one node by
default (client port 29092, controller 29093), or three with ``--brokers 3`` (ports +100 per
node). Runtime state lives in a home folder (default ``broker/run``, git-ignored): the
formatted storage, which survives restarts, the generated ``server.properties``, the pid files
and ``logs/server.log``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import GroupIdNotFoundError, KafkaError, TopicAlreadyExistsError, TransactionalIdNotFoundError

from churnstream.acl import grant, harness_acls, pipeline_acls
from churnstream.cli import add_logging_options, make_parser, run, setup_logging
from churnstream.errors import BrokerToolingError
from churnstream.secure_broker import LISTENER, PIPELINE_USER, SecureMaterial, ensure_material
from config import Settings

logger = logging.getLogger("churnstream.broker")

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BROKER_DIR = PROJECT_ROOT / "broker"
POM = BROKER_DIR / "pom.xml"
LIBS_DIR = BROKER_DIR / "libs"
DEFAULT_HOME = BROKER_DIR / "run"
SERVER_LOG4J = BROKER_DIR / "log4j2.yaml"
TOOLS_LOG4J = BROKER_DIR / "tools-log4j2.yaml"
KAFKA_VERSION = "4.3.1"
MIN_JAVA = 17
NODE_PORT_STEP = 100
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0

# Kafka's shell scripts, by the main class each one runs.
TOOLS: dict[str, str] = {
    "kafka-topics": "org.apache.kafka.tools.TopicCommand",
    "kafka-consumer-groups": "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
    "kafka-console-consumer": "org.apache.kafka.tools.consumer.ConsoleConsumer",
    "kafka-console-producer": "org.apache.kafka.tools.ConsoleProducer",
    "kafka-broker-api-versions": "org.apache.kafka.tools.BrokerApiVersionsCommand",
    "kafka-configs": "kafka.admin.ConfigCommand",
    "kafka-acls": "org.apache.kafka.tools.AclCommand",
    "kafka-get-offsets": "org.apache.kafka.tools.GetOffsetShell",
    "kafka-metadata-quorum": "org.apache.kafka.tools.MetadataQuorumCommand",
    "kafka-transactions": "org.apache.kafka.tools.TransactionsCommand",
    "kafka-delete-records": "org.apache.kafka.tools.DeleteRecordsCommand",
    "kafka-leader-election": "org.apache.kafka.tools.LeaderElectionCommand",
    "kafka-reassign-partitions": "org.apache.kafka.tools.reassign.ReassignPartitionsCommand",
    "kafka-log-dirs": "org.apache.kafka.tools.LogDirsCommand",
    "kafka-features": "org.apache.kafka.tools.FeatureCommand",
    "kafka-cluster": "org.apache.kafka.tools.ClusterTool",
    "kafka-dump-log": "org.apache.kafka.tools.DumpLogSegments",
    "kafka-producer-perf-test": "org.apache.kafka.tools.ProducerPerformance",
    "kafka-consumer-perf-test": "org.apache.kafka.tools.ConsumerPerformance",
    "kafka-storage": "kafka.tools.StorageTool",
}
TOOLS_WITHOUT_BOOTSTRAP = {"kafka-dump-log", "kafka-producer-perf-test", "kafka-storage"}


@dataclass(frozen=True)
class Layout:
    """Where a local cluster lives and which ports its nodes use."""

    home: Path = DEFAULT_HOME
    brokers: int = 1
    port: int = 29092
    controller_port: int = 29093
    secure: bool = False  # add a SASL_SSL (SCRAM-SHA-512) listener on port + 2

    def secure_port(self, node: int) -> int:
        return self.port + 2 + NODE_PORT_STEP * node

    @property
    def secure_bootstrap_servers(self) -> str:
        return ",".join(f"localhost:{self.secure_port(n)}" for n in range(self.brokers))

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


# --- prerequisites -------------------------------------------------------------------------


def java_major_version(java: str = "java") -> int:
    if shutil.which(java) is None:
        raise BrokerToolingError(
            f"Java {MIN_JAVA}+ is needed for the local broker, and 'java' is not on PATH; "
            "install it (Debian: apt install openjdk-17-jre-headless)"
        )
    result = subprocess.run([java, "-version"], capture_output=True, text=True, check=False)
    match = re.search(r'version "(\d+)(?:\.(\d+))?', result.stderr + result.stdout)
    if not match:
        raise BrokerToolingError(f"could not read the Java version from 'java -version': {result.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major


def require_java() -> None:
    major = java_major_version()
    if major < MIN_JAVA:
        raise BrokerToolingError(
            f"Java {MIN_JAVA}+ is needed for Kafka {KAFKA_VERSION}, found Java {major}; "
            "install OpenJDK 17 (Debian: apt install openjdk-17-jre-headless)"
        )


def _pom_digest() -> str:
    return hashlib.sha256(POM.read_bytes()).hexdigest()


def libs_ready(libs: Path = LIBS_DIR) -> bool:
    stamp = libs / ".complete"
    return stamp.is_file() and stamp.read_text().strip() == _pom_digest()


def fetch_libs(libs: Path = LIBS_DIR) -> Path:
    """Resolve Kafka and its tools from Maven Central into ``libs`` (once; kept as a cache)."""
    if libs_ready(libs):
        return libs
    if shutil.which("mvn") is None:
        raise BrokerToolingError(
            "Maven is needed once to download Kafka from Maven Central, and 'mvn' is not on PATH; "
            "install it (Debian: apt install maven)"
        )
    staging = libs.with_name(libs.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    logger.info("resolving Apache Kafka %s from Maven Central into %s", KAFKA_VERSION, libs)
    command = [
        "mvn", "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
        f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if "ERROR" in line]
        raise BrokerToolingError(
            "mvn could not resolve Kafka from Maven Central: " + (lines[0] if lines else f"exit {result.returncode}")
        )
    if not (staging / f"kafka_2.13-{KAFKA_VERSION}.jar").is_file():
        raise BrokerToolingError(f"mvn finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {staging}")
    (staging / ".complete").write_text(_pom_digest() + "\n")
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs


def _java_command(main_class: str, log4j: Path, logs_dir: Path, heap: str | None = None) -> list[str]:
    command = ["java"]
    if heap:
        command += ["-Xms256m", f"-Xmx{heap}", "-XX:+UseG1GC", "-XX:+ExitOnOutOfMemoryError"]
    command += [
        "-Djava.awt.headless=true",
        f"-Dlog4j2.configurationFile={log4j}",
        f"-Dkafka.logs.dir={logs_dir}",
        "-cp",
        str(LIBS_DIR / "*"),
        main_class,
    ]
    return command


# --- process state -------------------------------------------------------------------------


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state to be sure.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return True
    return state != "Z"


def node_pid(layout: Layout, node: int) -> int | None:
    pid = _read_pid(layout.pid_file(node))
    if pid is not None and _alive(pid) and _is_kafka(pid):
        return pid
    return None


def _is_kafka(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # not Linux /proc: trust the pid file
    # Right after the launcher forks, the child's command line can still read as empty (seen 16
    # times in 300): that is our JVM starting, not a dead node.
    return not cmdline or b"kafka.Kafka" in cmdline


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
    node (client, controller, secure) must be free.
    """
    offsets = (0, 1, 2) if secure else (0, 1)
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


# --- configuration -------------------------------------------------------------------------


def server_properties(layout: Layout, node: int, material: SecureMaterial | None = None) -> str:
    replicas = min(layout.brokers, 3)
    min_isr = 2 if replicas >= 3 else 1
    voters = ",".join(f"{n + 1}@localhost:{layout.node_controller_port(n)}" for n in range(layout.brokers))
    client, controller = layout.client_port(node), layout.node_controller_port(node)
    listeners = f"PLAINTEXT://localhost:{client},CONTROLLER://localhost:{controller}"
    advertised = f"PLAINTEXT://localhost:{client}"
    protocols = "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
    if layout.secure:
        listeners += f",{LISTENER}://localhost:{layout.secure_port(node)}"
        advertised += f",{LISTENER}://localhost:{layout.secure_port(node)}"
        protocols += f",{LISTENER}:SASL_SSL"
    lines: dict[str, object] = {
        "process.roles": "broker,controller",
        "node.id": node + 1,
        "controller.quorum.voters": voters,
        "listeners": listeners,
        "advertised.listeners": advertised,
        "controller.listener.names": "CONTROLLER",
        "inter.broker.listener.name": "PLAINTEXT",
        "listener.security.protocol.map": protocols,
        "log.dirs": layout.node_dir(node) / "data",
        "num.partitions": 6,
        "default.replication.factor": replicas,
        "min.insync.replicas": min_isr,
        "offsets.topic.replication.factor": replicas,
        "offsets.topic.num.partitions": 12,
        "transaction.state.log.replication.factor": replicas,
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": 12,
        "group.initial.rebalance.delay.ms": 0,
        "auto.create.topics.enable": "false",
        "log.retention.hours": 168,
    }
    if material is not None:
        lines.update(material.listener_properties())
    header = "# Generated by churnstream.broker; edit the launcher, not this file.\n"
    return header + "".join(f"{key}={value}\n" for key, value in lines.items())


def _secure_material(layout: Layout) -> SecureMaterial | None:
    return ensure_material(layout.home, layout.secure_bootstrap_servers) if layout.secure else None


def _write_config(layout: Layout) -> None:
    material = _secure_material(layout)
    for node in range(layout.brokers):
        layout.node_dir(node).mkdir(parents=True, exist_ok=True)
        (layout.node_dir(node) / "logs").mkdir(exist_ok=True)
        layout.properties_file(node).write_text(server_properties(layout, node, material))
        layout.properties_file(node).chmod(0o600)  # holds the keystore password when secure


def _format_storage(layout: Layout) -> None:
    """Format KRaft storage once per home; later starts reuse it, so data survives restarts."""
    state = {**asdict(layout), "home": str(layout.home)}
    cluster_id = None
    material = _secure_material(layout)
    for node in range(layout.brokers):
        if (layout.node_dir(node) / "data" / "meta.properties").is_file():
            continue
        if cluster_id is None:
            cluster_id = _cluster_id(layout)
        command = _java_command("kafka.tools.StorageTool", TOOLS_LOG4J, layout.node_dir(node) / "logs")
        command += ["format", "-t", cluster_id, "-c", str(layout.properties_file(node)), "--ignore-formatted"]
        if material is not None:
            command += material.scram_arguments()  # SCRAM users exist from the first start
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            if material is not None:  # the tool may echo an --add-scram argument, password and all
                output = material.redact(output)
            raise BrokerToolingError(f"kafka-storage format failed: {output[-400:]}")
        logger.info("formatted KRaft storage for node %d (cluster id %s)", node + 1, cluster_id)
    state["cluster_id"] = _cluster_id(layout)
    state["kafka_version"] = KAFKA_VERSION
    layout.state_file.write_text(json.dumps(state, indent=2) + "\n")


def _cluster_id(layout: Layout) -> str:
    try:
        return json.loads(layout.state_file.read_text())["cluster_id"]
    except (OSError, ValueError, KeyError):
        pass
    # Kafka's cluster id is a base64url UUID without padding, as 'kafka-storage random-uuid' makes.
    # Like Kafka's own Uuid.randomUuid, never one starting with "-": the tool would read it as a flag.
    cluster_id = "-"
    while cluster_id.startswith("-"):
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    layout.home.mkdir(parents=True, exist_ok=True)
    layout.state_file.write_text(json.dumps({"cluster_id": cluster_id}) + "\n")
    return cluster_id


# --- lifecycle -----------------------------------------------------------------------------


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _check_layout_matches(layout: Layout) -> None:
    existing = load_layout(layout.home)
    if existing is not None and existing != layout:

        def describe(candidate: Layout) -> str:
            secure = ", secure listener" if candidate.secure else ""
            return f"{candidate.brokers} broker(s) on port {candidate.port}{secure}"

        raise BrokerToolingError(
            f"{layout.home} holds a cluster of {describe(existing)}; asked for {describe(layout)}: "
            "use the same settings, or --fresh to wipe it"
        )


def _require_free_ports(layout: Layout, node: int) -> None:
    ports = [layout.client_port(node), layout.node_controller_port(node)]
    if layout.secure:
        ports.append(layout.secure_port(node))
    for port in ports:
        if port_in_use(port):
            raise BrokerToolingError(
                f"port {port} is already in use by another process (not this project's broker "
                f"in {layout.home}); stop that process, or choose other ports with --port/--controller-port"
            )


def start_node(layout: Layout, node: int) -> int:
    pid = node_pid(layout, node)
    if pid is not None:
        return pid
    _require_free_ports(layout, node)
    logs = layout.node_dir(node) / "logs"
    command = [*_java_command("kafka.Kafka", SERVER_LOG4J, logs, heap="1g"), str(layout.properties_file(node))]
    with (logs / "kafka.out").open("ab") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
    layout.pid_file(node).write_text(f"{process.pid}\n")
    return process.pid


def wait_until_ready(layout: Layout, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Wait until every node answers a metadata request (and is registered in the cluster)."""
    deadline = time.monotonic() + timeout_s
    while True:
        for node in range(layout.brokers):
            if node_pid(layout, node) is None:
                raise BrokerToolingError(
                    f"broker node {node + 1} exited during start-up; last lines of {layout.log_file(node)}:\n"
                    f"{_tail(layout.log_file(node))}\n{_tail(layout.node_dir(node) / 'logs' / 'kafka.out', 5)}"
                )
        if all(port_in_use(layout.client_port(n)) for n in range(layout.brokers)):
            try:
                admin = KafkaAdminClient(
                    bootstrap_servers=layout.bootstrap_servers.split(","),
                    client_id="churn-launcher",
                    bootstrap_timeout_ms=3000,
                    request_timeout_ms=5000,
                )
                try:
                    registered = len(admin.describe_cluster()["brokers"])
                    if registered >= layout.brokers:
                        _check_coordinators(admin)  # raises a KafkaError until they answer
                        return
                finally:
                    admin.close()
            except KafkaError:
                pass  # not ready yet; the deadline below bounds the wait
        if time.monotonic() > deadline:
            raise BrokerToolingError(f"the broker did not answer within {timeout_s:.0f} s; see {layout.log_file(0)}")
        time.sleep(0.5)


READINESS_PROBE_ID = "churn-launcher-readiness-probe"


def _check_coordinators(admin: KafkaAdminClient) -> None:
    """Return once a consumer group and a transactional id each find their coordinator.

    The first such lookup creates ``__consumer_offsets`` and ``__transaction_state``; until their
    partition leaders are elected the brokers answer COORDINATOR_NOT_AVAILABLE. On one node that
    lasts well under a second; on three (replication 3, 12 partitions each) it took seconds, and a
    client that asked first (the harness's group check) failed instead of waiting. So "ready"
    includes it. The probe ids are never created: the coordinators answer "not found".
    """
    with contextlib.suppress(GroupIdNotFoundError):  # answered by the group coordinator: it is there
        admin.describe_groups([READINESS_PROBE_ID])
    with contextlib.suppress(TransactionalIdNotFoundError):  # the transaction coordinator, likewise
        admin.describe_transactions([READINESS_PROBE_ID])


def up(layout: Layout, fresh: bool = False) -> str:
    """Start every node that is not running and wait until the cluster answers."""
    if fresh:
        reset(layout)
    _check_layout_matches(layout)
    running = [n for n in range(layout.brokers) if node_pid(layout, n) is not None]
    if len(running) == layout.brokers:
        return f"Kafka is already running at {layout.bootstrap_servers} (home {layout.home})"
    for node in range(layout.brokers):
        if node not in running:
            _require_free_ports(layout, node)
    require_java()
    fetch_libs()
    _write_config(layout)
    _format_storage(layout)
    for node in range(layout.brokers):
        start_node(layout, node)
    wait_until_ready(layout)
    message = (
        f"Kafka {KAFKA_VERSION} is up at {layout.bootstrap_servers} "
        f"(KRaft, {layout.brokers} node(s), home {layout.home})"
    )
    if layout.secure:
        _prepare_secure_listener(layout)
        message += (
            f"\nSASL_SSL listener at {layout.secure_bootstrap_servers}; "
            f"client settings in {layout.home / 'secure' / 'client.env'}"
        )
    return message


def _prepare_secure_listener(layout: Layout) -> None:
    """The default topics and the pipeline user's rights on them, and on test_pipeline.py's run
    topics. Idempotent, so every ``up`` can run it."""
    provision_pipeline(layout, Settings(), PIPELINE_USER, harness=True)


def provision_pipeline(layout: Layout, settings: Settings, user: str = PIPELINE_USER, harness: bool = False) -> None:
    """What a cluster's administrator does once for a pipeline user that may not create topics:
    create its topics, and grant it its least rights (acl.pipeline_acls; with ``harness``, also
    the prefixed rights test_pipeline.py needs). Done over the plaintext listener, where the
    launcher is a super user. Existing topics and ACLs are left as they are."""
    from churnstream.kafka_io import topic_configs  # noqa: PLC0415 - only secure mode needs it

    names = (settings.topic_raw, settings.topic_predictions, settings.topic_deadletter, settings.consumer_group)
    replicas = min(layout.brokers, 3)
    specs: dict[str, dict[str, object]] = {
        name: {"num_partitions": settings.topic_partitions, "replication_factor": replicas} for name in names[:3]
    }
    for name, spec in specs.items():  # as the pipeline would create them
        if configs := topic_configs(settings, name):
            spec["configs"] = configs
    admin = KafkaAdminClient(bootstrap_servers=layout.bootstrap_servers.split(","), client_id="churn-launcher")
    try:
        existing = set(admin.list_topics())
        missing = {name: spec for name, spec in specs.items() if name not in existing}
        if missing:
            with contextlib.suppress(TopicAlreadyExistsError):
                admin.create_topics(missing, wait_for_metadata=True)
        acls = pipeline_acls(user, *names) + (harness_acls(user, *names) if harness else [])
        grant(admin, acls)
    finally:
        admin.close()


def stop_node(layout: Layout, node: int, hard: bool = False, timeout_s: float = STOP_TIMEOUT_S) -> bool:
    """SIGTERM (or SIGKILL with ``hard``) one node and wait for it to exit. False if not running."""
    pid = node_pid(layout, node)
    if pid is None:
        layout.pid_file(node).unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGKILL if hard else signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            logger.warning("node %d did not stop within %.0f s; killing it", node + 1, timeout_s)
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 10
        time.sleep(0.1)
        with contextlib.suppress(ChildProcessError):  # reap it if we are its parent
            os.waitpid(pid, os.WNOHANG)
    layout.pid_file(node).unlink(missing_ok=True)
    return True


def down(layout: Layout) -> str:
    """Stop every node. SIGTERM goes to all nodes at once: stopping them one by one would leave
    the last ones without a controller quorum, and their controlled shutdown would hang."""
    running = {n: pid for n in range(layout.brokers) if (pid := node_pid(layout, n)) is not None}
    for pid in running.values():
        os.kill(pid, signal.SIGTERM)
    for node in running:
        stop_node(layout, node)  # waits; a repeated SIGTERM is harmless
    stopped = [n + 1 for n in running]
    if not stopped:
        return "Kafka is not running"
    return f"stopped Kafka node(s) {', '.join(map(str, stopped))}; data kept in {layout.home}"


def reset(layout: Layout) -> str:
    down(layout)
    existing = load_layout(layout.home) or layout
    for node in range(max(existing.brokers, layout.brokers)):
        shutil.rmtree(existing.node_dir(node), ignore_errors=True)
    layout.state_file.unlink(missing_ok=True)
    return f"wiped Kafka data in {layout.home}"


def status(layout: Layout) -> tuple[bool, str]:
    lines = []
    all_up = True
    for node in range(layout.brokers):
        pid = node_pid(layout, node)
        all_up &= pid is not None
        state = f"running (pid {pid})" if pid else "stopped"
        lines.append(
            f"node {node + 1}: {state}, client localhost:{layout.client_port(node)}, "
            f"controller localhost:{layout.node_controller_port(node)}"
        )
    if all_up:
        lines.append(f"Kafka {KAFKA_VERSION} at {layout.bootstrap_servers}, data in {layout.home}")
        if layout.secure:
            lines.append(
                f"SASL_SSL at {layout.secure_bootstrap_servers}; client settings in "
                f"{layout.home / 'secure' / 'client.env'}"
            )
    return all_up, "\n".join(lines)


def run_tool(layout: Layout, name: str, args: Sequence[str]) -> int:
    """Run one of Kafka's own tools (kafka-topics, kafka-consumer-groups, ...) against the cluster."""
    if name.endswith(".sh"):
        name = name[:-3]
    if name not in TOOLS:
        raise BrokerToolingError(f"unknown tool {name!r}; choose one of: {', '.join(sorted(TOOLS))}")
    require_java()
    fetch_libs()
    args = list(args)
    uses_bootstrap = name not in TOOLS_WITHOUT_BOOTSTRAP
    if uses_bootstrap and not any(a.startswith(("--bootstrap-server", "--bootstrap-controller")) for a in args):
        args = ["--bootstrap-server", layout.bootstrap_servers, *args]
    command = _java_command(TOOLS[name], TOOLS_LOG4J, layout.home / "tool-logs") + args
    return subprocess.run(command, check=False).returncode


# --- command line --------------------------------------------------------------------------


def _layout_from_args(args: object) -> Layout:
    home = Path(args.home).resolve()
    saved = load_layout(home)
    brokers = getattr(args, "brokers", None)
    port = getattr(args, "port", None)
    controller_port = getattr(args, "controller_port", None)
    secure = getattr(args, "secure", False)
    base = saved or Layout(home=home)
    return Layout(
        home=home,
        brokers=brokers or base.brokers,
        port=port or base.port,
        controller_port=controller_port or base.controller_port,
        secure=secure or base.secure,
    )


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m churnstream.broker",
        "Run a local Apache Kafka (KRaft mode) for this project, without Docker.",
        epilog="Examples:\n  make kafka-up\n  make kafka-tool ARGS='kafka-topics --list'\n  make kafka-down",
    )
    parser.add_argument(
        "--home",
        default=str(DEFAULT_HOME),
        help="runtime folder for data, logs and pids (default: %(default)s)",
    )
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def layout_options(sub: object) -> None:
        sub.add_argument(
            "--brokers",
            type=int,
            choices=(1, 3),
            help="number of broker nodes (default 1, or what the home was formatted with)",
        )
        sub.add_argument("--port", type=int, help="client port of node 1 (default 29092; node n adds 100*(n-1))")
        sub.add_argument("--controller-port", type=int, help="controller port of node 1 (default 29093)")

    sub = commands.add_parser("up", help="start the broker (formats storage on first use) and wait until it answers")
    layout_options(sub)
    sub.add_argument("--fresh", action="store_true", help="wipe the data first")
    sub.add_argument(
        "--secure",
        action="store_true",
        help="also listen with SASL_SSL (SCRAM-SHA-512, ACLs) on port+2; client settings in <home>/secure/client.env",
    )
    sub = commands.add_parser("down", help="stop the broker cleanly (SIGTERM, wait); data is kept")
    sub.add_argument("--node", type=int, help="stop only this node (1-based)")
    commands.add_parser("status", help="say whether the broker runs; exit 0 only if every node runs")
    commands.add_parser("reset", help="stop the broker and wipe its data")
    sub = commands.add_parser("kill", help="hard-kill (SIGKILL) a node, for fault tests")
    sub.add_argument("--node", type=int, default=1, help="node to kill (1-based, default 1)")
    sub = commands.add_parser("start", help="start one stopped node of an existing cluster")
    sub.add_argument("--node", type=int, default=1, help="node to start (1-based, default 1)")
    commands.add_parser("fetch", help="only download Kafka from Maven Central into broker/libs")
    commands.add_parser("bootstrap", help="print the bootstrap servers of this home")
    sub = commands.add_parser("tool", help="run a Kafka tool, e.g.: tool kafka-topics --list")
    sub.add_argument("tool", help="one of: " + ", ".join(sorted(TOOLS)))
    sub.add_argument("tool_args", nargs="...", help="arguments for the tool")

    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        layout = _layout_from_args(args)
        if args.command == "up":
            print(up(layout, fresh=args.fresh))
        elif args.command == "down":
            if args.node:
                print("stopped" if stop_node(layout, args.node - 1) else "not running")
            else:
                print(down(layout))
        elif args.command == "status":
            running, text = status(layout)
            print(text)
            return 0 if running else 1
        elif args.command == "reset":
            print(reset(layout))
        elif args.command == "kill":
            print("killed" if stop_node(layout, args.node - 1, hard=True) else "not running")
        elif args.command == "start":
            _check_layout_matches(layout)
            start_node(layout, args.node - 1)
            wait_until_ready(layout)
            print(f"node {args.node} is up")
        elif args.command == "fetch":
            require_java()
            print(f"Kafka {KAFKA_VERSION} libraries in {fetch_libs()}")
        elif args.command == "bootstrap":
            print(layout.bootstrap_servers)
        elif args.command == "tool":
            return run_tool(layout, args.tool, args.tool_args)
        return 0

    return run(body)


if __name__ == "__main__":
    sys.exit(main())

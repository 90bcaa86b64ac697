"""deploy/ and the container files agree with the code: every probe, port, instance id, command and stop
grace is the one the code serves or needs. None of them can run here (no systemd as PID 1, no Kubernetes,
no Docker engine): these tests read the files. docs/howto/deploy.md says what is and is not checked."""

from __future__ import annotations

import configparser
import importlib
import json
import re
import tomllib
from importlib import metadata
from typing import Any

import yaml

from churnstream.consumer.identity import SLOT_DIR
from churnstream.consumer.options import ConsumerOptions
from churnstream.localkafka.install import KAFKA_VERSION
from churnstream.observability.health import HEALTH_PATH, METRICS_PATH, READY_PATH
from churnstream.observability.server import CONSUMER_METRICS_PORT
from churnstream.settings import (
    DEFAULT_CHECKPOINT_DIR,
    DEFAULT_SCHEMA_PATH,
    ENV_BOOTSTRAP_SERVERS,
    ENV_CONSUMER_INSTANCE_ID,
    ENV_LOG_FORMAT,
    ENV_METRICS_PORT,
    PROJECT_ROOT,
    Settings,
    settings_from,
)
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"


def kubernetes() -> dict[str, dict[str, Any]]:
    documents = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "consumer.yaml").read_text()))
    return {doc["kind"]: doc for doc in documents}


def test_the_statefulset_probes_and_scrapes_what_the_consumer_serves() -> None:
    manifests = kubernetes()
    assert set(manifests) == {"ConfigMap", "Service", "StatefulSet"}
    statefulset = manifests["StatefulSet"]
    pod = statefulset["spec"]["template"]
    [container] = pod["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"metrics": CONSUMER_METRICS_PORT}
    assert manifests["ConfigMap"]["data"][ENV_METRICS_PORT] == str(CONSUMER_METRICS_PORT)
    assert manifests["ConfigMap"]["data"][ENV_LOG_FORMAT] == "json"
    assert container["livenessProbe"]["httpGet"] == {"path": HEALTH_PATH, "port": "metrics"}
    assert container["readinessProbe"]["httpGet"] == {"path": READY_PATH, "port": "metrics"}
    annotations = pod["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(CONSUMER_METRICS_PORT)
    assert annotations["prometheus.io/path"] == METRICS_PATH

    env = {item["name"]: item for item in container["env"]}
    assert env[ENV_CONSUMER_INSTANCE_ID]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "secretKeyRef" in env["KAFKA_SASL_PASSWORD"]["valueFrom"]  # never in the ConfigMap
    assert not any("PASSWORD" in key for key in manifests["ConfigMap"]["data"])

    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert container["command"][0] in scripts
    assert statefulset["spec"]["replicas"] <= Settings().topic_partitions
    # The grace period covers the clean stop: the longest wait inside it (the transaction's bound).
    assert pod["spec"]["terminationGracePeriodSeconds"] > ConsumerOptions().transaction_timeout_ms / 1000


def test_the_systemd_unit_runs_the_consumer_on_its_instance_port() -> None:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    unit.read(DEPLOY / "systemd" / "churn-consumer@.service")
    service = unit["Service"]
    assert service["ExecStart"].split()[0].endswith("/.venv/bin/churn-consumer")
    assert "--metrics-port %i" in service["ExecStart"]
    assert service["KillSignal"] == "SIGTERM"
    assert int(service["TimeoutStopSec"]) > ConsumerOptions().transaction_timeout_ms / 1000
    no_restart = {int(code) for code in service["RestartPreventExitStatus"].split()}
    assert {3, 5, 6, 64} <= no_restart and 1 not in no_restart and 2 not in no_restart


def test_the_container_files_say_they_were_not_run_here() -> None:
    assert "NOT BUILT HERE" in (ROOT / "Dockerfile").read_text().split("FROM", 1)[0]
    assert "NOT RUN HERE" in (ROOT / "docker-compose.yml").read_text().split("services:", 1)[0]


# -- the container files: never built or run here (no Docker engine); read and checked against the code


def dockerfile_stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's stages, each a list of (INSTRUCTION, arguments), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[tuple[str, str]]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        instruction, _, arguments = line.partition(" ")
        if instruction.upper() == "FROM":
            stages.append([])
        stages[-1].append((instruction.upper(), arguments.strip()))
    return stages


def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def listeners(text: str) -> dict[str, tuple[str, int]]:
    """``NAME://host:port,...`` -> {NAME: (host, port)}."""
    found = {}
    for item in text.split(","):
        name, _, address = item.partition("://")
        host, _, port = address.rpartition(":")
        found[name] = (host, int(port))
    return found


def test_the_image_installs_only_the_runtime_packages_hash_checked() -> None:
    build, runtime = dockerfile_stages()
    build_runs = " ".join(arguments for instruction, arguments in build if instruction == "RUN")
    assert "python runtime_requirements.py < requirements.lock > runtime.lock" in build_runs
    installs = [arguments for instruction, arguments in runtime if instruction == "RUN" and "pip install" in arguments]
    [install] = installs
    assert "pip install --no-cache-dir --require-hashes -r /tmp/install/runtime.lock" in install
    assert "--no-deps /tmp/install/*.whl" in install
    everything = " ".join(arguments for _, arguments in runtime)
    assert "requirements.lock" not in everything and ".[" not in everything  # no dev or report extras


def test_the_runtime_lock_is_the_runtime_packages_and_what_they_need() -> None:
    """deploy/runtime_requirements.py, which the image runs on requirements.lock, against the installed
    packages' own metadata: the closure of requirements-kafka.txt, nothing of the dev or report extras."""
    from packaging.requirements import Requirement  # noqa: PLC0415 - a test tool (pytest's own dependency)

    runtime_requirements = importlib.import_module("deploy.runtime_requirements")
    lock = (ROOT / "requirements.lock").read_text()
    pinned = (ROOT / "requirements-kafka.txt").read_text().splitlines()
    wanted = [runtime_requirements.normalized(line.split("==")[0]) for line in pinned if "==" in line]
    closure: set[str] = set()
    while wanted:
        name = wanted.pop()
        if name not in closure:
            closure.add(name)
            for text in metadata.requires(name) or []:
                requirement = Requirement(text)
                if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                    wanted.append(runtime_requirements.normalized(requirement.name))
    chosen = runtime_requirements.runtime(lock)
    assert set(chosen) == closure
    assert not {"pytest", "ruff", "matplotlib", "jsonschema", "confluent-kafka"} & set(chosen)
    build_backend = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    assert build_backend == ["setuptools==" + re.search(r"^setuptools==(\S+)", lock, re.MULTILINE).group(1)]


def test_the_image_runs_as_the_manifests_user_in_a_project_folder_it_can_write() -> None:
    """Installed, the package resolves relative paths against the folder it starts in: the image's
    WORKDIR holds the schema, the data, the model, and the folders the consumer and producer write."""
    runtime = dockerfile_stages()[-1]
    values = dict(runtime)
    assert values["WORKDIR"] == "/app" and values["USER"] == "10001"
    assert "useradd --uid 10001" in " ".join(arguments for _, arguments in runtime)
    pod = kubernetes()["StatefulSet"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(values["USER"])
    schema = DEFAULT_SCHEMA_PATH.relative_to(PROJECT_ROOT)
    assert f"COPY {schema} {schema.parent}/" in [
        f"COPY {arguments}" for instruction, arguments in runtime if instruction == "COPY"
    ]
    writable = [DEFAULT_CHECKPOINT_DIR.relative_to(PROJECT_ROOT), SLOT_DIR.relative_to(PROJECT_ROOT).parents[-2]]
    [prepare] = [arguments for instruction, arguments in runtime if instruction == "RUN" and "mkdir" in arguments]
    assert f"mkdir -p {' '.join(str(folder) for folder in writable)}" in prepare
    assert "chown -R churn:churn /app" in prepare
    assert "CHURN_DOTENV=none" in values["ENV"]
    assert values["EXPOSE"] == str(CONSUMER_METRICS_PORT)
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    command = json.loads(values["CMD"])
    assert command == pod["containers"][0]["command"] and command[0] in scripts


def test_the_compose_services_reach_the_broker_on_the_listener_it_advertises_to_them() -> None:
    services = compose()["services"]
    assert set(services) == {"kafka", "consumer", "producer"}
    assert {tuple(service["networks"]) for service in services.values()} == {("churn",)}
    kafka = services["kafka"]
    assert kafka["image"] == f"apache/kafka:{KAFKA_VERSION}"
    env = kafka["environment"]
    bound, advertised = listeners(env["KAFKA_LISTENERS"]), listeners(env["KAFKA_ADVERTISED_LISTENERS"])
    protocols = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(advertised) <= set(bound) and set(bound) == set(protocols)
    controller = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert controller in bound and controller not in advertised
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"1@{kafka['hostname']}:{bound[controller][1]}"
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in advertised
    # The containers: the internal listener, under the broker's name on the network.
    internal = advertised[env["KAFKA_INTER_BROKER_LISTENER_NAME"]]
    assert internal[0] == kafka["hostname"]
    for name in ("consumer", "producer"):
        assert services[name]["environment"][ENV_BOOTSTRAP_SERVERS] == f"{internal[0]}:{internal[1]}"
        assert services[name]["depends_on"]["kafka"]["condition"] == "service_healthy"
        settings_from(services[name]["environment"])  # every value valid (a ConfigError fails the test)
    # This machine: the published port is the listener advertised as localhost, the launcher's default.
    [external] = [listener for listener, (host, _) in advertised.items() if host == "localhost"]
    assert f"{advertised[external][0]}:{advertised[external][1]}" == Settings().bootstrap_servers
    assert f"{advertised[external][1]}:{bound[external][1]}" in kafka["ports"]


def test_the_compose_consumer_and_producer_run_the_image_as_the_code_expects() -> None:
    services = compose()["services"]
    consumer, producer = services["consumer"], services["producer"]
    assert consumer["build"] == producer["build"] == "." and consumer["image"] == producer["image"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert consumer["command"] == json.loads(dict(dockerfile_stages()[-1])["CMD"])
    assert producer["command"][0] in scripts and "--mode" in producer["command"]
    env = consumer["environment"]
    assert env[ENV_CONSUMER_INSTANCE_ID]  # a stable id of its own: containers share no slot files
    assert env[ENV_METRICS_PORT] == str(CONSUMER_METRICS_PORT)
    assert f"{CONSUMER_METRICS_PORT}:{CONSUMER_METRICS_PORT}" in consumer["ports"]
    grace_s = int(consumer["stop_grace_period"].removesuffix("s"))
    assert grace_s > ConsumerOptions().transaction_timeout_ms / 1000

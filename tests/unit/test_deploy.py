"""deploy/ and the container files agree with the code: every probe, port, instance id, command and stop
grace is the one the code serves or needs. None of them can run here (no systemd as PID 1, no Kubernetes,
no Docker engine): these tests read the files. docs/howto/deploy.md says what is and is not checked."""

from __future__ import annotations

import configparser
import tomllib
from typing import Any

import yaml

from churnstream.consumer.options import ConsumerOptions
from churnstream.observability.health import HEALTH_PATH, METRICS_PATH, READY_PATH
from churnstream.observability.server import CONSUMER_METRICS_PORT
from churnstream.settings import ENV_CONSUMER_INSTANCE_ID, ENV_LOG_FORMAT, ENV_METRICS_PORT, Settings
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


def test_the_dockerfile_says_it_was_not_built_here() -> None:
    header = (ROOT / "Dockerfile").read_text().split("FROM", 1)[0]
    assert "NOT BUILT HERE" in header

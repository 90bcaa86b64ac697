"""monitoring/ and deploy/ agree with the code: every query names a metric the code exports, every
probe and port is the one the code serves. (The real Prometheus runs them in tests/integration.)"""

from __future__ import annotations

import configparser
import json
import re
import tomllib
from typing import Any

import yaml

from churnstream.consumer.options import ConsumerOptions
from churnstream.observability import metrics
from churnstream.observability.health import HEALTH_PATH, METRICS_PATH, READY_PATH
from churnstream.observability.server import CONSUMER_METRICS_PORT, PRODUCER_METRICS_PORT
from churnstream.settings import ENV_CONSUMER_INSTANCE_ID, ENV_LOG_FORMAT, ENV_METRICS_PORT, Settings
from tests.helpers import ROOT

MONITORING = ROOT / "monitoring"
DEPLOY = ROOT / "deploy"
REQUIRED_ALERTS = {
    "ChurnConsumerDown",
    "ChurnConsumerNotReady",
    "ChurnLagGrowing",
    "ChurnDeadLetterRate",
    "ChurnNoCommit",
    "ChurnModelFallback",
}
METRIC_NAME = re.compile(r"\b(churn_[a-z_]+)")
HISTOGRAM_SERIES = ("_bucket", "_sum", "_count")


def dashboard_queries() -> list[str]:
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    return [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    return [rule for group in rules["groups"] for rule in group["rules"]]


def named_metrics(expr: str) -> set[str]:
    """The metric names an expression reads, a histogram's series mapped to the histogram."""
    names = set()
    for found in METRIC_NAME.findall(expr):
        histograms = [found.removesuffix(s) for s in HISTOGRAM_SERIES if found.removesuffix(s) in metrics.EXPORTED]
        names.add(histograms[0] if histograms and found not in metrics.EXPORTED else found)
    return names


def test_every_dashboard_query_names_only_metrics_the_code_exports() -> None:
    queries = dashboard_queries()
    assert len(queries) >= 10
    for expr in queries:
        names = named_metrics(expr)
        assert names, expr
        assert names <= set(metrics.EXPORTED), f"{expr}: {names - set(metrics.EXPORTED)}"


def test_the_dashboard_shows_what_an_operator_looks_for() -> None:
    read = set().union(*(named_metrics(expr) for expr in dashboard_queries()))
    assert {
        metrics.EVENTS_CONSUMED,
        metrics.EVENT_LATENCY,
        metrics.LAG_RECORDS,
        metrics.LAG_SECONDS,
        metrics.EVENTS_DEAD_LETTERED,
        metrics.TRANSACTIONS,
        metrics.MODEL_INFO,
    } <= read
    assert any("histogram_quantile(0.99" in expr for expr in dashboard_queries())


def test_the_alert_rules_cover_the_issue_and_name_exported_metrics() -> None:
    rules = alert_rules()
    assert {rule["alert"] for rule in rules} >= REQUIRED_ALERTS
    for rule in rules:
        assert {"summary", "description"} <= set(rule["annotations"]), rule["alert"]
        names = named_metrics(rule["expr"]) - {"churn_consumer"}  # a job label value, not a metric
        assert names <= set(metrics.EXPORTED), f"{rule['alert']}: {names - set(metrics.EXPORTED)}"
    by_name = {rule["alert"]: rule for rule in rules}
    assert by_name["ChurnConsumerNotReady"]["for"] == "2m"
    assert by_name["ChurnLagGrowing"]["for"] == "5m"
    assert "> 60" in by_name["ChurnNoCommit"]["expr"]


def test_prometheus_scrapes_the_conventional_ports() -> None:
    config = yaml.safe_load((MONITORING / "prometheus.yml").read_text())
    targets = {job["job_name"]: job["static_configs"][0]["targets"] for job in config["scrape_configs"]}
    assert targets == {
        "churn-consumer": [f"localhost:{CONSUMER_METRICS_PORT}"],
        "churn-producer": [f"localhost:{PRODUCER_METRICS_PORT}"],
    }
    assert config["rule_files"] == ["alerts.yml"]


# -- deploy/


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

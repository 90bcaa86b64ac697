"""monitoring/ agrees with the code: every query names a metric the code exports, every port is the one
the code serves. (The real Prometheus runs them in tests/integration; deploy/ is tests/unit/test_deploy.py.)"""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from churnstream.observability import metrics
from churnstream.observability.server import CONSUMER_METRICS_PORT, PRODUCER_METRICS_PORT
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

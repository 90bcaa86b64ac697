"""A real Prometheus (Debian's package) scraping a real consumer on the real broker.

One consumer run, with good and malformed events: Prometheus' count of scored events equals the
consumer's own; the consumer's metrics equal its summary, dead letters by stage included; its JSON
log parses line by line and each dead letter's warning names its partition and offset; every
dashboard query and alert expression is accepted by Prometheus; the rules pass promtool.
"""

from __future__ import annotations

import json
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
import yaml

from churnstream.contract.events import utc_now_iso
from churnstream.harness.badinput import pick
from churnstream.kafka.clients import make_producer
from churnstream.localmonitor.prometheus import MONITORING_DIR, RULES_FILE, Binaries, Server, install, start, stop
from churnstream.settings import Settings
from tests.helpers import free_port, http_get, run_script, scrape, start_script, wait_until
from tests.unit.test_monitoring import alert_rules, dashboard_queries

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

GOOD, BAD = 400, 24


@pytest.fixture(scope="module")
def prometheus() -> Binaries:
    return install()  # from Debian's archive on first use; fails the test (not skips) where it cannot


def test_promtool_accepts_the_configuration_and_the_alerts_fire_as_specified(prometheus: Binaries) -> None:
    for command in (
        ["check", "config", str(MONITORING_DIR / "prometheus.yml")],
        ["check", "rules", str(RULES_FILE)],
        ["test", "rules", str(MONITORING_DIR / "alerts_test.yml")],
    ):
        result = subprocess.run([str(prometheus.promtool), *command], capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout + result.stderr


@pytest.fixture
def scraping(prometheus: Binaries, tmp_path: Path) -> Iterator[Callable[[int], Server]]:
    """Start a Prometheus on a free port that scrapes the given consumer port every second, with the
    project's own configuration (its rules included), only the target and the interval changed."""
    servers: list[Server] = []

    def begin(consumer_port: int) -> Server:
        config = yaml.safe_load((MONITORING_DIR / "prometheus.yml").read_text())
        config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
        config["rule_files"] = [str(RULES_FILE)]
        config["scrape_configs"] = [
            {"job_name": "churn-consumer", "static_configs": [{"targets": [f"127.0.0.1:{consumer_port}"]}]}
        ]
        path = tmp_path / "prometheus.yml"
        path.write_text(yaml.safe_dump(config))
        servers.append(start(prometheus, path, free_port(), tmp_path / "prometheus"))
        return servers[-1]

    yield begin
    for server in servers:
        stop(server)


def send_events(settings: Settings) -> None:
    """GOOD valid events through the real producer CLI's rows, BAD malformed ones as raw bytes."""
    producer = make_producer(settings)
    try:
        for bad in pick(BAD, "mon", utc_now_iso()):
            producer.send(settings.topic_raw, key=bad.key, value=bad.value)
        producer.flush(timeout=30)
    finally:
        producer.close()


def test_prometheus_counts_what_the_consumer_counts_and_the_summary_says(
    pipeline_env: dict[str, str], pipeline_settings: Settings, scraping: Callable[[int], Server], tmp_path: Path
) -> None:
    produced = run_script("producer.py", ["--mode", "batch", "--limit", str(GOOD), "--no-progress"], pipeline_env)
    assert produced.returncode == 0, produced.stderr
    send_events(pipeline_settings)

    port = free_port()
    summary_path = tmp_path / "summary.json"
    consumer = start_script(
        "consumer.py",
        ["--metrics-port", str(port), "--log-format", "json", "--log-interval", "1", "--duration", "120",
         "--summary-json", str(summary_path)],
        pipeline_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        server = scraping(port)
        wait_until(lambda: scrape(port).get("churn_events_consumed_total") == GOOD + BAD, 90, "every event consumed")
        ours = scrape(port)

        def prometheus_agrees() -> bool:
            result = server.query('sum(churn_events_scored_total{job="churn-consumer"})')
            return bool(result) and float(result[0]["value"][1]) == ours["churn_events_scored_total"]

        wait_until(prometheus_agrees, 30, "Prometheus to scrape the final count")
        wait_until(lambda: bool(server.query("churn_consumer_ready == 1")), 30, "Prometheus to see it ready")
        assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
        for expr in dashboard_queries() + [rule["expr"] for rule in alert_rules()]:
            server.query(expr.replace("$instance", ".*"))  # raises if Prometheus refuses the expression
        rules = server.get("/api/v1/rules")["groups"]
        assert sum(len(group["rules"]) for group in rules) == len(alert_rules())
    finally:
        consumer.terminate()
        out, err = consumer.communicate(timeout=90)
    assert consumer.returncode == 0, err[-3000:]

    summary = orjson.loads(summary_path.read_bytes())
    assert (summary["consumed"], summary["scored"], summary["dead_lettered"]) == (GOOD + BAD, GOOD, BAD)
    assert ours["churn_events_consumed_total"] == summary["consumed"]
    assert ours["churn_events_scored_total"] == summary["scored"]
    by_stage = {
        name.split('"')[1]: value for name, value in ours.items() if name.startswith("churn_events_dead_lettered_total")
    }
    assert by_stage == {stage: float(count) for stage, count in summary["dead_lettered_by_stage"].items()}
    assert ours["churn_event_latency_seconds_count"] == GOOD  # one observation per prediction
    assert ours['churn_transactions_total{result="committed"}'] == summary["batches"]
    assert ours["churn_assigned_partitions"] == pipeline_settings.topic_partitions
    assert ours["churn_last_commit_timestamp_seconds"] > 0

    lines = [json.loads(line) for line in err.splitlines()]  # every line is one JSON object
    assert all(line["ts"].endswith("Z") and "." in line["ts"] for line in lines)
    dead = [line for line in lines if "offset" in line]
    summed_up = [re.match(r"dead-lettered (\d+) more", line["message"]) for line in lines]
    assert len(dead) + sum(int(match.group(1)) for match in summed_up if match) == BAD  # 20 a batch, one by one
    assert all(line["message"].startswith("dead-lettered ") for line in dead)
    assert all(isinstance(line["partition"], int) and isinstance(line["offset"], int) for line in dead)
    assert {line["topic"] for line in dead} == {pipeline_settings.topic_raw}
    assert any(line["message"].startswith("heartbeat: ") for line in lines)
    assert Counter(line["level"] for line in dead) == {"WARNING": len(dead)}
    assert out.strip()  # the summary, on stdout

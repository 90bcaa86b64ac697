"""Plain helpers for tests: subprocess runners, private clusters, small CSV rows."""

from __future__ import annotations

import csv
import functools
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from kafka import KafkaAdminClient
from kafka.consumer.fetcher import ConsumerRecord
from kafka.errors import KafkaError
from prometheus_client.parser import text_string_to_metric_families

from churnstream import localkafka as broker
from churnstream.contract.events import Contract, load_contract
from churnstream.kafka.reading import read_all
from churnstream.ml.store import resolve_model
from churnstream.producer.checkpoint import Checkpoint, read_checkpoint
from churnstream.settings import DEFAULT_DATA_PATH, DEFAULT_SCHEMA_PATH, Settings, settings_from

ROOT = Path(__file__).resolve().parent.parent


def lock_pins(path: Path) -> dict[str, str]:
    """``name==version`` lines of a requirements or lock file, names lower-cased (hashes, comments, -r lines aside)."""
    pins = {}
    for line in path.read_text().splitlines():
        if "==" in line and not line.startswith((" ", "#", "-")):
            name, version = line.split()[0].split("==")
            pins[name.lower()] = version
    return pins


def current_model_path() -> Path:
    """The model file of the project store's current version (``make model`` sets it up); tests pin it,
    so a promotion while they run changes nothing for them."""
    return resolve_model(settings_from({})).model_path


def current_card_path() -> Path:
    return resolve_model(settings_from({})).card_path


def private_pipeline_env(bootstrap: str, unique: Callable[[str], str], workdir: Path) -> dict[str, str]:
    """Environment variables for one test's private pipeline: its own topics, group, checkpoints, and
    the current model pinned by MODEL_PATH."""
    return {
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_TOPIC_RAW": unique("raw"),
        "KAFKA_TOPIC_PREDICTIONS": unique("pred"),
        "KAFKA_TOPIC_DEADLETTER": unique("dlq"),
        "KAFKA_TOPIC_PREDICTIONS_SHADOW": unique("shadow"),
        "KAFKA_CONSUMER_GROUP": unique("group"),
        "CHECKPOINT_DIR": str(workdir / "checkpoints"),
        "MODEL_PATH": str(current_model_path()),
        "DATA_PATH": str(DEFAULT_DATA_PATH),
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def broker_answers(bootstrap: str, timeout_ms: int = 3000) -> bool:
    host, _, port = bootstrap.split(",", maxsplit=1)[0].rpartition(":")
    try:
        with socket.create_connection((host or "localhost", int(port)), timeout=1):
            pass
    except OSError:
        return False
    try:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap.split(","), bootstrap_timeout_ms=timeout_ms)
    except KafkaError:
        return False
    admin.close()
    return True


def start_local_cluster(home: Path, brokers: int = 1, secure: bool = False) -> broker.Layout:
    """A private KRaft cluster on free ports (for tests that stop or kill brokers).

    ``secure`` adds the SASL_SSL listener on port + 2 of each node (``up --secure``).
    """
    layout = broker.private_layout(home, brokers, secure)
    broker.up(layout)
    return layout


def script_env(extra: Mapping[str, str]) -> dict[str, str]:
    """The environment for a script subprocess: ours, minus any developer .env and Kafka settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(
            ("KAFKA_", "MODEL_", "DATA_", "EVENT_", "CHECKPOINT_", "CONSUMER_", "METRICS_", "PRODUCER_", "LOG_")
        )
    }
    env.update({"CHURN_DOTENV": "none", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def _run(command: list[str], env: Mapping[str, str], timeout: float, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command,
        env=script_env(env),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        **kwargs,
    )


def run_script(
    script: str, args: list[str], env: Mapping[str, str], timeout: float = 120, **kwargs: Any
) -> subprocess.CompletedProcess[str]:
    """Run a top-level script (producer.py, consumer.py, ...) as a real subprocess."""
    return _run([sys.executable, str(ROOT / script), *args], env, timeout, **kwargs)


def run_module(
    module: str, args: list[str], env: Mapping[str, str], timeout: float = 120, python: str | Path = sys.executable
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m module`` (churnstream.replay, churnstream.broker, ...) as a real subprocess; ``python``
    another interpreter (the Quix Streams baseline's)."""
    return _run([str(python), "-m", module, *args], env, timeout)


def read_all_records(settings: Settings, topic: str) -> list[ConsumerRecord]:
    """Every committed record of a topic, in partition then offset order (read_committed)."""
    return read_all(settings, topic, timeout_s=60)


def start_script(script: str, args: list[str], env: Mapping[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(ROOT / script), *args],
        env=script_env(env),
        cwd=ROOT,
        text=True,
        **kwargs,
    )


SAMPLE_ROW: dict[str, str] = {
    "customerID": "0001-TEST",
    "gender": "Female",
    "SeniorCitizen": "0",
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": "1",
    "PhoneService": "No",
    "MultipleLines": "No phone service",
    "InternetService": "DSL",
    "OnlineSecurity": "No",
    "OnlineBackup": "Yes",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "No",
    "StreamingMovies": "No",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": "29.85",
    "TotalCharges": "29.85",
    "Churn": "No",
}


def make_rows(count: int) -> list[dict[str, str]]:
    """Small, valid CSV-shaped rows for tests that need no real data."""
    rows = []
    for index in range(count):
        row = dict(SAMPLE_ROW)
        row["customerID"] = f"{index:04d}-TEST"
        row["tenure"] = str(index % 72)
        row["MonthlyCharges"] = f"{20 + index % 90:.2f}"
        row["TotalCharges"] = " " if index % 50 == 0 else f"{(index % 72) * (20 + index % 90):.2f}"
        row["Contract"] = ("Month-to-month", "One year", "Two year")[index % 3]
        row["Churn"] = ("No", "Yes")[index % 4 == 0]
        rows.append(row)
    return rows


@functools.cache
def telco_contract() -> Contract:
    """The Telco schema (schemas/event.schema.json), compiled (once per test process)."""
    return load_contract(DEFAULT_SCHEMA_PATH)


def telco_event(row: Mapping[str, str], event_id: str = "e-1", event_ts: str = "2026-11-27T08:00:00.000Z") -> dict:
    """A CSV row as the producer makes it an event of the Telco schema."""
    return telco_contract().event_from_row(row, event_id=event_id, event_ts=event_ts)


def telco_features(row: Mapping[str, str]) -> tuple[Any, ...]:
    """A CSV row's features as the consumer hands them to the model (a tuple in the schema's order)."""
    return telco_contract().features_of(telco_event(row))


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(SAMPLE_ROW))
        writer.writeheader()
        writer.writerows(rows)
    return path


def checkpoint_path(env: dict[str, str]) -> Path:
    return Path(env["CHECKPOINT_DIR"]) / f"{env['KAFKA_TOPIC_RAW']}.json"


def wait_for_progress(path: Path, at_least: int, process: subprocess.Popen[str], timeout_s: float = 60) -> Checkpoint:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"producer exited early with {process.returncode}"
        checkpoint = read_checkpoint(path) if path.exists() else None
        if checkpoint is not None and checkpoint.next_row >= at_least:
            return checkpoint
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint progress to {at_least} rows within {timeout_s} s")


def http_get(url: str, timeout: float = 5) -> tuple[int, str]:
    """Status and body of a GET (a 503 is an answer, not an error); (0, reason) when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except (urllib.error.URLError, OSError) as exc:
        return 0, str(exc)


def scrape(port: int) -> dict[str, float]:
    """The samples on a /metrics port as ``{'name{label="v",...}': value}`` (labels sorted); {} if down."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        return {}
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str, interval_s: float = 0.25) -> float:
    """Poll ``predicate`` until true; the seconds it took. Fails the test with ``what`` on timeout."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout_s:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)
    return time.monotonic() - start

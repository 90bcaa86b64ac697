"""Shared fixtures: one real Kafka broker per test session, unique topics and groups per test.

The broker: if something answers at ``KAFKA_BOOTSTRAP_SERVERS`` (default localhost:29092), the
tests use it; otherwise the session starts the project's own KRaft broker in a temporary home on
free ports and stops it at the end, so a test run leaves nothing behind.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from churnstream import broker
from churnstream.data import DATASET_SHA256, sha256_file
from config import DEFAULT_BOOTSTRAP_SERVERS, DEFAULT_DATA_PATH, Settings, settings_from
from tests.helpers import broker_answers, private_pipeline_env, start_local_cluster


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    candidate = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_BOOTSTRAP_SERVERS
    if broker_answers(candidate):
        yield candidate
        return
    layout = start_local_cluster(tmp_path_factory.mktemp("kafka-home"))
    try:
        yield layout.bootstrap_servers
    finally:
        broker.down(layout)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("raw")`` -> a topic or group name no other test (or run) uses."""
    run = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"t-{_slug(request.node.name)}-{kind}-{run}"

    return make


@pytest.fixture
def pipeline_env(kafka_bootstrap: str, unique: Callable[[str], str], tmp_path: Path) -> dict[str, str]:
    """Environment variables for one test's private pipeline: its own topics, group, checkpoints."""
    return private_pipeline_env(kafka_bootstrap, unique, tmp_path)


@pytest.fixture
def pipeline_settings(pipeline_env: dict[str, str]) -> Settings:
    return settings_from(pipeline_env)


@pytest.fixture
def admin(kafka_bootstrap: str) -> Iterator[KafkaAdminClient]:
    client = KafkaAdminClient(bootstrap_servers=kafka_bootstrap.split(","), bootstrap_timeout_ms=5000)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The verified Telco CSV (fetched by the set-up command)."""
    if not DEFAULT_DATA_PATH.is_file() or sha256_file(DEFAULT_DATA_PATH) != DATASET_SHA256:
        pytest.fail(f"{DEFAULT_DATA_PATH} is missing or altered: run 'make data' (make test does)")
    return DEFAULT_DATA_PATH

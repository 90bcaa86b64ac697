"""Shared fixtures: one real Kafka broker per test session, unique topics and groups per test.

The broker: the session starts the project's own KRaft broker in a temporary home on free ports
and stops it at the end, so a test run leaves nothing behind (and never touches the broker of
``make demo`` or a cluster named in ``.env``). ``TEST_KAFKA_BOOTSTRAP_SERVERS`` names a running
broker to use instead.
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
from config import DEFAULT_DATA_PATH, Settings, settings_from
from tests.helpers import broker_answers, private_pipeline_env, start_local_cluster

TEST_BOOTSTRAP_ENV = "TEST_KAFKA_BOOTSTRAP_SERVERS"


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The session's broker: a private one on free ports, started here and stopped at the end.

    An existing broker is used only when named in TEST_KAFKA_BOOTSTRAP_SERVERS (a faster loop while
    developing). Never KAFKA_BOOTSTRAP_SERVERS: that may name a real cluster (from .env), and the
    demo broker on localhost:29092 should not fill with test topics.
    """
    named = os.environ.get(TEST_BOOTSTRAP_ENV)
    if named:
        if not broker_answers(named):
            pytest.exit(f"{TEST_BOOTSTRAP_ENV}={named}: no broker answers there", returncode=2)
        yield named
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

"""One real Kafka broker per test session, and a private pipeline (topics, group, checkpoints) per test.

The broker: the session starts the project's own KRaft broker in a temporary home on free ports
and stops it at the end, so a test run leaves nothing behind (and never touches the broker of
``make demo`` or a cluster named in ``.env``). ``TEST_KAFKA_BOOTSTRAP_SERVERS`` names a running
broker to use instead.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient

from churnstream import localkafka
from churnstream.settings import Settings, settings_from
from tests.helpers import broker_answers, private_pipeline_env, start_local_cluster

TEST_BOOTSTRAP_ENV = "TEST_KAFKA_BOOTSTRAP_SERVERS"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Everything in this folder is an integration test (``-m "not integration"`` skips it)."""
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)


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
        localkafka.down(layout)


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

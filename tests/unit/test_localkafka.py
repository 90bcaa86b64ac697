"""The local broker launcher's pure parts: its configuration, ids and prerequisites (no JVM started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnstream import localkafka as broker
from churnstream.errors import BrokerToolingError
from churnstream.localkafka import cluster


def test_missing_java_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(BrokerToolingError, match=r"Java 17\+ is needed.*not on PATH"):
        broker.require_java()


def test_server_properties_fit_one_node_and_three(tmp_path: Path) -> None:
    single = cluster.server_properties(broker.Layout(home=tmp_path), 0)
    assert "offsets.topic.replication.factor=1\n" in single
    assert "transaction.state.log.replication.factor=1\n" in single
    assert "controller.quorum.voters=1@localhost:29093\n" in single
    three = cluster.server_properties(broker.Layout(home=tmp_path, brokers=3), 2)
    assert "node.id=3\n" in three and "listeners=PLAINTEXT://localhost:29292," in three
    assert "min.insync.replicas=2\n" in three and "default.replication.factor=3\n" in three


def test_cluster_ids_never_start_with_a_dash(tmp_path: Path) -> None:
    """kafka-storage reads '-t -abc' as two flags; 1 random id in 64 starts with '-'."""
    ids = []
    for index in range(300):
        layout = broker.Layout(home=tmp_path / f"h{index}")
        ids.append(cluster._cluster_id(layout))
    assert not any(cluster_id.startswith("-") for cluster_id in ids)
    assert all(len(cluster_id) == 22 for cluster_id in ids)

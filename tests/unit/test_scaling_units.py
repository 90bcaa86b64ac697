"""Scaling without a cluster: the replication choice, and the scaling benchmark's arithmetic."""

from __future__ import annotations

from typing import Any

import pytest

from benchmarks import bench_scaling
from churnstream.errors import ConfigError
from churnstream.kafka.topics import choose_replication_factor


@pytest.mark.parametrize(("brokers", "expected"), [(1, 1), (2, 2), (3, 3), (6, 3)])
def test_unset_replication_is_min_of_three_and_the_brokers(brokers: int, expected: int) -> None:
    assert choose_replication_factor(None, brokers) == expected


def test_a_set_replication_factor_is_used_as_it_is() -> None:
    assert choose_replication_factor(1, 3) == 1
    assert choose_replication_factor(3, 5) == 3


def test_a_replication_factor_larger_than_the_cluster_names_the_variable() -> None:
    with pytest.raises(ConfigError) as caught:
        choose_replication_factor(3, 1, "localhost:29092")
    assert str(caught.value) == (
        "KAFKA_REPLICATION_FACTOR='3' is not valid: the cluster at localhost:29092 has 1 broker(s); "
        "use at most 1, or leave it unset for min(3, brokers)"
    )


def test_partitions_cap_the_speed_up() -> None:
    assert bench_scaling.partition_split(6, 1) == [6]
    assert bench_scaling.partition_split(6, 4) == [2, 2, 1, 1]
    assert bench_scaling.partition_split(6, 8) == [1, 1, 1, 1, 1, 1, 0, 0]


def test_the_summary_takes_the_median_run_and_the_speed_up_over_one_consumer() -> None:
    def entry(consumers: int, rate: float) -> dict[str, Any]:
        cores = {"consumers": 1.0, "brokers": 0.5, "benchmark": 0.0, "machine": 1.9, "other": 0.4}
        return {
            "brokers": 1,
            "consumers": consumers,
            "events_per_sec": rate,
            "cores": cores,
            "cpu_us_per_event": {"consumers": 100.0, "brokers": 20.0},
            "consumer_events": [10],
        }

    rows = bench_scaling.summarise([entry(1, 900.0), entry(1, 1000.0), entry(1, 1100.0), entry(2, 1500.0)])
    assert [(r["consumers"], r["events_per_sec"], r["speedup"]) for r in rows] == [(1, 1000.0, 1.0), (2, 1500.0, 1.5)]
    assert bench_scaling.limit_note(rows[0], cpu_count=2) == "CPU: the machine's 2 cores were 95% busy"


def test_the_cpu_ceiling_is_the_cores_over_the_cpu_per_event() -> None:
    rows = [
        {"brokers": 1, "cpu_us_per_event": {"consumers": 120.0, "brokers": 40.0}},
        {"brokers": 1, "cpu_us_per_event": {"consumers": 110.0, "brokers": 50.0}},
        {"brokers": 3, "cpu_us_per_event": {"consumers": 120.0, "brokers": 130.0}},
    ]
    ceilings = bench_scaling.cpu_ceilings(rows, cpu_count=2)
    assert ceilings["1"] == {
        "consumer_cpu_us_per_event": 115.0,
        "broker_cpu_us_per_event": 45.0,
        "events_per_sec": 12500,
    }
    assert ceilings["3"]["events_per_sec"] == 8000


def test_the_benchmark_has_help() -> None:
    with pytest.raises(SystemExit) as caught:
        bench_scaling.main(["--help"])
    assert caught.value.code == 0


def test_topic_settings_keep_dead_letters_and_the_ledger_and_need_two_replicas_on_three() -> None:
    """Before: the dead-letter topic expired after the broker's 7 days, the ledger too, and topics on
    three replicas accepted a write on one (no min.insync.replicas)."""
    from churnstream.kafka.topics import ledger_topic, topic_configs  # noqa: PLC0415
    from churnstream.settings import settings_from  # noqa: PLC0415

    settings = settings_from({})
    dead = topic_configs(settings, settings.topic_deadletter)
    assert dead["retention.ms"] == "-1" and int(dead["max.message.bytes"]) >= 2 * 1024 * 1024
    assert topic_configs(settings, ledger_topic(settings)) == {"cleanup.policy": "compact", "retention.ms": "-1"}
    assert topic_configs(settings, settings.topic_raw, replication_factor=3) == {"min.insync.replicas": "2"}
    assert topic_configs(settings, settings.topic_raw, replication_factor=1) == {}
    kept = settings_from({"KAFKA_DEADLETTER_RETENTION_MS": "86400000"})
    assert topic_configs(kept, kept.topic_deadletter)["retention.ms"] == "86400000"
    with pytest.raises(ConfigError, match="KAFKA_DEADLETTER_RETENTION_MS='60' is not valid"):
        settings_from({"KAFKA_DEADLETTER_RETENTION_MS": "60"})

"""Outage logging without a broker: a storm of client retries becomes one warning and one recovery line."""

from __future__ import annotations

import logging

import pytest

from churnstream.kafka.outage import OutageMonitor, watch_broker


def _failure(monitor: OutageMonitor, message: str, level: int = logging.ERROR) -> None:
    monitor.handle(logging.LogRecord("kafka.net.manager", level, __file__, 1, message, None, None))


def test_an_outage_is_one_warning_and_one_recovery_line(caplog: pytest.LogCaptureFixture) -> None:
    now = [100.0]
    monitor = OutageMonitor("localhost:1", clock=lambda: now[0])
    caplog.set_level(logging.INFO, logger="churnstream.kafka.outage")
    monitor.progress()  # no outage: nothing to say
    for _ in range(50):
        _failure(monitor, "Connection failed: KafkaConnectionError: 111 ECONNREFUSED")
        _failure(monitor, "<KafkaConnection node_id=1>: Connection lost: KafkaConnectionError: 111 ECONNREFUSED")
        _failure(monitor, "No node available for metadata refresh - backoff/retry", logging.WARNING)
        now[0] += 0.25
    monitor.progress()
    monitor.progress()
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2, messages
    assert messages[0].startswith("lost connection to the broker at localhost:1 (111 ECONNREFUSED); ")
    assert messages[1] == "broker at localhost:1 back after 12.5 s (50 failed connection attempts)"
    assert (monitor.outages, monitor.total_failed_attempts, monitor.longest_outage_s) == (1, 50, 12.5)


def test_a_dropped_connection_that_reconnects_is_not_an_outage(caplog: pytest.LogCaptureFixture) -> None:
    monitor = OutageMonitor("localhost:1")
    caplog.set_level(logging.INFO, logger="churnstream.kafka.outage")
    _failure(monitor, "<KafkaTCPTransport>: socket disconnected")
    _failure(monitor, "<KafkaConnection node_id=1>: Connection lost: KafkaConnectionError: socket disconnected")
    monitor.progress()
    assert caplog.records == [] and not monitor.lost


def test_watch_broker_keeps_the_client_quiet_and_restores_its_logger(caplog: pytest.LogCaptureFixture) -> None:
    kafka_logger = logging.getLogger("kafka")
    level, propagate = kafka_logger.level, kafka_logger.propagate
    kafka_logger.setLevel(logging.CRITICAL)  # as cli.setup_logging leaves it
    caplog.set_level(logging.INFO, logger="churnstream.kafka.outage")
    try:
        with watch_broker("localhost:1") as monitor:
            logging.getLogger("kafka.net.manager").error("Connection failed: KafkaConnectionError: 111 ECONNREFUSED")
            assert monitor.lost
        assert kafka_logger.level == logging.CRITICAL and kafka_logger.propagate
    finally:
        kafka_logger.setLevel(level)
        kafka_logger.propagate = propagate
    messages = [r.getMessage() for r in caplog.records]
    assert not any("Connection failed" in m for m in messages)  # the client's own line stayed quiet
    assert messages[0].startswith("lost connection to the broker at localhost:1")
    assert messages[1].startswith("stopping before any progress since the broker at localhost:1 was lost")

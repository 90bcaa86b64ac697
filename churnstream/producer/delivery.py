"""Delivery: handing events to the client, counting acknowledgements from callbacks, bounded flushes.

Never a flush per message: the loops flush once per chunk (batch) or at the end (streaming).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from kafka import errors as kafka_errors
from kafka.future import Future

from churnstream.kafka.clients import FLUSH_TIMEOUT_S
from churnstream.producer.rows import PreparedRow, build_value

logger = logging.getLogger(__name__)

# How many failed deliveries are logged one by one; the rest are only counted.
LOGGED_FAILURES = 5


class Sender(Protocol):
    """What the loops need of KafkaProducer (and what the unit tests fake)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future: ...

    def flush(self, timeout: float | None = None) -> None: ...


class DeliveryTracker:
    """Counts acknowledged and failed events from the futures' callbacks, never per-message flush.

    The callbacks usually run on the producer's sender thread, but kafka-python runs a callback at
    once, in the caller's thread, when the future is already done as it is added: so the delivery
    counters can have two writers, and take a lock (uncontended: well under a microsecond).
    """

    def __init__(self, on_ack: Callable[[], None] | None = None) -> None:
        self.sent = 0
        self.acknowledged = 0
        self._on_ack_hook = on_ack  # outage.OutageMonitor.progress: an acknowledgement means the broker is there
        self._failed_deliveries = 0
        self.refused = 0  # send() itself raised: the client could not even buffer the event
        self.first_errors: list[str] = []
        self._lock = threading.Lock()

    @property
    def failed(self) -> int:
        return self._failed_deliveries + self.refused

    @property
    def pending(self) -> int:
        return self.sent - self.acknowledged - self._failed_deliveries

    def track(self, future: Future, event_id: str) -> None:
        self.sent += 1
        future.add_callback(self._on_ack)
        future.add_errback(self._on_error, event_id)

    def refuse(self, event_id: str, exc: Exception) -> None:
        self.refused += 1
        self._note(event_id, exc)

    def _on_ack(self, _metadata: object) -> None:
        with self._lock:
            self.acknowledged += 1
        if self._on_ack_hook is not None:
            self._on_ack_hook()

    def _on_error(self, event_id: str, exc: BaseException) -> None:
        with self._lock:
            self._failed_deliveries += 1
            self._note(event_id, exc)

    def _note(self, event_id: str, exc: BaseException) -> None:
        if len(self.first_errors) < LOGGED_FAILURES:
            text = f"event {event_id}: {type(exc).__name__}: {exc}"
            self.first_errors.append(text)
            logger.error("delivery failed for %s", text)


def send_event(
    sender: Sender, topic: str, row: PreparedRow, event_id: str, event_ts: str, *, tracker: DeliveryTracker
) -> bool:
    """Hand one event to the client. False when the client refused it (buffer full past
    max_block_ms, no metadata): the broker is gone for longer than the client waits."""
    try:
        future = sender.send(topic, value=build_value(row, event_id, event_ts), key=row.key)
    except kafka_errors.KafkaTimeoutError as exc:
        tracker.refuse(event_id, exc)
        logger.error("the client could not take event %s (%s); stopping the run", event_id, exc)
        return False
    tracker.track(future, event_id)
    return True


def flush_bounded(sender: Sender, tracker: DeliveryTracker) -> None:
    """Wait for every outstanding event, at most FLUSH_TIMEOUT_S. A second Ctrl-C gives up waiting.
    Either way the events still pending are not acknowledged, and the run fails."""
    try:
        sender.flush(timeout=FLUSH_TIMEOUT_S)
    except KeyboardInterrupt:
        logger.error("interrupted again: not waiting for %d unacknowledged event(s)", tracker.pending)
    except kafka_errors.KafkaTimeoutError:
        logger.error("gave up after %d s waiting for %d unacknowledged event(s)", FLUSH_TIMEOUT_S, tracker.pending)

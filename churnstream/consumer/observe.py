"""What the loop tells the outside world: health, lag, metrics, a heartbeat line, one line per dead letter.

Dead-letter lines are bounded twice: each value taken from an event is cut to LOGGED_VALUE_CHARS
(with a marker that says so), and at most LOGGED_DEAD_LETTERS_PER_SECOND lines are written in a
second; the ones left out are counted in a metric and summed up in one line when the second is
over, so a flood of bad input cannot flood the log. The dead-letter topic has them all.

The loop calls :class:`LoopObserver` once per turn and once per delivered or aborted batch. Its
work per turn is a few attribute writes and one watermark read per assigned partition; per batch,
counter increments and one histogram update for the whole batch. Metrics only when a port is set.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable

import numpy as np
from kafka import KafkaConsumer
from kafka.structs import MemberState, TopicPartition

from churnstream.consumer.drift import DriftWatch
from churnstream.consumer.scoring import BatchResult
from churnstream.consumer.sinks import Batch
from churnstream.consumer.stats import RunStats
from churnstream.contract.outputs import clip
from churnstream.kafka.group import fetch_position
from churnstream.observability.health import Health
from churnstream.observability.lag import LagTracker
from churnstream.observability.metrics import ConsumerMetrics

logger = logging.getLogger(__name__)

# Dead letters logged one by one, a second; a flood of bad input is summed up in one more line
# (the dead-letter topic and the metric have them all).
LOGGED_DEAD_LETTERS_PER_SECOND = 20
# Characters of a value taken from an event (its event_id, a reason that quotes it) in a log line.
LOGGED_VALUE_CHARS = 200


class LoopObserver:
    def __init__(
        self,
        stats: RunStats,
        health: Health,
        metrics: ConsumerMetrics | None = None,
        *,
        log_interval_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        drift: DriftWatch | None = None,
    ) -> None:
        self.stats = stats
        self.health = health
        self.metrics = metrics
        self.drift = drift
        self.log_interval_s = log_interval_s
        self._clock = clock
        now = clock()
        self._next_log = now + log_interval_s
        self._logged_consumed = 0
        self._logged_at = now
        self.dead_letter_log = DeadLetterLog(clock, metrics)

    @property
    def lag(self) -> LagTracker:
        """The health object's table: the probes and the metrics read the same one."""
        return self.health.lag

    # -- from the rebalance listener (inside poll, on the loop's thread)

    def assigned(self, partitions: list[TopicPartition]) -> None:
        self.lag.assigned(partitions, self._clock())
        if self.metrics is not None:
            self.metrics.assignment()

    def revoked(self, partitions: list[TopicPartition]) -> None:
        self.lag.revoked(partitions)  # the lag gauges are read from the tracker: its series go too

    # -- from the loop

    def turned(self, consumer: KafkaConsumer, *, idle: bool = False) -> None:
        """After each poll; ``idle`` when it returned nothing (all fetched work is committed)."""
        now = self._clock()
        self.health.beat(joined=consumer.group_metadata().state == MemberState.STABLE)
        for tp in consumer.assignment():
            self.lag.observe(tp, consumer.highwater(tp), None, now)
            if idle:
                self.lag.idle(tp, fetch_position(consumer, tp))
        if self.log_interval_s > 0 and now >= self._next_log:
            self._heartbeat(now)

    def delivered(self, batch: Batch, stage_seconds: dict[str, float]) -> None:
        now = self._clock()
        for tp, offset in batch.offsets.items():
            self.lag.committed(tp, offset.offset, now)
        result = batch.result
        if self.metrics is not None:
            by_stage = Counter(dead.stage for dead in result.dead_letters)
            self.metrics.batch(result.consumed, result.scored, dict(by_stage), stage_seconds)
            self.metrics.latencies(np.asarray(result.event_ms, dtype=float), time.time() * 1000.0)
        if self.drift is not None:
            self.drift.batch(result.scored_features, result.probabilities)
        if result.dead_letters:
            self.dead_letter_log.log(result, batch)

    def finished(self) -> None:
        """The loop ended: sum up the dead-letter lines left out since the last such line."""
        self.dead_letter_log.sum_up(self._clock())

    def aborted(self) -> None:
        if self.metrics is not None:
            self.metrics.aborted()

    def _heartbeat(self, now: float) -> None:
        totals = self.stats.totals
        rate = (totals.consumed - self._logged_consumed) / max(now - self._logged_at, 1e-9)
        logger.info(
            "heartbeat: consumed=%d scored=%d dead_lettered=%d events/s=%.0f lag=%d partitions=%d",
            totals.consumed,
            totals.scored,
            totals.dead_lettered,
            rate,
            self.lag.total_records(),
            len(self.lag.assignment()),
        )
        self._logged_consumed, self._logged_at = totals.consumed, now
        self._next_log = now + self.log_interval_s


class DeadLetterLog:
    """One warning per dead letter, with the coordinates an operator needs to find the record, at most
    LOGGED_DEAD_LETTERS_PER_SECOND in a second; the rest counted, and summed up when the second is over."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, metrics: ConsumerMetrics | None = None) -> None:
        self._clock = clock
        self._metrics = metrics
        self._second_from = clock()
        self._logged = 0  # in the second from _second_from
        self.left_out = 0  # likewise

    def log(self, result: BatchResult, batch: Batch) -> None:
        now = self._clock()
        if now - self._second_from >= 1.0:
            self.sum_up(now)
        topic = next(iter(batch.offsets)).topic if batch.offsets else ""
        dead_letters = result.dead_letters
        logged = min(len(dead_letters), LOGGED_DEAD_LETTERS_PER_SECOND - self._logged)
        for dead in dead_letters[:logged]:
            event_id = None if dead.event_id is None else clip(dead.event_id, LOGGED_VALUE_CHARS)
            logger.warning(
                "dead-lettered %s[%d]@%d at %s: %s",
                topic,
                dead.partition,
                dead.offset,
                dead.stage,
                clip(dead.reason, LOGGED_VALUE_CHARS),
                extra={"event_id": event_id, "topic": topic, "partition": dead.partition, "offset": dead.offset},
            )
        self._logged += logged
        left_out = len(dead_letters) - logged
        if left_out:
            self.left_out += left_out
            if self._metrics is not None:
                self._metrics.dead_letter_lines_left_out(left_out)

    def sum_up(self, now: float) -> None:
        """One line for the dead letters left out since the second began; a new second begins."""
        if self.left_out:
            logger.warning(
                "dead-lettered %d more event(s) in the last %.1f s, not logged one by one (all are on the "
                "dead-letter topic)",
                self.left_out,
                now - self._second_from,
            )
        self._second_from, self._logged, self.left_out = now, 0, 0

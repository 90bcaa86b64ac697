"""What the harness reads: the outputs as they become readable, and the raw topic to account for."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from churnstream.consumer.scoring import RawRecord
from churnstream.contract.outputs import DeadLetterInfo, MalformedOutput, Stage, decode_prediction
from churnstream.harness.analysis import ObservedDeadLetter, ObservedPrediction
from churnstream.harness.plan import RunTopics
from churnstream.kafka.clients import make_consumer
from churnstream.kafka.reading import read_to_end
from churnstream.settings import Settings


class OutcomeReader(threading.Thread):
    """Reads predictions and dead letters with read_committed, timestamping when each arrives."""

    def __init__(self, settings: Settings, topics: RunTopics) -> None:
        super().__init__(name="outcome-reader", daemon=True)
        self._settings = settings
        self._topics = topics
        self.predictions: list[ObservedPrediction] = []
        self.dead_letters: list[ObservedDeadLetter] = []
        self.shadow_dead_letters = 0
        self.malformed_outputs = 0
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._consumer: KafkaConsumer | None = None

    @property
    def outcomes(self) -> int:
        return len(self.predictions) + len(self.dead_letters)

    def start_reading(self) -> None:
        self._consumer = make_consumer(
            self._settings,
            client_id="churn-harness-reader",
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_poll_records=5000,
        )
        partitions = []
        for topic in (self._topics.predictions, self._topics.deadletter):
            ids = self._consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self.start()

    def run(self) -> None:
        assert self._consumer is not None
        try:
            while not self._stop_event.is_set():
                batch = self._consumer.poll(timeout_ms=100)
                now_ms = time.time() * 1000.0
                for tp, records in batch.items():
                    for record in records:
                        if tp.topic == self._topics.predictions:
                            self._take_prediction(record.value, now_ms)
                        else:
                            self._take_dead_letter(record, now_ms)
        except BaseException as exc:  # reported by the harness as a failed run, never swallowed
            self.error = exc
        finally:
            self._consumer.close()

    def _take_prediction(self, value: bytes | None, now_ms: float) -> None:
        try:
            self.predictions.append(ObservedPrediction(decode_prediction(value), now_ms))
        except MalformedOutput:
            self.malformed_outputs += 1

    def _take_dead_letter(self, record: Any, now_ms: float) -> None:
        try:
            info = DeadLetterInfo.from_headers(record.headers)
        except MalformedOutput:
            self.malformed_outputs += 1
            return
        if info.stage == Stage.SHADOW:  # a challenger's failure: the event has its prediction too
            self.shadow_dead_letters += 1
            return
        self.dead_letters.append(ObservedDeadLetter(info, record.key, record.value, now_ms))

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def read_topic(settings: Settings, topic: str) -> list[RawRecord]:
    """Every record of a topic, from the beginning to the end offsets seen now."""
    return [
        RawRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
        for r in read_to_end(
            settings, topic, client_id="churn-harness-raw", committed_only=False, max_poll_records=10000
        )
    ]

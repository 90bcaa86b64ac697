"""Where a scored batch goes: its outputs delivered and its input offsets committed, together.

A *sink* takes one batch's predictions and dead letters and the batch's input offsets:

* :class:`TransactionalSink` (exactly-once, the default): one Kafka transaction per batch holds the
  outputs *and* the input offsets (``send_offsets_to_transaction`` with the consumer's group
  metadata), so a crash at any point leaves either all of a batch or none of it visible to
  ``read_committed`` readers.
* :class:`AtLeastOnceSink`: an idempotent producer; the offsets are committed only after every
  output of the batch is acknowledged, so a crash can repeat a batch but never lose one.

One flush and one commit per batch, never per message. Every call that waits on the broker is
bounded (consumer.options says how the bounds nest inside the transaction timeout): kafka-python's
transactional calls wait without a timeout, so they run on a worker thread (:class:`Bounded`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.structs import ConsumerGroupMetadata, OffsetAndMetadata, TopicPartition

from churnstream.consumer.options import ConsumerOptions
from churnstream.consumer.scoring import BatchResult
from churnstream.contract.outputs import Guarantee
from churnstream.errors import PipelineError
from churnstream.kafka.bounded import Bounded, CallStalled
from churnstream.kafka.clients import first_failure
from churnstream.settings import Settings

logger = logging.getLogger(__name__)


class OutputFailed(PipelineError):
    """Outputs could not be delivered or committed; nothing past them was committed. Exit 1."""


__all__ = ["AtLeastOnceSink", "Batch", "BatchAborted", "CallStalled", "OutputFailed", "TransactionalSink", "make_sink"]


class BatchAborted(Exception):
    """The batch's transaction was aborted and its partitions rewound: the loop polls it again."""


@dataclass(frozen=True, slots=True)
class Batch:
    """One poll's work for a sink: its outputs, the offsets that commit it, where to rewind it,
    and the group membership it was polled under (KIP-447: the broker refuses the offsets of a
    generation that is no longer current, so a member evicted mid-batch cannot commit it)."""

    result: BatchResult
    offsets: dict[TopicPartition, OffsetAndMetadata]
    rewind: dict[TopicPartition, int]
    membership: ConsumerGroupMetadata | None = None


@dataclass(slots=True)
class SinkTimes:
    send: float = 0.0  # producer.send() calls
    flush: float = 0.0  # waiting for the batch's outputs to be acknowledged
    commit: float = 0.0  # offsets + transaction commit (or consumer.commit)

    def as_dict(self) -> dict[str, float]:
        return {"send": self.send, "flush": self.flush, "commit": self.commit}


_FENCED = (kafka_errors.ProducerFencedError, kafka_errors.InvalidProducerEpochError)
_FATAL_TRANSACTION_ERRORS = (
    *_FENCED,
    kafka_errors.TransactionalIdAuthorizationFailedError,
    kafka_errors.ClusterAuthorizationFailedError,
    kafka_errors.InvalidTxnStateError,
    kafka_errors.UnsupportedVersionError,
)


def _send_outputs(producer: KafkaProducer, settings: Settings, result: BatchResult) -> list[Any]:
    send = producer.send
    topic = settings.topic_predictions
    futures = [send(topic, value=p.value, key=p.key) for p in result.predictions]
    dead_topic = settings.topic_deadletter
    futures.extend(
        send(dead_topic, value=d.value, key=d.key, headers=d.headers)  # null value stays null
        for d in result.dead_letters
    )
    if result.shadow_predictions or result.shadow_dead_letters:  # --shadow-model: in the same transaction
        shadow_topic = settings.topic_predictions_shadow
        futures.extend(send(shadow_topic, value=p.value, key=p.key) for p in result.shadow_predictions)
        futures.extend(
            send(dead_topic, value=d.value, key=d.key, headers=d.headers) for d in result.shadow_dead_letters
        )
    return futures


class _Sink:
    """What both sinks hold: the output producer, the input consumer, the settings, their timings."""

    def __init__(
        self,
        producer: KafkaProducer,
        consumer: KafkaConsumer,
        settings: Settings,
        options: ConsumerOptions | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._producer = producer
        self._consumer = consumer
        self._settings = settings
        self._options = options or ConsumerOptions()
        self._clock = clock
        self.times = SinkTimes()


class TransactionalSink(_Sink):
    """Exactly-once: the batch's outputs and its input offsets commit together, or not at all."""

    guarantee = Guarantee.EXACTLY_ONCE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bounded = Bounded()

    def deliver(self, batch: Batch) -> None:
        producer, options = self._producer, self._options
        membership = batch.membership if batch.membership is not None else self._consumer.group_metadata()
        started = time.perf_counter()
        began = self._clock()
        call_s = options.transaction_call_timeout_s
        try:
            producer.begin_transaction()
            futures = _send_outputs(producer, self._settings, batch.result)
            sent = time.perf_counter()
            # Offsets first: their round trips overlap with the sender thread shipping the outputs.
            self._bounded(
                lambda: producer.send_offsets_to_transaction(batch.offsets, membership),
                call_s,
                "send_offsets_to_transaction",
            )
            producer.flush(timeout=options.flush_timeout_s)  # past it, KafkaTimeoutError: the batch is aborted
            flushed = time.perf_counter()
            failure = first_failure(futures)
            if failure is not None:
                raise failure
            self._bounded(producer.commit_transaction, call_s, "commit_transaction")
        except _FATAL_TRANSACTION_ERRORS as exc:
            raise OutputFailed(self._fatal(exc, self._clock() - began)) from None
        except kafka_errors.KafkaError as exc:
            self._abort(exc, batch.rewind)
            raise BatchAborted(str(exc)) from None
        committed = time.perf_counter()
        self.times.send += sent - started
        self.times.flush += flushed - sent
        self.times.commit += committed - flushed

    def _fatal(self, exc: BaseException, open_s: float) -> str:
        """What a fatal transaction error means, in words: a stall the broker timed out, or a takeover."""
        name = f"{type(exc).__name__}: {exc}"
        timeout_s = self._options.transaction_timeout_ms / 1000
        if isinstance(exc, _FENCED) and open_s >= timeout_s * 0.9:
            return (
                f"this batch's transaction stayed open {open_s:.0f} s, past the transaction timeout "
                f"({timeout_s:.0f} s, --transaction-timeout-ms), so the broker aborted it and fenced this producer "
                f"({name}). Nothing of this batch was committed; restart the consumer, and look at what stalled it "
                "(a broker outage, a slow model)."
            )
        if isinstance(exc, _FENCED):
            return (
                f"another consumer took over this consumer's transactional id ({name}): two processes with one "
                "--instance-id, or a restarted one. Nothing past the last committed batch was committed."
            )
        return f"the transaction failed fatally ({name}). Nothing past the last committed batch was committed."

    def _abort(self, exc: BaseException, rewind: dict[TopicPartition, int]) -> None:
        logger.warning("aborting the batch's transaction (%s: %s); it will be processed again", type(exc).__name__, exc)
        try:
            self._bounded(
                self._producer.abort_transaction, self._options.transaction_call_timeout_s, "abort_transaction"
            )
        except kafka_errors.KafkaError as abort_exc:
            raise OutputFailed(
                f"the transaction could not be aborted ({type(abort_exc).__name__}: {abort_exc}) after "
                f"{type(exc).__name__}: {exc}; stopping without committing"
            ) from None
        assigned = self._consumer.assignment()
        for tp, offset in rewind.items():
            if tp in assigned:  # a partition lost in a rebalance restarts from its committed offset
                self._consumer.seek(tp, offset)


class AtLeastOnceSink(_Sink):
    """At-least-once: commit the input offsets only after every output is acknowledged."""

    guarantee = Guarantee.AT_LEAST_ONCE

    def deliver(self, batch: Batch) -> None:
        started = time.perf_counter()
        futures = _send_outputs(self._producer, self._settings, batch.result)
        sent = time.perf_counter()
        with contextlib.suppress(kafka_errors.KafkaTimeoutError):  # first_failure reports what is pending
            self._producer.flush(timeout=self._options.flush_timeout_s)
        flushed = time.perf_counter()
        failure = first_failure(futures)
        if failure is not None:
            raise OutputFailed(
                f"an output could not be delivered ({type(failure).__name__}: {failure}); the batch's "
                "offsets were not committed, so it will be processed again on restart"
            )
        try:
            self._consumer.commit(batch.offsets)
        except kafka_errors.CommitFailedError as exc:
            # The group rebalanced while we worked: the new owner re-reads from the last commit.
            # The outputs are already out, so this costs duplicates, never a loss.
            logger.warning("offsets not committed (%s); the batch's new owner will process it again", exc)
        except kafka_errors.KafkaError as exc:
            raise OutputFailed(f"committing offsets failed ({type(exc).__name__}: {exc})") from None
        committed = time.perf_counter()
        self.times.send += sent - started
        self.times.flush += flushed - sent
        self.times.commit += committed - flushed


def make_sink(
    options: ConsumerOptions, producer: KafkaProducer, consumer: KafkaConsumer, settings: Settings
) -> TransactionalSink | AtLeastOnceSink:
    kind = TransactionalSink if options.exactly_once else AtLeastOnceSink
    return kind(producer, consumer, settings, options)

"""The Kafka side of the consumer: poll a batch, score it, deliver it, commit it, repeat.

One poll batch is one unit of work. ``churnstream.scoring.score_batch`` turns it into
predictions and dead letters; a *sink* delivers those and commits the batch's input offsets:

* exactly-once (default): one Kafka transaction per batch holds the outputs *and* the input
  offsets (``send_offsets_to_transaction`` with the consumer's group metadata), so a crash at
  any point leaves either all of a batch or none of it visible to ``read_committed`` readers.
* at-least-once: an idempotent producer; the offsets are committed only after every output of
  the batch is acknowledged, so a crash can repeat a batch but never lose one.

Commits happen at the end of each batch, inside the loop, so when a rebalance revokes
partitions (which kafka-python does inside ``poll()``) there is nothing pending to commit.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from kafka import KafkaConsumer, KafkaProducer
from kafka import errors as kafka_errors
from kafka.admin import KafkaAdminClient, MemberToRemove
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from churnstream.cli import StopFlag, tune_garbage_collector
from churnstream.errors import PipelineError
from churnstream.events import DEFAULT_MAX_VALUE_BYTES
from churnstream.kafka_io import (
    DEADLETTER_MAX_MESSAGE_BYTES,
    FLUSH_TIMEOUT_S,
    ensure_topics,
    kafka_errors_translated,
    make_admin,
    make_consumer,
    make_producer,
    require_topics,
    topic_max_message_bytes,
)
from churnstream.outage import OutageMonitor, watch_broker
from churnstream.scoring import BatchResult, Scorer, StageTimes, score_batch
from config import PROJECT_ROOT, Settings

if TYPE_CHECKING:  # importing the model module imports scikit-learn, ~3 s: see load_model_and_admin
    from churnstream.model import ChurnModel

logger = logging.getLogger(__name__)

MODE_STREAMING = "streaming"
MODE_BATCH = "batch"
MODES = (MODE_STREAMING, MODE_BATCH)
EXACTLY_ONCE = "exactly-once"
AT_LEAST_ONCE = "at-least-once"
GUARANTEES = (EXACTLY_ONCE, AT_LEAST_ONCE)

# Per poll, so per model call and per transaction. At streaming rates a poll holds far fewer
# (what arrived during one fetch wait); the cap matters when catching up, where 5,000 measured
# 81-87% of the passthrough ceiling against 65-77% at 2,000 (KAFKA_README.md, "Consumer").
DEFAULT_MAX_BATCH = 5000
DEFAULT_FETCH_MAX_WAIT_MS = 50  # kafka-python's 500 ms default puts p95 latency near 250 ms
DEFAULT_WINDOW_SIZE = 1000
DEFAULT_LOG_EVERY = 1000
# Outlives a killed consumer's open transaction when no successor takes its slot: until then,
# read_committed readers of the output partitions stall. A batch's transaction only spans sending
# and committing (scoring happens before it begins), which takes well under a second, so 15 s
# leaves a wide margin for a slow broker without making a hung transaction block readers for long.
DEFAULT_TRANSACTION_TIMEOUT_MS = 15_000
# A dead consumer's partitions move to the others after this; a restarted one (same slot, static
# membership) takes them back at once. The broker's minimum is 6 s.
DEFAULT_SESSION_TIMEOUT_MS = 15_000
POLL_TIMEOUT_MS = 200  # how often an idle loop looks at the stop flag and the clock
MAX_CONSECUTIVE_ABORTS = 5  # then something is persistently wrong: stop instead of spinning
CLOSE_TIMEOUT_S = 10

# A dead letter carries a raw value as large as the raw topic accepts, plus its headers.
PRODUCER_MAX_REQUEST_SIZE = DEADLETTER_MAX_MESSAGE_BYTES + 64 * 1024
# Larger batches than kafka-python's 16 KB: fewer produce requests per poll batch. The loop
# flushes at the end of every batch, so lingering never delays the last outputs of a batch.
PRODUCER_BATCH_SIZE = 256 * 1024
PRODUCER_LINGER_MS = 5
# kafka-python's sender sleeps retry_backoff_ms (default 100) whenever a transactional request
# is outstanding; with the default, 1 transaction in 20 took 100-250 ms instead of ~15 ms
# (measured: p95 122 ms -> 25 ms, max 262 -> 69 ms at 10). Produce retries use it too: fine.
PRODUCER_RETRY_BACKOFF_MS = 10

SLOT_DIR = PROJECT_ROOT / ".run" / "consumer-slots"
MAX_SLOTS = 256
_INSTANCE_ID_RE = re.compile(r"^[A-Za-z0-9._-]{1,200}$")


class OutputFailed(PipelineError):
    """Outputs could not be delivered or committed; nothing past them was committed. Exit 1."""


class BatchAborted(Exception):
    """The batch's transaction was aborted and its partitions rewound: the loop polls it again."""


@dataclass(frozen=True)
class ConsumerOptions:
    mode: str = MODE_STREAMING
    guarantee: str = EXACTLY_ONCE
    duration_s: float | None = None
    window_size: int = DEFAULT_WINDOW_SIZE
    num_windows: int | None = None
    max_batch: int = DEFAULT_MAX_BATCH
    fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS
    log_every: int = DEFAULT_LOG_EVERY
    instance_id: str | None = None
    static_membership: bool = True
    session_timeout_ms: int = DEFAULT_SESSION_TIMEOUT_MS
    transaction_timeout_ms: int = DEFAULT_TRANSACTION_TIMEOUT_MS
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")
        if self.guarantee not in GUARANTEES:
            raise ValueError(f"guarantee must be one of {GUARANTEES}, not {self.guarantee!r}")
        if self.instance_id is not None and not valid_instance_id(self.instance_id):
            raise ValueError(f"instance id {self.instance_id!r}: use 1-200 of A-Z a-z 0-9 . _ -")


def valid_instance_id(text: str) -> bool:
    return bool(_INSTANCE_ID_RE.match(text)) and text not in (".", "..")


# --------------------------------------------------------------------------- identity


@dataclass
class ConsumerIdentity:
    """Who this process is to the broker: stable per slot, so a restart fences its dead predecessor.

    The transactional id is reused by whichever process next takes the slot; its
    ``init_transactions()`` aborts the transaction a killed predecessor left open, instead of
    read_committed readers waiting for the transaction timeout.
    """

    instance_id: str
    transactional_id: str
    slot: int | None
    lock_path: Path | None = None
    _lock_fd: int | None = field(default=None, repr=False)

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # closing releases the flock; the kernel does it on kill -9 too
            self._lock_fd = None


def _host_name() -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:80] or "host"


def claim_identity(group: str, instance_id: str | None = None, slot_dir: Path = SLOT_DIR) -> ConsumerIdentity:
    """The lowest free slot on this host for ``group`` (an flock held for the process's life).

    With an explicit ``instance_id`` no slot is taken: whoever assigns ids owns their uniqueness
    (two processes with one id fence each other, and the older one stops with an error).
    """
    if instance_id is not None:
        return ConsumerIdentity(instance_id, f"{group}-{instance_id}", slot=None)
    slot_dir.mkdir(parents=True, exist_ok=True)
    host = _host_name()
    for slot in range(MAX_SLOTS):
        path = slot_dir / f"{group}-{slot}.lock"
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        instance = f"{host}-{slot}"
        return ConsumerIdentity(instance, f"{group}-{instance}", slot=slot, lock_path=path, _lock_fd=fd)
    raise PipelineError(f"all {MAX_SLOTS} consumer slots for group {group} on this host are taken (see {slot_dir})")


# --------------------------------------------------------------------------- topics


def prepare_topics(admin: KafkaAdminClient, settings: Settings) -> None:
    """Input must exist (TopicMissing, exit 7); outputs are created when missing.

    The dead-letter topic is created with a larger message limit than the broker default
    (``kafka_io.topic_configs``), so a raw value as large as the raw topic accepts still fits with
    its headers; an existing one is left as it is, with a warning if it is too small.
    """
    require_topics(admin, settings, [settings.topic_raw])
    ensure_topics(admin, settings, [settings.topic_predictions, settings.topic_deadletter])
    # Always checked, even just after creating it: another process may have created it first,
    # without the larger limit.
    _warn_if_deadletter_too_small(admin, settings)


def _warn_if_deadletter_too_small(admin: KafkaAdminClient, settings: Settings) -> None:
    """An existing dead-letter topic is left as it is, but say so if a large event could not fit."""
    try:
        raw_limit = topic_max_message_bytes(admin, settings.topic_raw)
        dead_limit = topic_max_message_bytes(admin, settings.topic_deadletter)
    except kafka_errors.KafkaError as exc:
        logger.debug("could not read topic limits: %s", exc)
        return
    if raw_limit is not None and dead_limit is not None and dead_limit < raw_limit + 64 * 1024:
        logger.warning(
            "dead-letter topic %s accepts messages up to %d bytes but %s accepts %d: a raw value near "
            "that size cannot be dead-lettered; raise max.message.bytes on %s",
            settings.topic_deadletter,
            dead_limit,
            settings.topic_raw,
            raw_limit,
            settings.topic_deadletter,
        )


# --------------------------------------------------------------------------- rebalance


class RebalanceLogger(ConsumerRebalanceListener):
    """Logs assignments. Nothing to commit on revocation: every batch commits before the next poll."""

    def __init__(self, on_assigned: Callable[[list[TopicPartition]], None] | None = None) -> None:
        self._on_assigned = on_assigned

    def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        if revoked:
            logger.info("partitions revoked: %s", _describe_partitions(revoked))

    def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        logger.info("partitions assigned: %s", _describe_partitions(assigned) or "none")
        if self._on_assigned is not None:
            self._on_assigned(list(assigned))


def _describe_partitions(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(partitions))


# --------------------------------------------------------------------------- sinks


@dataclass(slots=True)
class SinkTimes:
    send: float = 0.0  # producer.send() calls
    flush: float = 0.0  # waiting for the batch's outputs to be acknowledged
    commit: float = 0.0  # offsets + transaction commit (or consumer.commit)


_FATAL_TRANSACTION_ERRORS = (
    kafka_errors.ProducerFencedError,
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
    return futures


def _first_failure(futures: list[Any]) -> BaseException | None:
    """kafka-python only fails a transaction by itself for some batch errors: check every output."""
    for future in futures:
        if not future.is_done:
            return kafka_errors.KafkaTimeoutError("an output was not acknowledged after flush()")
        if future.exception is not None:
            return future.exception
    return None


class _Sink:
    """What both sinks hold: the output producer, the input consumer, the settings, their timings."""

    def __init__(self, producer: KafkaProducer, consumer: KafkaConsumer, settings: Settings) -> None:
        self._producer = producer
        self._consumer = consumer
        self._settings = settings
        self.times = SinkTimes()


class TransactionalSink(_Sink):
    """Exactly-once: the batch's outputs and its input offsets commit together, or not at all."""

    guarantee = EXACTLY_ONCE

    def deliver(
        self,
        result: BatchResult,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        rewind: dict[TopicPartition, int],
    ) -> None:
        producer = self._producer
        started = time.perf_counter()
        try:
            producer.begin_transaction()
            futures = _send_outputs(producer, self._settings, result)
            sent = time.perf_counter()
            # Offsets first: their round trips overlap with the sender thread shipping the outputs.
            producer.send_offsets_to_transaction(offsets, self._consumer.group_metadata())
            producer.flush(timeout=FLUSH_TIMEOUT_S)  # past it, KafkaTimeoutError: the batch is aborted
            flushed = time.perf_counter()
            failure = _first_failure(futures)
            if failure is not None:
                raise failure
            producer.commit_transaction()
        except _FATAL_TRANSACTION_ERRORS as exc:
            raise OutputFailed(
                f"the transaction failed fatally ({type(exc).__name__}: {exc}); another consumer may have "
                "taken over this transactional id. Nothing past the last committed batch was committed."
            ) from None
        except kafka_errors.KafkaError as exc:
            self._abort(exc, rewind)
            raise BatchAborted(str(exc)) from None
        committed = time.perf_counter()
        self.times.send += sent - started
        self.times.flush += flushed - sent
        self.times.commit += committed - flushed

    def _abort(self, exc: BaseException, rewind: dict[TopicPartition, int]) -> None:
        logger.warning("aborting the batch's transaction (%s: %s); it will be processed again", type(exc).__name__, exc)
        try:
            self._producer.abort_transaction()
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

    guarantee = AT_LEAST_ONCE

    def deliver(
        self,
        result: BatchResult,
        offsets: dict[TopicPartition, OffsetAndMetadata],
        rewind: dict[TopicPartition, int],  # unused: nothing to rewind, the same interface as TransactionalSink
    ) -> None:
        started = time.perf_counter()
        futures = _send_outputs(self._producer, self._settings, result)
        sent = time.perf_counter()
        with contextlib.suppress(kafka_errors.KafkaTimeoutError):  # _first_failure reports what is pending
            self._producer.flush(timeout=FLUSH_TIMEOUT_S)
        flushed = time.perf_counter()
        failure = _first_failure(futures)
        if failure is not None:
            raise OutputFailed(
                f"an output could not be delivered ({type(failure).__name__}: {failure}); the batch's "
                "offsets were not committed, so it will be processed again on restart"
            )
        try:
            self._consumer.commit(offsets)
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


# --------------------------------------------------------------------------- statistics


@dataclass(slots=True)
class Totals:
    consumed: int = 0
    scored: int = 0
    dead_lettered: int = 0
    probability_sum: float = 0.0
    churned: int = 0
    batches: int = 0

    def add(self, result: BatchResult) -> None:
        self.consumed += result.consumed
        self.scored += result.scored
        self.dead_lettered += len(result.dead_letters)
        self.probability_sum += result.probability_sum
        self.churned += result.churned
        self.batches += 1

    @property
    def mean_churn_probability(self) -> float | None:
        return self.probability_sum / self.scored if self.scored else None

    @property
    def churn_rate(self) -> float | None:
        return self.churned / self.scored if self.scored else None


@dataclass
class Window:
    index: int
    started: float
    totals: Totals = field(default_factory=Totals)
    elapsed_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        totals = self.totals
        return {
            "window": self.index,
            "events": totals.consumed,
            "scored": totals.scored,
            "dead_lettered": totals.dead_lettered,
            "mean_churn_probability": _rounded(totals.mean_churn_probability),
            "churn_rate": _rounded(totals.churn_rate),
            "elapsed_s": round(self.elapsed_s, 3),
            "events_per_sec": round(totals.consumed / self.elapsed_s, 1) if self.elapsed_s > 0 else None,
        }


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def format_window(window: dict[str, Any]) -> str:
    """The per-window line batch mode prints on stdout."""
    mean = window["mean_churn_probability"]
    rate = window["churn_rate"]
    per_sec = window["events_per_sec"]
    return (
        f"window {window['window']}: events={window['events']} scored={window['scored']} "
        f"dead_lettered={window['dead_lettered']} "
        f"mean_churn_probability={'n/a' if mean is None else f'{mean:.4f}'} "
        f"churn_rate={'n/a' if rate is None else f'{rate:.4f}'} "
        f"events_per_sec={'n/a' if per_sec is None else f'{per_sec:.1f}'}"
    )


def format_summary(summary: dict[str, Any]) -> str:
    """The final summary line on stdout."""
    mean = summary["mean_churn_probability"]
    rate = summary["churn_rate"]
    return (
        f"summary: mode={summary['mode']} guarantee={summary['guarantee']} consumed={summary['consumed']} "
        f"scored={summary['scored']} dead_lettered={summary['dead_lettered']} batches={summary['batches']} "
        f"transactions_aborted={summary['transactions_aborted']} "
        f"mean_churn_probability={'n/a' if mean is None else f'{mean:.4f}'} "
        f"churn_rate={'n/a' if rate is None else f'{rate:.4f}'} "
        f"events_per_sec={summary['events_per_sec']:.1f} elapsed_s={summary['elapsed_s']:.2f}"
    )


# --------------------------------------------------------------------------- the loop


def _producer_options(options: ConsumerOptions, identity: ConsumerIdentity) -> dict[str, Any]:
    extra: dict[str, Any] = {
        "max_request_size": PRODUCER_MAX_REQUEST_SIZE,
        "batch_size": PRODUCER_BATCH_SIZE,
        "linger_ms": PRODUCER_LINGER_MS,
        "retry_backoff_ms": PRODUCER_RETRY_BACKOFF_MS,
    }
    if options.guarantee == EXACTLY_ONCE:
        extra["transactional_id"] = identity.transactional_id
        extra["transaction_timeout_ms"] = options.transaction_timeout_ms
    return extra


@contextmanager
def _closing_consumer(consumer: KafkaConsumer) -> Iterator[KafkaConsumer]:
    try:
        yield consumer
    finally:
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)


@contextmanager
def _closing_producer(producer: KafkaProducer) -> Iterator[KafkaProducer]:
    try:
        yield producer
    finally:
        producer.close(timeout=CLOSE_TIMEOUT_S)


class ConsumerRun:
    """State of one run of the loop: counters, windows, end offsets (batch mode), timings."""

    def __init__(
        self,
        settings: Settings,
        options: ConsumerOptions,
        model: Scorer,
        *,
        identity: ConsumerIdentity,
        stop: StopFlag,
        on_window: Callable[[dict[str, Any]], None] | None,
    ) -> None:
        self.settings = settings
        self.options = options
        self.model = model
        self.identity = identity
        self.stop = stop
        self.on_window = on_window
        self.totals = Totals()
        self.by_stage: Counter[str] = Counter()
        self.stage_times = StageTimes()
        self.poll_s = 0.0
        self.aborted = 0
        self.windows: list[dict[str, Any]] = []
        self.window: Window | None = None
        self.windows_clock: float | None = None
        self.end_offsets: dict[TopicPartition, int] = {}
        self.started = time.monotonic()
        self.first_record_at: float | None = None
        self.last_batch_at: float | None = None
        self.first_record_cpu = self.last_batch_cpu = 0.0  # process CPU seconds, for the benchmark
        self.next_log_at = options.log_every
        self.last_log = (self.started, 0)
        self.stopped_by = "caught-up"

    # -- windows (batch mode)

    def _window(self, now: float) -> Window:
        if self.window is None:
            # A window's clock starts where the previous one stopped, the first one's when the
            # first records arrived: joining the group is not counted against the first window.
            started = self.windows_clock if self.windows_clock is not None else now
            self.window = Window(index=len(self.windows) + 1, started=started)
        return self.window

    def _close_window(self) -> None:
        window = self.window
        if window is None or window.totals.consumed == 0:
            self.window = None
            return
        now = time.monotonic()
        window.elapsed_s = now - window.started
        self.windows_clock = now
        described = window.as_dict()
        self.windows.append(described)
        if self.on_window is not None:
            self.on_window(described)
        self.window = None

    def poll_limit(self) -> int:
        if self.options.mode != MODE_BATCH:
            return self.options.max_batch
        in_window = self.window.totals.consumed if self.window is not None else 0
        return max(1, min(self.options.max_batch, self.options.window_size - in_window))

    def first_records(self) -> None:
        """The first records arrived: throughput clocks start now, not when we began joining."""
        now = time.monotonic()
        self.first_record_at = now
        self.first_record_cpu = time.process_time()
        self.windows_clock = now
        self.last_log = (now, 0)

    # -- accounting

    def record(self, result: BatchResult) -> None:
        now = time.monotonic()
        self.totals.add(result)
        self.last_batch_at = now
        self.last_batch_cpu = time.process_time()
        for dead in result.dead_letters:
            self.by_stage[dead.stage] += 1
        if self.options.mode == MODE_BATCH:
            window = self._window(now)
            window.totals.add(result)
            if window.totals.consumed >= self.options.window_size:
                self._close_window()
        if self.options.log_every > 0 and self.totals.consumed >= self.next_log_at:
            since, consumed_then = self.last_log
            rate = (self.totals.consumed - consumed_then) / max(now - since, 1e-9)
            logger.info(
                "progress: consumed=%d scored=%d dead_lettered=%d events/s=%.0f",
                self.totals.consumed,
                self.totals.scored,
                self.totals.dead_lettered,
                rate,
            )
            self.last_log = (now, self.totals.consumed)
            while self.next_log_at <= self.totals.consumed:
                self.next_log_at += self.options.log_every

    def summary(self, sink_times: SinkTimes) -> dict[str, Any]:
        self._close_window()
        now = time.monotonic()
        totals = self.totals
        processing_s = 0.0
        if self.first_record_at is not None and self.last_batch_at is not None:
            processing_s = self.last_batch_at - self.first_record_at
        stage_seconds = {"poll": self.poll_s, **self.stage_times.as_dict()}
        stage_seconds.update(send=sink_times.send, flush=sink_times.flush, commit=sink_times.commit)
        return {
            "mode": self.options.mode,
            "guarantee": self.options.guarantee,
            "consumed": totals.consumed,
            "scored": totals.scored,
            "dead_lettered": totals.dead_lettered,
            "dead_lettered_by_stage": dict(sorted(self.by_stage.items())),
            "batches": totals.batches,
            "elapsed_s": round(now - self.started, 3),
            "processing_s": round(processing_s, 3),
            "processing_cpu_s": round(max(self.last_batch_cpu - self.first_record_cpu, 0.0), 3),
            "events_per_sec": round(totals.consumed / processing_s, 1) if processing_s > 0 else 0.0,
            "mean_churn_probability": _rounded(totals.mean_churn_probability),
            "churn_rate": _rounded(totals.churn_rate),
            "transactions_aborted": self.aborted,
            "model_version": self.model.version,
            "group": self.settings.consumer_group,
            "instance_id": self.identity.instance_id,
            "transactional_id": self.identity.transactional_id if self.options.guarantee == EXACTLY_ONCE else None,
            "stopped_by": self.stopped_by,
            "stage_seconds": {name: round(seconds, 4) for name, seconds in stage_seconds.items()},
            "windows": self.windows,
        }

    # -- batch-mode end detection

    def caught_up(self, consumer: KafkaConsumer) -> bool:
        """True once every assigned partition has reached the end offset seen when it was assigned."""
        if consumer.group_metadata().state != MemberState.STABLE:
            return False
        assigned = consumer.assignment()
        unseen = [tp for tp in assigned if tp not in self.end_offsets]
        if unseen:
            self.end_offsets.update(consumer.end_offsets(unseen))
            logger.info(
                "batch mode: will stop at end offsets %s",
                ", ".join(f"[{tp.partition}]={self.end_offsets[tp]}" for tp in sorted(unseen)),
            )
        return all(consumer.position(tp) >= self.end_offsets[tp] for tp in assigned)

    def should_stop(self, consumer: KafkaConsumer) -> bool:
        options = self.options
        if self.stop.is_set():
            self.stopped_by = self.stop.signal_name or "signal"
            return True
        if options.duration_s is not None and time.monotonic() - self.started >= options.duration_s:
            self.stopped_by = "duration"
            return True
        if options.mode == MODE_BATCH:
            if options.num_windows is not None and len(self.windows) >= options.num_windows:
                self.stopped_by = "num-windows"
                return True
            if self.caught_up(consumer):
                self.stopped_by = "caught-up"
                return True
        return False


def _batch_offsets(
    polled: dict[TopicPartition, list[Any]],
) -> tuple[list[Any], dict[TopicPartition, OffsetAndMetadata], dict[TopicPartition, int]]:
    records: list[Any] = []
    offsets: dict[TopicPartition, OffsetAndMetadata] = {}
    rewind: dict[TopicPartition, int] = {}
    for tp, batch in polled.items():
        if not batch:
            continue
        records.extend(batch)
        last = batch[-1]
        offsets[tp] = OffsetAndMetadata(last.offset + 1, "", last.leader_epoch)
        rewind[tp] = batch[0].offset
    return records, offsets, rewind


def consume_loop(
    consumer: KafkaConsumer,
    sink: TransactionalSink | AtLeastOnceSink,
    run: ConsumerRun,
    outage: OutageMonitor | None = None,
) -> None:
    """Poll, score, deliver, commit, until stopped. Never per-message predict, flush or commit."""
    consecutive_aborts = 0
    model = run.model
    max_value_bytes = run.options.max_value_bytes
    while not run.should_stop(consumer):
        started = time.perf_counter()
        polled = consumer.poll(timeout_ms=POLL_TIMEOUT_MS, max_records=run.poll_limit())
        run.poll_s += time.perf_counter() - started
        if not polled:
            continue
        records, offsets, rewind = _batch_offsets(polled)
        if not records:
            continue
        if run.first_record_at is None:
            run.first_records()
        result = score_batch(records, model, max_value_bytes=max_value_bytes, times=run.stage_times)
        try:
            sink.deliver(result, offsets, rewind)
        except BatchAborted:
            run.aborted += 1
            consecutive_aborts += 1
            if consecutive_aborts >= MAX_CONSECUTIVE_ABORTS:
                raise OutputFailed(
                    f"{consecutive_aborts} transactions in a row were aborted; stopping without committing "
                    "(see the warnings above for why)"
                ) from None
            continue
        consecutive_aborts = 0
        run.record(result)
        if outage is not None:
            outage.progress()  # a committed batch: the broker is there


class _BrokerCheck:
    """``make_admin`` on a background thread, so its bootstrap timeout overlaps the model load.

    Importing scikit-learn and loading the model take 2-4 s here and kafka_io's bootstrap timeout
    is 6 s: in sequence, "broker down" took 11-12 s to report; overlapped, about 6.5 s.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._admin: KafkaAdminClient | None = None
        self._error: BaseException | None = None
        self._abandoned = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._connect, name="broker-check", daemon=True)
        self._thread.start()

    def _connect(self) -> None:
        try:
            admin = make_admin(self._settings)
        except BaseException as exc:  # handed to the main thread, which re-raises it in result()
            self._error = exc
            return
        with self._lock:
            if self._abandoned:
                admin.close()
            else:
                self._admin = admin

    def result(self) -> KafkaAdminClient:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._admin is not None
        return self._admin

    def abandon(self) -> None:
        """The model failed: its error is the one to report; close the admin whenever it arrives."""
        with self._lock:
            self._abandoned = True
            if self._admin is not None:
                self._admin.close()
                self._admin = None


def load_model_and_admin(settings: Settings, model: Scorer | None) -> tuple[Scorer, KafkaAdminClient]:
    """The model (ModelMissing 5, ModelIntegrityError 6), then the broker (BrokerUnavailable 2)."""
    check = _BrokerCheck(settings)
    if model is None:
        try:
            from churnstream.model import load_model  # noqa: PLC0415 - see _BrokerCheck: overlaps the import

            model = load_model(settings.model_path, settings.model_card_path)
        except BaseException:
            check.abandon()
            raise
    return model, check.result()


def run_consumer(
    settings: Settings,
    options: ConsumerOptions,
    stop: StopFlag | None = None,
    *,
    model: ChurnModel | Scorer | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
    slot_dir: Path = SLOT_DIR,
) -> dict[str, Any]:
    """Run the consumer until it is stopped or (batch mode) caught up; return the summary.

    Start-up checks come first and each fails as one PipelineError: the model (5/6), the broker
    (2), the input topic (7). Output topics are created when missing.
    """
    stop = stop or StopFlag()
    model, admin = load_model_and_admin(settings, model)
    tune_garbage_collector()
    with ExitStack() as stack:
        stack.callback(admin.close)
        prepare_topics(admin, settings)
        identity = claim_identity(settings.consumer_group, options.instance_id, slot_dir)
        stack.callback(identity.release)  # after the clients close: no successor takes the slot before
        logger.info(
            "consumer %s (group %s, %s%s) starting",
            identity.instance_id,
            settings.consumer_group,
            options.guarantee,
            f", transactional id {identity.transactional_id}" if options.guarantee == EXACTLY_ONCE else "",
        )
        client_id = f"churn-consumer-{identity.instance_id}"
        producer = make_producer(settings, client_id=client_id, **_producer_options(options, identity))
        stack.enter_context(_closing_producer(producer))
        if options.guarantee == EXACTLY_ONCE:
            # Before joining the group: fences a dead predecessor with this transactional id and
            # aborts its open transaction, so its half-written batch is never seen and its
            # pending offsets do not block our offset fetch.
            with kafka_errors_translated(settings):
                producer.init_transactions()
        static_id = identity.instance_id if options.static_membership else None
        consumer = make_consumer(
            settings,
            client_id=client_id,
            group_id=settings.consumer_group,
            group_instance_id=static_id,
            enable_auto_commit=False,
            isolation_level="read_committed",
            auto_offset_reset="earliest",
            max_poll_records=options.max_batch,
            fetch_max_wait_ms=options.fetch_max_wait_ms,
            session_timeout_ms=options.session_timeout_ms,
        )
        stack.enter_context(_closing_consumer(consumer))
        consumer.subscribe([settings.topic_raw], listener=RebalanceLogger())
        # Learn the input's partitions before the first join. Otherwise kafka-python 3.0.12 joins
        # first, assigns nothing ("No partition metadata"), and rejoins when the metadata arrives;
        # if a poll times out during that second join, its assignment is dropped and the consumer
        # idles with no partitions and no heartbeat (seen in tests/test_faults.py: 3 min, 1 in ~9).
        with kafka_errors_translated(settings):
            consumer.partitions_for_topic(settings.topic_raw)
        run = ConsumerRun(settings, options, model, identity=identity, stop=stop, on_window=on_window)
        sink: TransactionalSink | AtLeastOnceSink = (
            TransactionalSink(producer, consumer, settings)
            if options.guarantee == EXACTLY_ONCE
            else AtLeastOnceSink(producer, consumer, settings)
        )
        with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
            consume_loop(consumer, sink, run, outage)
        summary = run.summary(sink.times)
        # A clean stop: every batch is committed. Leave the group so the others take over now.
        consumer.close(autocommit=False, timeout_ms=CLOSE_TIMEOUT_S * 1000)
        if static_id is not None:
            leave_as_static_member(admin, settings.consumer_group, static_id)
    logger.info(
        "stopped (%s) after %d events: %d scored, %d dead-lettered",
        summary["stopped_by"],
        summary["consumed"],
        summary["scored"],
        summary["dead_lettered"],
    )
    return summary


def leave_as_static_member(admin: KafkaAdminClient, group: str, instance_id: str) -> None:
    """Remove our static membership so the group rebalances now, not after the session timeout.

    A static member (kafka-python, like Java) sends no LeaveGroup when it closes: that is what
    lets a crashed consumer restart and take its partitions straight back. On a *clean* stop we
    want the opposite, so we leave explicitly. Never after a fatal error: if we were fenced, the
    instance id now belongs to our successor and removing it would evict that one.
    """
    member = MemberToRemove(group_instance_id=instance_id, reason="consumer stopped cleanly")
    try:
        results = admin.remove_group_members(group, [member])
    except kafka_errors.KafkaError as exc:
        logger.warning("could not leave group %s (%s); it rebalances after the session timeout", group, exc)
        return
    errors = [error for error in results.values() if error is not kafka_errors.NoError]
    if errors:
        logger.warning("leaving group %s: %s; it rebalances after the session timeout", group, errors[0].__name__)
    else:
        logger.info("left group %s", group)


def write_summary(path: Path, summary: dict[str, Any]) -> None:
    """Write the summary JSON atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
    tmp.replace(path)

"""Send dead letters back to the raw topic once their cause is fixed, each at most once.

``python -m churnstream.replay --stage validate --reason-contains Contract`` (or an offset range)
re-sends the selected dead letters' original key, value and headers to the raw topic (the CLI is
churnstream.cli.replay). Which dead letters were replayed is recorded in a ledger topic
(``<dead-letter topic>.replayed``, compacted, never expiring), keyed by the dead-letter topic's id,
partition and offset, *in the same Kafka transaction* as the re-sent records: a replay that is
interrupted, repeated or run twice at once never sends a dead letter twice, and a dead-letter topic
deleted and created again (a new topic id) starts a ledger of its own. The guarantee holds for
replays under one consumer group (``KAFKA_CONSUMER_GROUP``), which share the transactional id that
fences them.

It reads the dead-letter topic once, as a stream, sending as it goes: only the ledger's keys and
one chunk are held in memory, a progress line is logged every few seconds, and only a read that
stops moving ends it, never the topic's length.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka import errors as kafka_errors

from churnstream.consumer.identity import transactional_id
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import (
    DEADLETTER_HEADROOM_BYTES,
    DeadLetterInfo,
    MalformedOutput,
    Stage,
    encode_ledger_entry,
    replay_headers,
)
from churnstream.errors import PipelineError, TopicMissing
from churnstream.kafka.bounded import Bounded
from churnstream.kafka.clients import first_failure, make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.reading import read_to_end
from churnstream.kafka.topics import (
    DEADLETTER_MAX_MESSAGE_BYTES,
    ensure_topics,
    ledger_topic,
    require_topics,
)
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

CHUNK = 1000
# A killed replay leaves its transaction open until the broker times it out, and read_committed
# readers of the raw topic wait behind it: keep that short. Every wait inside a transaction is
# bounded below it (delivery, flush and the transactional calls).
TRANSACTION_TIMEOUT_MS = 15_000
DELIVERY_TIMEOUT_MS = 10_000
REQUEST_TIMEOUT_MS = 8_000
CALL_TIMEOUT_S = TRANSACTION_TIMEOUT_MS / 1000
FLUSH_TIMEOUT_S = (DELIVERY_TIMEOUT_MS + 2_000) / 1000
PROGRESS_INTERVAL_S = 10.0


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter as replay reads it from the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str | None
    reason: str
    topic_id: str = ""
    original_headers: tuple[tuple[str, bytes], ...] = ()
    batch: bool = False  # stands for a compressed batch the consumer could not decompress

    @property
    def ledger_key(self) -> bytes:
        return f"{self.topic_id}:{self.partition}:{self.offset}".encode()

    @property
    def legacy_ledger_key(self) -> bytes:
        """How replay 0.2 keyed the ledger (no topic id): still honoured, so nothing is sent twice."""
        return f"{self.partition}:{self.offset}".encode()

    @property
    def sendable(self) -> bool:
        """kafka-python cannot send a record with neither key nor value; such a record holds nothing to score."""
        return self.key is not None or self.value is not None


@dataclass(frozen=True)
class Selection:
    stage: str | None = None
    reason_contains: str | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None  # inclusive

    def matches(self, record: StoredDeadLetter) -> bool:
        if record.stage == Stage.SHADOW:  # the event has its prediction: sent back, it would be scored twice
            return False
        if (
            record.batch
        ):  # its value is a batch's compressed records, no event: read it with a client that has the codec
            return False
        if self.stage is not None and record.stage != self.stage:
            return False
        if self.reason_contains is not None and self.reason_contains not in record.reason:
            return False
        if self.partition is not None and record.partition != self.partition:
            return False
        if self.from_offset is not None and record.offset < self.from_offset:
            return False
        return self.to_offset is None or record.offset <= self.to_offset


@dataclass
class ReplaySummary:
    """What a replay found and did (the CLI prints it in one line)."""

    dead_letters: int = 0
    matching: int = 0
    already_replayed: int = 0
    unsendable: int = 0  # neither key nor value: kafka-python cannot send it, and it holds nothing to score
    to_replay: int = 0
    replayed: int = 0


def replayed_already(record: StoredDeadLetter, replayed: set[bytes]) -> bool:
    return record.ledger_key in replayed or record.legacy_ledger_key in replayed


def select(records: Iterable[StoredDeadLetter], selection: Selection, replayed: set[bytes]) -> list[StoredDeadLetter]:
    """The dead letters to replay: matching the selection and not in the ledger. Pure."""
    return [r for r in records if selection.matches(r) and not replayed_already(r, replayed)]


def replay_transactional_id(settings: Settings) -> str:
    """``<group>~~replay``: under the ``<group>`` prefix, and no consumer's (``<group>~<instance>``: an
    instance id cannot start with ``~``), so a consumer can never fence a replay or be fenced by one."""
    return transactional_id(settings.consumer_group, "~replay")


class _Progress:
    """One log line every PROGRESS_INTERVAL_S while the dead-letter topic is read: how far, and what
    was done with it so far. A topic kept forever can hold millions: the operator sees it move."""

    def __init__(self, summary: ReplaySummary, clock: Callable[[], float] = time.monotonic) -> None:
        self._summary = summary
        self._clock = clock
        self._next = clock() + PROGRESS_INTERVAL_S

    def __call__(self, done: int, total: int) -> None:
        if self._clock() < self._next:
            return
        self._next = self._clock() + PROGRESS_INTERVAL_S
        summary = self._summary
        logger.info(
            "read %d of %d dead-letter offsets (%.0f%%): %d matching, %d already replayed, %d replayed so far",
            done,
            total,
            100.0 * done / max(total, 1),
            summary.matching,
            summary.already_replayed,
            summary.replayed,
        )


def _dead_letters(settings: Settings, topic_id: str, progress: _Progress) -> Iterator[StoredDeadLetter]:
    """The dead-letter topic, streamed once: a key marked absent reads as null, as it was on the raw topic."""
    records = read_to_end(settings, settings.topic_deadletter, client_id="churn-replay-reader", on_progress=progress)
    for record in records:
        try:
            info = DeadLetterInfo.from_headers(record.headers)
        except MalformedOutput:
            logger.warning(
                "dead letter %s[%d]@%d has no dl.* headers; skipped", record.topic, record.partition, record.offset
            )
            continue
        key = None if info.key_absent else record.key
        yield StoredDeadLetter(
            record.partition,
            record.offset,
            key,
            record.value,
            info.stage,
            info.reason,
            topic_id,
            info.original_headers,
            batch=info.source_last_offset is not None,
        )


def _replayed_keys(settings: Settings, ledger: str) -> set[bytes]:
    """The ledger: the keys of every dead letter replayed so far (all that replay holds in memory)."""
    records = read_to_end(settings, ledger, client_id="churn-replay-reader")
    return {record.key for record in records if record.key is not None}


def _topic_id(settings: Settings, topic: str) -> str:
    admin = make_admin(settings, client_id="churn-replay-admin")
    try:
        require_topics(admin, settings, [settings.topic_deadletter, settings.topic_raw])
        ensure_topics(admin, settings, [ledger_topic(settings)], partitions=1)
        with kafka_errors_translated(settings):
            (described,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if not described.get("topic_id"):
        raise TopicMissing(f"topic {topic} has no topic id on {settings.bootstrap_servers}")
    return str(described["topic_id"])


def _fenced(exc: BaseException) -> bool:
    """kafka-python raises the fence itself, or a KafkaError that carries it as an argument."""
    return isinstance(exc, kafka_errors.ProducerFencedError) or any(
        isinstance(arg, kafka_errors.ProducerFencedError) for arg in exc.args
    )


class SendFailed(PipelineError):
    """A dead letter could not be sent back: its chunk's transaction was aborted, nothing of it marked."""


class _Sender:
    """Chunks of dead letters back to the raw topic, each chunk one transaction with its ledger entries."""

    def __init__(self, producer: KafkaProducer, settings: Settings) -> None:
        self._producer = producer
        self._settings = settings
        self._ledger = ledger_topic(settings)
        self._bounded = Bounded()

    def send(self, chunk: list[StoredDeadLetter]) -> None:
        """Commit only when every send of the chunk was acknowledged: kafka-python commits a transaction
        without a record whose send failed by itself (a retriable error past the delivery timeout),
        which would mark a dead letter replayed that never reached the raw topic."""
        producer = self._producer
        producer.begin_transaction()
        futures = []
        try:
            for record in chunk:
                headers = list(record.original_headers) + replay_headers(record.ledger_key, record.reason)
                futures.append(
                    producer.send(self._settings.topic_raw, key=record.key, value=record.value, headers=headers)
                )
                entry = encode_ledger_entry(utc_now_iso(), record.stage)
                futures.append(producer.send(self._ledger, key=record.ledger_key, value=entry))
            with contextlib.suppress(kafka_errors.KafkaTimeoutError):  # first_failure names what is pending
                producer.flush(timeout=FLUSH_TIMEOUT_S)
            failure = first_failure(futures)
            if failure is not None:
                raise SendFailed(
                    f"a dead letter could not be sent back ({type(failure).__name__}: {failure}); its chunk of "
                    f"{len(chunk)} was not committed and none of it is marked replayed: run the replay again"
                )
            self._bounded(producer.commit_transaction, CALL_TIMEOUT_S, "commit_transaction")
        except (SendFailed, kafka_errors.KafkaError) as exc:
            if not _fenced(exc):
                self._abort(exc)
            raise

    def _abort(self, exc: BaseException) -> None:
        try:
            self._bounded(self._producer.abort_transaction, CALL_TIMEOUT_S, "abort_transaction")
        except (kafka_errors.KafkaError, PipelineError) as abort_exc:  # the broker aborts it at its timeout
            logger.warning(
                "the chunk's transaction could not be aborted (%s) after %s; the broker aborts it within %d s",
                abort_exc,
                type(exc).__name__,
                TRANSACTION_TIMEOUT_MS // 1000,
            )


class _Replay:
    """One pass over the dead-letter topic, sending as it reads. The transactional id is taken (which
    fences another replay) only at the first dead letter to send, and the ledger read again then:
    read only before, two replays started together could both see an empty ledger."""

    def __init__(self, settings: Settings, selection: Selection, limit: int | None, send: bool) -> None:
        self.settings = settings
        self.selection = selection
        self.limit = limit
        self.send = send
        self.summary = ReplaySummary()
        self.replayed: set[bytes] = set()
        self.sender: _Sender | None = None
        self._producer: KafkaProducer | None = None
        self._chunk: list[StoredDeadLetter] = []

    def run(self, topic_id: str) -> ReplaySummary:
        self.replayed = _replayed_keys(self.settings, ledger_topic(self.settings))
        try:
            for record in _dead_letters(self.settings, topic_id, _Progress(self.summary)):
                self._take(record)
            self._flush()
        finally:
            if self._producer is not None:
                self._producer.close(timeout=10)
        return self.summary

    def _due(self, record: StoredDeadLetter) -> bool:
        """To be sent back, as far as the ledger read so far says."""
        under_limit = self.limit is None or self.summary.to_replay < self.limit
        return under_limit and record.sendable and not replayed_already(record, self.replayed)

    def _take(self, record: StoredDeadLetter) -> None:
        summary = self.summary
        summary.dead_letters += 1
        if not self.selection.matches(record):
            return
        summary.matching += 1
        if self.send and self.sender is None and self._due(record):
            self._start()  # reads the ledger again: it may have this one after all
        if replayed_already(record, self.replayed):
            summary.already_replayed += 1
        elif not record.sendable:
            summary.unsendable += 1
        elif self._due(record):
            summary.to_replay += 1
            if self.send:
                self._chunk.append(record)
                if len(self._chunk) >= CHUNK:
                    self._flush()

    def _start(self) -> None:
        settings = self.settings
        self._producer = make_producer(
            settings,
            client_id="churn-replay",
            transactional_id=replay_transactional_id(settings),
            transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
            delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
            max_request_size=DEADLETTER_MAX_MESSAGE_BYTES + DEADLETTER_HEADROOM_BYTES,
        )
        with kafka_errors_translated(settings):
            # Fences any other replay with this id and completes or aborts its open transaction;
            # only then is the ledger complete.
            self._producer.init_transactions()
        self.replayed = _replayed_keys(settings, ledger_topic(settings))
        self.sender = _Sender(self._producer, settings)

    def _flush(self) -> None:
        if not self._chunk or self.sender is None:
            return
        with kafka_errors_translated(self.settings):
            try:
                self.sender.send(self._chunk)
            except kafka_errors.KafkaError as exc:
                if not _fenced(exc):
                    raise
                raise PipelineError(
                    f"another replay took over transactional id {replay_transactional_id(self.settings)}; this "
                    f"one stopped after replaying {self.summary.replayed}. Run it again: the ledger keeps it from "
                    "sending any dead letter twice"
                ) from None
        self.summary.replayed += len(self._chunk)
        self._chunk = []


def replay(settings: Settings, selection: Selection, dry_run: bool = False, limit: int | None = None) -> ReplaySummary:
    """Read the dead-letter topic once, sending the selected dead letters back in chunks as it goes
    (``dry_run``: only count them). Memory holds the ledger's keys and one chunk, whatever the topic's
    length; a read that stops moving for READ_STALL_S ends it (a read that moves never does)."""
    topic_id = _topic_id(settings, settings.topic_deadletter)
    return _Replay(settings, selection, limit, send=not dry_run).run(topic_id)

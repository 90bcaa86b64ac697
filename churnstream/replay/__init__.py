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

Both passes over the dead-letter topic stream it: only the ledger's keys are held in memory.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
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
from churnstream.kafka.clients import make_admin, make_producer
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


def _dead_letters(settings: Settings, topic_id: str) -> Iterator[StoredDeadLetter]:
    """The dead-letter topic, streamed: a key marked absent reads as null, as it was on the raw topic."""
    for record in read_to_end(settings, settings.topic_deadletter, client_id="churn-replay-reader"):
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
    """The ledger: the keys of every dead letter replayed so far."""
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


def _walk(
    settings: Settings, selection: Selection, limit: int | None, replayed: set[bytes], topic_id: str
) -> Iterator[tuple[ReplaySummary, StoredDeadLetter | None]]:
    """Stream the dead letters, counting; yields each one to send (and the summary so far)."""
    summary = ReplaySummary()
    for record in _dead_letters(settings, topic_id):
        summary.dead_letters += 1
        if not selection.matches(record):
            continue
        summary.matching += 1
        if replayed_already(record, replayed):
            summary.already_replayed += 1
        elif not record.sendable:
            summary.unsendable += 1
        elif limit is None or summary.to_replay < limit:
            summary.to_replay += 1
            yield summary, record
    yield summary, None


def _count(settings: Settings, selection: Selection, limit: int | None, topic_id: str) -> ReplaySummary:
    summary = ReplaySummary()
    replayed = _replayed_keys(settings, ledger_topic(settings))
    for summary, _ in _walk(settings, selection, limit, replayed, topic_id):  # noqa: B007 - the last one counts
        pass
    return summary


def _fenced(exc: BaseException) -> bool:
    """kafka-python raises the fence itself, or a KafkaError that carries it as an argument."""
    return isinstance(exc, kafka_errors.ProducerFencedError) or any(
        isinstance(arg, kafka_errors.ProducerFencedError) for arg in exc.args
    )


class _Sender:
    """Chunks of dead letters back to the raw topic, each chunk one transaction with its ledger entries."""

    def __init__(self, producer: KafkaProducer, settings: Settings) -> None:
        self._producer = producer
        self._settings = settings
        self._ledger = ledger_topic(settings)
        self._bounded = Bounded()

    def send(self, chunk: list[StoredDeadLetter]) -> None:
        producer = self._producer
        producer.begin_transaction()
        for record in chunk:
            headers = list(record.original_headers) + replay_headers(record.ledger_key, record.reason)
            producer.send(self._settings.topic_raw, key=record.key, value=record.value, headers=headers)
            producer.send(self._ledger, key=record.ledger_key, value=encode_ledger_entry(utc_now_iso(), record.stage))
        producer.flush(timeout=FLUSH_TIMEOUT_S)
        self._bounded(producer.commit_transaction, CALL_TIMEOUT_S, "commit_transaction")


def replay(settings: Settings, selection: Selection, dry_run: bool = False, limit: int | None = None) -> ReplaySummary:
    topic_id = _topic_id(settings, settings.topic_deadletter)
    summary = _count(settings, selection, limit, topic_id)
    if dry_run or summary.to_replay == 0:  # nothing to send: no transactional id is taken, no other replay fenced
        return summary
    producer = make_producer(
        settings,
        client_id="churn-replay",
        transactional_id=replay_transactional_id(settings),
        transaction_timeout_ms=TRANSACTION_TIMEOUT_MS,
        delivery_timeout_ms=DELIVERY_TIMEOUT_MS,
        request_timeout_ms=REQUEST_TIMEOUT_MS,
        max_request_size=DEADLETTER_MAX_MESSAGE_BYTES + DEADLETTER_HEADROOM_BYTES,
    )
    try:
        with kafka_errors_translated(settings):
            # Before the ledger read that counts: init_transactions() fences any other replay with
            # this id and completes or aborts its open transaction. Read only before it, two replays
            # started together could both see an empty ledger and send the same records.
            producer.init_transactions()
            return _send_all(producer, settings, selection, limit, topic_id)
    finally:
        producer.close(timeout=10)


def _send_all(
    producer: KafkaProducer, settings: Settings, selection: Selection, limit: int | None, topic_id: str
) -> ReplaySummary:
    sender = _Sender(producer, settings)
    replayed = _replayed_keys(settings, ledger_topic(settings))
    chunk: list[StoredDeadLetter] = []
    sent = 0
    summary = ReplaySummary()
    for summary, record in _walk(settings, selection, limit, replayed, topic_id):  # noqa: B007 - the last one counts
        if record is not None:
            chunk.append(record)
        if chunk and (record is None or len(chunk) >= CHUNK):
            try:
                sender.send(chunk)
            except kafka_errors.KafkaError as exc:
                if not _fenced(exc):
                    raise
                raise PipelineError(
                    f"another replay took over transactional id {replay_transactional_id(settings)}; this one "
                    f"stopped after replaying {sent}. Run it again: the ledger keeps it from sending any dead "
                    "letter twice"
                ) from None
            sent += len(chunk)
            chunk = []
    summary.replayed = sent
    return summary

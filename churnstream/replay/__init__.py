"""Send dead letters back to the raw topic once their cause is fixed, each at most once.

``python -m churnstream.replay --stage validate --reason-contains Contract`` (or an offset range)
re-sends the selected dead letters' original key and value bytes to the raw topic (the CLI is
churnstream.cli.replay). Which dead letters were replayed is recorded in a ledger topic
(``<dead-letter topic>.replayed``, keyed by
``partition:offset``) *in the same Kafka transaction* as the re-sent records, so a replay that is
interrupted, repeated or run twice at once never sends a dead letter twice. The guarantee holds
for replays of one dead-letter topic under one consumer group (``KAFKA_CONSUMER_GROUP``), which
share the transactional id that fences them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

from kafka import KafkaProducer
from kafka import errors as kafka_errors

from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import (
    HEADER_REASON,
    HEADER_STAGE,
    LEDGER_SUFFIX,
    encode_ledger_entry,
    header_text,
    replay_headers,
)
from churnstream.errors import PipelineError
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.reading import read_to_end
from churnstream.kafka.topics import ensure_topics, require_topics
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

CHUNK = 1000


@dataclass(frozen=True)
class StoredDeadLetter:
    """A dead letter as replay reads it from the dead-letter topic."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    stage: str | None
    reason: str

    @property
    def ledger_key(self) -> bytes:
        return f"{self.partition}:{self.offset}".encode()


@dataclass(frozen=True)
class Selection:
    stage: str | None = None
    reason_contains: str | None = None
    partition: int | None = None
    from_offset: int | None = None
    to_offset: int | None = None  # inclusive

    def matches(self, record: StoredDeadLetter) -> bool:
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


def select(records: Iterable[StoredDeadLetter], selection: Selection, replayed: set[bytes]) -> list[StoredDeadLetter]:
    """The dead letters to replay: matching the selection and not in the ledger. Pure."""
    return [r for r in records if selection.matches(r) and r.ledger_key not in replayed]


# Under the "<group>-" prefix the pipeline's ACLs grant, but with a "~", which consumer instance ids
# may not contain: a consumer started with --instance-id replay cannot share (and fence) this id.
def replay_transactional_id(settings: Settings) -> str:
    return f"{settings.consumer_group}-~replay"


def _dead_letters(settings: Settings) -> list[StoredDeadLetter]:
    return [
        StoredDeadLetter(
            r.partition,
            r.offset,
            r.key,
            r.value,
            header_text(r.headers, HEADER_STAGE),
            header_text(r.headers, HEADER_REASON) or "",
        )
        for r in read_to_end(settings, settings.topic_deadletter, client_id="churn-replay-reader")
    ]


def _replayed_keys(settings: Settings, ledger: str) -> set[bytes]:
    """The ledger: the keys of every dead letter replayed so far."""
    records = read_to_end(settings, ledger, client_id="churn-replay-reader")
    return {record.key for record in records if record.key is not None}


def _plan(
    settings: Settings, ledger: str, selection: Selection, limit: int | None
) -> tuple[list[StoredDeadLetter], ReplaySummary]:
    """Read the ledger, then the dead letters: what to send, and the counts for the summary."""
    replayed = _replayed_keys(settings, ledger)
    records = _dead_letters(settings)
    chosen = select(records, selection, replayed)[:limit]
    # A record with neither key nor value cannot be sent by kafka-python; it carries nothing to
    # score anyway, so it is counted and left in the dead-letter topic.
    unsendable = [r for r in chosen if r.key is None and r.value is None]
    chosen = [r for r in chosen if r.key is not None or r.value is not None]
    summary = ReplaySummary(
        dead_letters=len(records),
        matching=sum(1 for r in records if selection.matches(r)),
        already_replayed=sum(1 for r in records if selection.matches(r) and r.ledger_key in replayed),
        unsendable=len(unsendable),
        to_replay=len(chosen),
    )
    return chosen, summary


def _fenced(exc: BaseException) -> bool:
    """kafka-python raises the fence itself, or a KafkaError that carries it as an argument."""
    return isinstance(exc, kafka_errors.ProducerFencedError) or any(
        isinstance(arg, kafka_errors.ProducerFencedError) for arg in exc.args
    )


def _send_chunk(producer: KafkaProducer, settings: Settings, ledger: str, chunk: list[StoredDeadLetter]) -> None:
    """One transaction: the records back to the raw topic, and their ledger entries."""
    producer.begin_transaction()
    for record in chunk:
        headers = replay_headers(record.ledger_key, record.reason)
        producer.send(settings.topic_raw, key=record.key, value=record.value, headers=headers)
        producer.send(ledger, key=record.ledger_key, value=encode_ledger_entry(utc_now_iso(), record.stage))
    producer.commit_transaction()


def replay(settings: Settings, selection: Selection, dry_run: bool = False, limit: int | None = None) -> ReplaySummary:
    ledger = settings.topic_deadletter + LEDGER_SUFFIX
    admin = make_admin(settings, client_id="churn-replay-admin")
    try:
        require_topics(admin, settings, [settings.topic_deadletter, settings.topic_raw])
        ensure_topics(admin, settings, [ledger], partitions=1)
    finally:
        admin.close()
    chosen, summary = _plan(settings, ledger, selection, limit)
    if dry_run or not chosen:  # nothing to send: no transactional id is taken, no other replay fenced
        return summary
    producer = make_producer(
        settings,
        client_id="churn-replay",
        transactional_id=replay_transactional_id(settings),
        max_request_size=2_000_000,
    )
    try:
        with kafka_errors_translated(settings):
            # Before the ledger read that counts: init_transactions() fences any other replay with
            # this id and completes or aborts its open transaction. Read only before it, two replays
            # started together could both see an empty ledger and send the same records.
            producer.init_transactions()
            chosen, summary = _plan(settings, ledger, selection, limit)
            for start in range(0, len(chosen), CHUNK):
                try:
                    _send_chunk(producer, settings, ledger, chosen[start : start + CHUNK])
                except kafka_errors.KafkaError as exc:
                    if not _fenced(exc):
                        raise
                    raise PipelineError(
                        f"another replay took over transactional id {replay_transactional_id(settings)}; this one "
                        f"stopped after replaying {summary.replayed} of {len(chosen)}. Run it again: the ledger "
                        "keeps it from sending any dead letter twice"
                    ) from None
                summary.replayed += len(chosen[start : start + CHUNK])
    finally:
        producer.close()
    return summary

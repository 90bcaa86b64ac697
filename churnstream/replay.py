"""Send dead letters back to the raw topic once their cause is fixed, each at most once.

``python -m churnstream.replay --stage validate --reason-contains Contract`` (or an offset range)
re-sends the selected dead letters' original key and value bytes to the raw topic. Which dead
letters were replayed is recorded in a ledger topic (``<dead-letter topic>.replayed``, keyed by
``partition:offset``) *in the same Kafka transaction* as the re-sent records, so a replay that is
interrupted, repeated or run twice at once never sends a dead letter twice. The guarantee holds
for replays of one dead-letter topic under one consumer group (``KAFKA_CONSUMER_GROUP``), which
share the transactional id that fences them.
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable
from dataclasses import dataclass

import orjson
from kafka import KafkaProducer, TopicPartition
from kafka import errors as kafka_errors

from churnstream.cli import add_logging_options, count_or_zero, make_parser, run, setup_logging, whole_number
from churnstream.errors import PipelineError
from churnstream.events import utc_now_iso
from churnstream.kafka_io import (
    ensure_topics,
    kafka_errors_translated,
    make_admin,
    make_consumer,
    make_producer,
    require_topics,
)
from config import Settings, load_settings

logger = logging.getLogger("churnstream.replay")

CHUNK = 1000
LEDGER_SUFFIX = ".replayed"


@dataclass(frozen=True)
class DeadLetterRecord:
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]

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

    def matches(self, record: DeadLetterRecord) -> bool:
        if self.stage is not None and record.headers.get("dl.stage") != self.stage:
            return False
        if self.reason_contains is not None and self.reason_contains not in record.headers.get("dl.reason", ""):
            return False
        if self.partition is not None and record.partition != self.partition:
            return False
        if self.from_offset is not None and record.offset < self.from_offset:
            return False
        return self.to_offset is None or record.offset <= self.to_offset


def select(records: Iterable[DeadLetterRecord], selection: Selection, replayed: set[bytes]) -> list[DeadLetterRecord]:
    """The dead letters to replay: matching the selection and not in the ledger. Pure."""
    return [r for r in records if selection.matches(r) and r.ledger_key not in replayed]


def _read_all(settings: Settings, topic: str) -> list[tuple[int, int, bytes | None, bytes | None, list]]:
    consumer = make_consumer(
        settings, client_id="churn-replay-reader", isolation_level="read_committed", enable_auto_commit=False
    )
    try:
        with kafka_errors_translated(settings):
            partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
            consumer.assign(partitions)
            consumer.seek_to_beginning(*partitions)
            ends = consumer.end_offsets(partitions)
            rows = []
            while any(consumer.position(tp) < ends[tp] for tp in partitions):
                for tp, batch in consumer.poll(timeout_ms=500).items():
                    rows += [(tp.partition, r.offset, r.key, r.value, r.headers) for r in batch]
            return rows
    finally:
        consumer.close()


# Under the "<group>-" prefix the pipeline's ACLs grant, but with a "~", which consumer instance ids
# may not contain: a consumer started with --instance-id replay cannot share (and fence) this id.
def replay_transactional_id(settings: Settings) -> str:
    return f"{settings.consumer_group}-~replay"


def _dead_letters(settings: Settings) -> list[DeadLetterRecord]:
    return [
        DeadLetterRecord(p, o, k, v, {name: (raw or b"").decode("utf-8", "replace") for name, raw in headers or ()})
        for p, o, k, v, headers in _read_all(settings, settings.topic_deadletter)
    ]


def _plan(
    settings: Settings, ledger: str, selection: Selection, limit: int | None
) -> tuple[list[DeadLetterRecord], dict[str, int]]:
    """Read the ledger, then the dead letters: what to send, and the counts for the summary."""
    replayed = {key for _, _, key, _, _ in _read_all(settings, ledger) if key is not None}
    records = _dead_letters(settings)
    chosen = select(records, selection, replayed)[:limit]
    # A record with neither key nor value cannot be sent by kafka-python; it carries nothing to
    # score anyway, so it is counted and left in the dead-letter topic.
    unsendable = [r for r in chosen if r.key is None and r.value is None]
    chosen = [r for r in chosen if r.key is not None or r.value is not None]
    summary = {
        "dead_letters": len(records),
        "matching": sum(1 for r in records if selection.matches(r)),
        "already_replayed": sum(1 for r in records if selection.matches(r) and r.ledger_key in replayed),
        "unsendable": len(unsendable),
        "to_replay": len(chosen),
        "replayed": 0,
    }
    return chosen, summary


def _fenced(exc: BaseException) -> bool:
    """kafka-python raises the fence itself, or a KafkaError that carries it as an argument."""
    return isinstance(exc, kafka_errors.ProducerFencedError) or any(
        isinstance(arg, kafka_errors.ProducerFencedError) for arg in exc.args
    )


def _send_chunk(producer: KafkaProducer, settings: Settings, ledger: str, chunk: list[DeadLetterRecord]) -> None:
    """One transaction: the records back to the raw topic, and their ledger entries."""
    producer.begin_transaction()
    for record in chunk:
        headers = [
            ("replay.of", record.ledger_key),
            ("replay.reason", record.headers.get("dl.reason", "").encode()),
        ]
        producer.send(settings.topic_raw, key=record.key, value=record.value, headers=headers)
        entry = {"replayed_ts": utc_now_iso(), "stage": record.headers.get("dl.stage")}
        producer.send(ledger, key=record.ledger_key, value=orjson.dumps(entry))
    producer.commit_transaction()


def replay(settings: Settings, selection: Selection, dry_run: bool = False, limit: int | None = None) -> dict[str, int]:
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
                        f"stopped after replaying {summary['replayed']} of {len(chosen)}. Run it again: the ledger "
                        "keeps it from sending any dead letter twice"
                    ) from None
                summary["replayed"] += len(chosen[start : start + CHUNK])
    finally:
        producer.close()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = make_parser(
        "python -m churnstream.replay",
        "Send selected dead letters back to the raw topic, each at most once.",
        epilog="Examples:\n"
        "  python -m churnstream.replay --stage validate --reason-contains Contract --dry-run\n"
        "  python -m churnstream.replay --partition 3 --from-offset 100 --to-offset 250",
    )
    choose = parser.add_argument_group("which dead letters (all given filters must match)")
    choose.add_argument("--stage", choices=("decode", "validate", "score"), help="only this failure stage")
    choose.add_argument("--reason-contains", metavar="TEXT", help="only reasons containing TEXT")
    choose.add_argument("--partition", type=count_or_zero, help="only this dead-letter partition")
    choose.add_argument("--from-offset", type=count_or_zero, help="first dead-letter offset (inclusive)")
    choose.add_argument("--to-offset", type=count_or_zero, help="last dead-letter offset (inclusive)")
    choose.add_argument("--limit", type=whole_number, help="replay at most N")
    parser.add_argument("--dry-run", action="store_true", help="count what would be replayed; send nothing")
    add_logging_options(parser)
    args: argparse.Namespace = parser.parse_args(argv)
    if (args.from_offset is not None or args.to_offset is not None) and args.partition is None:
        parser.error("--from-offset/--to-offset need --partition (offsets are per partition)")
    setup_logging(args.verbose, args.quiet)

    def body() -> int:
        selection = Selection(args.stage, args.reason_contains, args.partition, args.from_offset, args.to_offset)
        summary = replay(load_settings(), selection, dry_run=args.dry_run, limit=args.limit)
        verb = "would replay" if args.dry_run else "replayed"
        count = summary["to_replay"] if args.dry_run else summary["replayed"]
        unsendable = f", {summary['unsendable']} without key and value left" if summary["unsendable"] else ""
        print(
            f"{summary['dead_letters']} dead letters, {summary['matching']} matching, "
            f"{summary['already_replayed']} already replayed, {verb} {count}{unsendable}"
        )
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

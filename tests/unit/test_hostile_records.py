"""Records the Kafka client cannot read as the format promises (issue 19, findings 1-3), without a broker.

Batches are built with kafka-python's own builder and read back through its fetcher's
``PartitionRecords``, the code a consumer's ``poll()`` runs; a test str subclass writes a header key
whose bytes are not UTF-8, as kcat can.
"""

from __future__ import annotations

from typing import Any

import pytest
from kafka.consumer.fetcher import Fetcher
from kafka.record import default_records
from kafka.record.default_records import DefaultRecordBatchBuilder
from kafka.record.memory_records import MemoryRecords, MemoryRecordsBuilder
from kafka.structs import OffsetAndMetadata, TopicPartition

from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.outputs import (
    DEADLETTER_HEADROOM_BYTES,
    HEADER_HEADERS_DROPPED,
    HEADER_SOURCE_LAST_OFFSET,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    ORIGINAL_HEADER_PREFIX,
    DeadLetterInfo,
    Stage,
)
from churnstream.harness import receipts
from churnstream.harness.analysis import ObservedDeadLetter, conservation
from churnstream.harness.hostile import worst_case_header_count
from churnstream.kafka.internals import check_client
from churnstream.replay import Selection, StoredDeadLetter
from tests.fakes import StubModel

TP = TopicPartition("raw", 0)
ODD = b"\xff\xfe"
RAW_LIMIT = 1_048_588  # the broker's default message.max.bytes, which the raw topic inherits


class BytesKey(str):
    """A header key written as the bytes given (the test's own: kcat's header key ``ff fe``)."""

    def __new__(cls, raw: bytes) -> BytesKey:
        key = super().__new__(cls, raw.hex())
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def batch_bytes(records: list[tuple[bytes | None, bytes | None, list[Any]]], codec: int = 0, base: int = 0) -> bytes:
    """One batch as the broker stores it, its first offset ``base`` (outside the CRC, as the broker sets it)."""
    builder = MemoryRecordsBuilder(magic=2, compression_type=codec, batch_size=1 << 24)
    for index, (key, value, headers) in enumerate(records):
        builder.append(timestamp=1_700_000_000_000 + index, key=key, value=value, headers=headers)
    builder.close()
    return base.to_bytes(8, "big") + bytes(builder.buffer())[8:]


def poll_records(buffer: bytes, fetch_offset: int = 0) -> tuple[list[Any], int]:
    """What a consumer's poll() gets from these bytes, and where its position goes next."""
    check_client()  # as every client factory does first
    part = Fetcher.PartitionRecords(fetch_offset, TP, MemoryRecords(buffer))
    records = part.take()
    return records, part.next_fetch_offset


def event_record(offset: int, headers: tuple[tuple[str, bytes | None], ...] = ()) -> RawRecord:
    return RawRecord("raw", 0, offset, b"k", b'{"not": "an event"}', headers=headers)


# --------------------------------------------------------------------- finding 1: a header key that is not UTF-8


def test_a_header_key_that_is_not_utf8_is_read_and_keeps_its_bytes() -> None:
    """Before: CorruptRecordError (UnicodeDecodeError) out of poll(), position unmoved, for good.
    After: the three records come back; the odd key's encode() gives its bytes back."""
    buffer = batch_bytes([(b"a", b"1", []), (b"b", b"2", [("ok", b"x"), (BytesKey(ODD), b"y")]), (b"c", b"3", [])])
    records, next_offset = poll_records(buffer)
    assert [r.offset for r in records] == [0, 1, 2] and next_offset == 3
    (ok, ok_value), (odd, odd_value) = records[1].headers
    assert (ok, ok_value, odd_value) == ("ok", b"x", b"y")
    assert odd.encode("utf-8") == ODD and odd == "\\xff\\xfe"
    assert records[1].serialized_header_size == len(b"ok") + 1 + len(ODD) + 1


def test_a_record_with_a_header_key_that_is_not_utf8_is_one_dead_letter_that_keeps_the_bytes() -> None:
    check_client()
    buffer = batch_bytes([(b"k", b"v", [(BytesKey(ODD), b"y"), ("plain", None)])])
    (odd_record,), _ = poll_records(buffer)
    raw = RawRecord("raw", 0, 0, odd_record.key, odd_record.value, headers=tuple(odd_record.headers))
    result = score_batch([raw, event_record(1)], StubModel())
    first, second = result.dead_letters
    assert (first.stage, first.key, first.value) == (Stage.DECODE, b"k", b"v")
    assert "not UTF-8 (bytes ff fe)" in first.reason
    # The dead letter's copy of the key is written as dl.header. + its bytes, by kafka-python's builder.
    names = [name.encode() for name, _ in first.headers]
    prefix = ORIGINAL_HEADER_PREFIX.encode()
    assert prefix + ODD in names and prefix + b"plain" in names
    written = batch_bytes([(first.key, first.value, first.headers)])
    (read_back,), _ = poll_records(written)
    info = DeadLetterInfo.from_headers(read_back.headers)
    assert [(name.encode(), value) for name, value in info.original_headers] == [(ODD, b"y"), (b"plain", b"")]
    assert second.stage == Stage.VALIDATE  # its neighbour is judged on its own


# --------------------------------------------------------------------- finding 2: a dead letter that always fits


def test_the_worst_case_the_raw_topic_allows_gives_a_dead_letter_that_fits() -> None:
    """Before: 524,253 headers copied with their prefix: a 6.3 MB dead letter against a 2 MB topic,
    the batch aborted for good. After: within the record plus the headroom; the rest counted."""
    count = worst_case_header_count(RAW_LIMIT)
    record = RawRecord("raw", 0, 7, None, b"{}", headers=(("", b""),) * count)
    (dead,) = score_batch([record], StubModel()).dead_letters
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(dead.key, dead.value, dead.headers)
    assert size <= RAW_LIMIT + DEADLETTER_HEADROOM_BYTES  # what the topic and the producer are sized for
    assert (dead.key, dead.value) == (None, b"{}")
    info = DeadLetterInfo.from_headers(dead.headers)
    assert info.headers_dropped > 0 and len(info.original_headers) > 0
    assert len(info.original_headers) + info.headers_dropped == count
    assert (info.stage, info.source) == (Stage.VALIDATE, (0, 7))
    # Kept: as many as fit; what is left unused is less than the record's and a batch's framing.
    assert RAW_LIMIT + DEADLETTER_HEADROOM_BYTES - size < 200


def test_headers_that_fit_are_all_kept_and_no_count_is_added() -> None:
    headers = tuple((f"h{i}", b"v" * 100) for i in range(500))
    (dead,) = score_batch([event_record(0, headers)], StubModel()).dead_letters
    info = DeadLetterInfo.from_headers(dead.headers)
    assert info.original_headers == headers and info.headers_dropped == 0
    assert HEADER_HEADERS_DROPPED not in [name for name, _ in dead.headers]


# --------------------------------------------------------------------- finding 3: a batch the client cannot decompress


def test_a_batch_the_client_cannot_decompress_is_one_record_at_its_last_offset(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: UnsupportedCodecError out of poll(), position unmoved, for good. After: one record
    holding the compressed bytes and the batch's offsets; the position moves past the batch."""
    buffer = batch_bytes([(b"k", b'{"n": %d}' % i, []) for i in range(5)], codec=1, base=40)  # gzip
    monkeypatch.setattr(default_records.codecs, "has_gzip", lambda: False)
    (record,), next_offset = poll_records(buffer, fetch_offset=40)
    assert (record.offset, next_offset) == (44, 45)
    value = record.value
    assert (value.first_offset, value.last_offset, value.codec) == (40, 44, "gzip")
    assert "gzip" in str(value.error)

    result = score_batch([RawRecord("raw", 0, record.offset, record.key, record.value)], StubModel())
    (dead,) = result.dead_letters
    assert dead.value == bytes(value) and dead.key is None
    (written,), _ = poll_records(batch_bytes([(dead.key, dead.value, dead.headers)]))  # the producer takes it
    assert written.value == bytes(value)
    assert "gzip-compressed batch of offsets 40 to 44" in dead.reason
    info = DeadLetterInfo.from_headers(dead.headers)
    assert info.sources == [(0, 40), (0, 41), (0, 42), (0, 43), (0, 44)]
    assert info.error_class == "kafka.errors.UnsupportedCodecError"
    assert not Selection().matches(
        StoredDeadLetter(0, 0, None, dead.value, info.stage, info.reason, batch=info.source_last_offset is not None)
    )  # replay cannot send an event back from it


def test_the_harness_counts_each_offset_of_a_batch_dead_letter_once() -> None:
    raw = [RawRecord("raw", 0, offset, b"k", b"v") for offset in range(40, 45)]
    dead = DeadLetterInfo.from_headers(
        [(HEADER_SOURCE_PARTITION, b"0"), (HEADER_SOURCE_OFFSET, b"40"), (HEADER_SOURCE_LAST_OFFSET, b"44")]
    )
    counts = conservation(raw, [], [ObservedDeadLetter(dead, None, b"zz", 0.0)])
    assert (counts.lost, counts.duplicated, counts.unknown_sources, counts.dead_letter_bytes_mismatch) == (0, 0, 0, 0)
    twice = conservation(raw, [], [ObservedDeadLetter(dead, None, b"zz", 0.0)] * 2)
    assert twice.duplicated == 5


def test_a_receipt_keeps_many_headers_and_keys_that_are_not_utf8() -> None:
    """Before: a dead letter with more than 65,535 headers broke the latency reader's frame (struct.error)."""
    headers = [(BytesKey(ODD), b"x")] + [("h", b"")] * 70_000
    frame = receipts.pack(1.0, 1, RawRecord("dl", 0, 3, b"k", b"v", headers=tuple(headers)))
    decoded, _ = receipts.unpack(frame)
    assert len(decoded) == 1 and len(decoded[0].headers) == 70_001
    assert decoded[0].headers[0][0].encode() == ODD


# --------------------------------------------------------------------- the self-check


def test_a_client_where_the_records_workaround_does_not_take_effect_refuses_to_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from churnstream.errors import ConfigError  # noqa: PLC0415
    from churnstream.kafka import internals, records  # noqa: PLC0415

    monkeypatch.setitem(internals.SOURCE_TEXTS, "kafka.consumer.fetcher", ("for record in batch:", "gone text"))
    assert internals.problems() == ["kafka.consumer.fetcher no longer has 'gone text'"]
    monkeypatch.undo()
    monkeypatch.setattr(records, "install", lambda: None)
    monkeypatch.setattr(default_records.DefaultRecordBatch, "_read_msg", records._kafka_read_msg)
    monkeypatch.setattr(default_records.DefaultRecordBatch, "_maybe_uncompress", records._kafka_maybe_uncompress)
    internals.check_client.cache_clear()
    try:
        with pytest.raises(ConfigError, match=r"the records workaround: a header key that is not UTF-8 fails"):
            internals.check_client()
    finally:
        monkeypatch.undo()
        internals.check_client.cache_clear()
        internals.check_client()


# --------------------------------------------------------------------- finding 3: which codecs --verify-only reports


def test_verify_only_says_which_codecs_this_consumer_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: snappy and zstd were not installed, and nothing said so until a batch stopped the group."""
    from kafka import codec as kafka_codec  # noqa: PLC0415

    from churnstream.harness.verify import codec_check  # noqa: PLC0415

    check = codec_check()
    assert (check.passed, check.detail) == (True, "reads none, gzip, snappy, lz4, zstd")
    monkeypatch.setattr(kafka_codec, "has_zstd", lambda: False)
    check = codec_check()
    assert not check.passed and check.detail.startswith("reads none, gzip, snappy, lz4, not zstd: batches")
    assert "install zstandard" in check.detail


# --------------------------------------------------------------------- finding 5: bounded dead-letter lines


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def observed_lines(
    monkeypatch: pytest.MonkeyPatch, batches: list[tuple[float, list[Any]]], metrics: Any = None
) -> list[str]:
    """The JSON log lines of a consumer that delivers each batch of dead letters at its time."""
    import logging  # noqa: PLC0415

    from churnstream.cli.logs import JsonFormatter  # noqa: PLC0415
    from churnstream.consumer.observe import LoopObserver  # noqa: PLC0415
    from churnstream.consumer.options import ConsumerOptions  # noqa: PLC0415
    from churnstream.consumer.scoring import BatchResult  # noqa: PLC0415
    from churnstream.consumer.sinks import Batch  # noqa: PLC0415
    from churnstream.consumer.stats import RunStats  # noqa: PLC0415
    from churnstream.observability.health import Health  # noqa: PLC0415

    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(JsonFormatter().format(record))

    logger = logging.getLogger("churnstream.consumer.observe")
    handler = Collect()
    logger.addHandler(handler)
    monkeypatch.setattr(logger, "level", logging.INFO)
    clock = Clock()
    observer = LoopObserver(RunStats(ConsumerOptions()), Health(liveness_s=60), metrics, log_interval_s=0, clock=clock)
    try:
        for at, dead_letters in batches:
            clock.now = 100.0 + at
            batch = Batch(BatchResult(dead_letters=dead_letters), {TP: OffsetAndMetadata(1, "", -1)}, {})
            observer.delivered(batch, {})
        clock.now += 0.1
        if hasattr(observer, "finished"):
            observer.finished()
    finally:
        logger.removeHandler(handler)
    return lines


def dead_letter_out(offset: int, event_id: str | None = None) -> Any:
    from churnstream.consumer.scoring import DeadLetterOut  # noqa: PLC0415

    return DeadLetterOut(b"k", b"v", [], "validate", "a reason", 0, offset, event_id)


def test_a_60000_character_event_id_is_cut_on_its_dead_letter_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: the whole event_id, 60 kB, on one JSON line. After: 200 characters and a marker."""
    import orjson  # noqa: PLC0415

    (line,) = observed_lines(monkeypatch, [(0.0, [dead_letter_out(5, "x" * 60_000)])])
    assert len(line) < 1_000
    logged = orjson.loads(line)
    assert logged["event_id"] == "x" * 200 + "...[cut from 60000 chars]"
    assert logged["offset"] == 5


def test_dead_letter_lines_are_limited_per_second_and_the_rest_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 20 lines a batch, so 5 batches in half a second wrote 100 lines. After: 20 in any
    second, one line summing up the rest, and the rest in churn_dead_letter_log_lines_left_out_total."""
    from churnstream.observability.health import Health  # noqa: PLC0415
    from churnstream.observability.metrics import ConsumerMetrics  # noqa: PLC0415

    metrics = ConsumerMetrics(Health(liveness_s=60), Health(liveness_s=60).lag)
    floods = [(0.1 * i, [dead_letter_out(50 * i + j) for j in range(50)]) for i in range(5)]
    later = [(1.5, [dead_letter_out(1000)])]
    lines = observed_lines(monkeypatch, floods + later, metrics)
    one_by_one = [line for line in lines if '"offset"' in line]
    summed = [line for line in lines if "more event(s)" in line]
    assert len(one_by_one) == 20 + 1  # 20 in the first second, and the one 1.5 s later
    assert len(summed) == 1 and "dead-lettered 230 more event(s) in the last 1.5 s" in summed[0]
    left_out = metrics.registry.get_sample_value("churn_dead_letter_log_lines_left_out_total")
    assert left_out == 230

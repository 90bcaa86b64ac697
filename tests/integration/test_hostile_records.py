"""Records other clients can write and kafka-python could not read, against the real broker (issue 19).

A header key that is not UTF-8, as many headers as the raw topic's limit allows, a 60,000-character
event_id, and batches compressed by librdkafka (confluent-kafka) with each codec: consumer.py runs
as a subprocess, keeps going, and gives each record exactly one outcome.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.record.default_records import DefaultRecordBatchBuilder

from churnstream.contract.events import encode_event, utc_now_iso
from churnstream.contract.outputs import DEADLETTER_HEADROOM_BYTES, DeadLetterInfo, Stage, decode_prediction
from churnstream.harness.analysis import ObservedDeadLetter, ObservedPrediction, conservation
from churnstream.harness.hostile import CODECS, librdkafka_send, worst_case_header_count
from churnstream.harness.readers import read_topic
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.reading import read_all
from churnstream.kafka.topics import ensure_topics, topic_max_message_bytes
from churnstream.settings import Settings, settings_from
from tests.helpers import make_rows, run_module, run_script, telco_event

pytestmark = pytest.mark.integration

ODD_KEY = b"\xff\xfe"


class BytesKey(str):
    """A header key written as the bytes given (kcat's ``ff fe``): kafka-python's producer writes
    what a header key's encode() returns."""

    def __new__(cls, raw: bytes) -> BytesKey:
        key = super().__new__(cls, raw.hex())
        key.raw = raw
        return key

    def encode(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        return self.raw


def events(prefix: str, count: int) -> list[dict[str, Any]]:
    stamp = utc_now_iso()
    return [telco_event(row, event_id=f"{prefix}-{i}", event_ts=stamp) for i, row in enumerate(make_rows(count))]


def raw_limit(settings: Settings) -> int:
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw])
        limit = topic_max_message_bytes(admin, settings.topic_raw)
    finally:
        admin.close()
    assert limit is not None
    return limit


def consume(env: dict[str, str], tmp_path: Path, name: str, **extra: str) -> tuple[dict[str, Any], str]:
    summary_file = tmp_path / f"{name}.json"
    args = ["--mode", "batch", "--log-format", "json", "--summary-json", str(summary_file)]
    result = run_script("consumer.py", args, env={**env, **extra}, timeout=150)
    assert result.returncode == 0, result.stderr[-3000:]
    return orjson.loads(summary_file.read_bytes()), result.stderr


def outcomes(settings: Settings) -> tuple[list[Any], list[Any]]:
    predictions = read_all(settings, settings.topic_predictions, timeout_s=60)
    dead_letters = read_all(settings, settings.topic_deadletter, timeout_s=60)
    return predictions, dead_letters


def accounting(settings: Settings, predictions: list[Any], dead_letters: list[Any]) -> Any:
    raw = read_topic(settings, settings.topic_raw)
    observed = [ObservedPrediction(decode_prediction(r.value), 0.0) for r in predictions]
    dead = [ObservedDeadLetter(DeadLetterInfo.from_headers(r.headers), r.key, r.value, 0.0) for r in dead_letters]
    return conservation(raw, observed, dead)


def test_hostile_records_among_valid_events_are_one_dead_letter_each_and_replay_keeps_their_headers(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Before: exit 1 at the odd header key (CorruptRecordError), 20 of 60 valid events scored, the same
    on every restart; past it, the worst-case headers aborted five transactions and stopped the consumer."""
    settings = settings_from(pipeline_env)
    limit = raw_limit(settings)
    good = events("good", 60)
    long_id = {**good[0], "event_id": "x" * 60_000}
    headers_count = worst_case_header_count(limit)
    hostile: list[tuple[bytes | None, bytes | None, list[Any]]] = [
        (b"odd-key", encode_event(good[1]), [("trace", b"1"), (BytesKey(ODD_KEY), b"kcat")]),
        (None, b"{}", [("", b"")] * headers_count),
        (b"long-id", encode_event(long_id), []),
    ]
    records = [(e["customerID"].encode(), encode_event(e), []) for e in good]
    records = records[:20] + hostile[:1] + records[20:40] + hostile[1:] + records[40:]
    producer = make_producer(settings, client_id="hostile", max_request_size=limit)
    try:
        futures = [producer.send(settings.topic_raw, key=k, value=v, headers=h, partition=0) for k, v, h in records]
        producer.flush(timeout=60)
        assert all(future.succeeded() for future in futures), [f.exception for f in futures if f.failed()]
    finally:
        producer.close()

    summary, log = consume(pipeline_env, tmp_path, "consumer")
    assert (summary["consumed"], summary["scored"], summary["dead_lettered"]) == (63, 60, 3)
    predictions, dead_letters = outcomes(settings)
    counts = accounting(settings, predictions, dead_letters)
    assert (counts.lost, counts.duplicated, counts.unknown_sources, counts.dead_letter_bytes_mismatch) == (0, 0, 0, 0)
    by_key = {record.key: record for record in dead_letters}
    odd, worst, long_one = by_key[b"odd-key"], by_key[None], by_key[b"long-id"]

    odd_info = DeadLetterInfo.from_headers(odd.headers)
    assert (odd_info.stage, odd_info.error_class) == (Stage.DECODE, "UnicodeDecodeError")
    assert [(name.encode(), value) for name, value in odd_info.original_headers] == [
        (b"trace", b"1"),
        (ODD_KEY, b"kcat"),
    ]
    worst_info = DeadLetterInfo.from_headers(worst.headers)
    size = DefaultRecordBatchBuilder.estimate_size_in_bytes(worst.key, worst.value, worst.headers)
    assert size <= limit + DEADLETTER_HEADROOM_BYTES and worst.value == b"{}"
    assert worst_info.headers_dropped > 0
    assert len(worst_info.original_headers) + worst_info.headers_dropped == headers_count
    assert DeadLetterInfo.from_headers(long_one.headers).stage == Stage.VALIDATE

    lines = log.splitlines()
    assert max(len(line) for line in lines) < 2_000, "a log line carries a whole value from an event"
    cut = [orjson.loads(line) for line in lines if "cut from 60000 chars" in line]
    assert len(cut) == 1 and cut[0]["event_id"].startswith("x" * 200 + "...")

    replayed = run_module("churnstream.replay", ["-q"], pipeline_env, timeout=120)
    assert replayed.returncode == 0, replayed.stderr[-3000:]
    raw = read_all(settings, settings.topic_raw, timeout_s=60)
    back = {record.key: record for record in raw[len(records) :]}
    assert len(raw) == len(records) + 3
    names = [name.encode() for name, _ in back[b"odd-key"].headers]
    assert names[:2] == [b"trace", ODD_KEY]  # then replay's own headers
    assert sum(1 for name, _ in back[None].headers if name == "") == len(worst_info.original_headers)


def librdkafka_produce(settings: Settings, per_codec: int) -> dict[str, list[int]]:
    """``per_codec`` valid events from librdkafka per codec, each codec's in one batch on partition 0."""
    return {
        codec: librdkafka_send(
            settings, codec, [(e["customerID"].encode(), encode_event(e)) for e in events(codec, per_codec)]
        )
        for codec in CODECS
    }


def test_librdkafka_batches_in_every_codec_are_scored(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    """Before: UnsupportedCodecError at the snappy batch, exit 1, 20 of 50 scored, for good."""
    settings = settings_from(pipeline_env)
    raw_limit(settings)
    offsets = librdkafka_produce(settings, 10)
    summary, _ = consume(pipeline_env, tmp_path, "consumer")
    assert (summary["consumed"], summary["scored"], summary["dead_lettered"]) == (50, 50, 0)
    predictions, _ = outcomes(settings)
    by_codec = Counter(decode_prediction(r.value).event_id.split("-")[0] for r in predictions)
    assert by_codec == dict.fromkeys(CODECS, 10)
    assert sum(len(o) for o in offsets.values()) == 50


def test_a_codec_the_consumer_lacks_costs_its_batch_one_dead_letter(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Before: exit 1 at the snappy batch, the position unmoved. After: that batch is one dead letter
    naming its offsets, every other event scored, and the harness counts each offset once."""
    settings = settings_from(pipeline_env)
    raw_limit(settings)
    offsets = librdkafka_produce(settings, 10)
    hidden = tmp_path / "no-snappy"
    hidden.mkdir()
    (hidden / "snappy.py").write_text('raise ImportError("snappy is hidden by the test")\n')
    summary, log = consume(pipeline_env, tmp_path, "consumer", PYTHONPATH=str(hidden))
    assert summary["scored"] == 40 and summary["dead_lettered"] >= 1
    predictions, dead_letters = outcomes(settings)
    infos = [DeadLetterInfo.from_headers(r.headers) for r in dead_letters]
    assert sorted(offset for info in infos for _, offset in info.sources) == sorted(offsets["snappy"])
    assert all(info.error_class == "kafka.errors.UnsupportedCodecError" for info in infos)
    assert "snappy-compressed batch of offsets" in log
    counts = accounting(settings, predictions, dead_letters)
    assert (counts.lost, counts.duplicated, counts.unknown_sources) == (0, 0, 0)

    verified = run_script("test_pipeline.py", ["--verify-only"], env={**pipeline_env, "PYTHONPATH": str(hidden)})
    assert verified.returncode == 1, verified.stdout + verified.stderr
    assert "compression codecs" in verified.stdout and "not snappy" in verified.stdout

"""Replay and its reader without a broker: scripted dead letters, a producer that fails on cue, a fake clock.

The broker-backed behaviour (the ledger, two replays at once, a re-created topic) is in
tests/integration/test_replay.py; here, what needs a failure or a length no test broker offers.
"""

from __future__ import annotations

import logging
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kafka.structs import TopicPartition

import churnstream.replay as replay_module
from churnstream.contract.outputs import dead_letter_headers
from churnstream.errors import PipelineError
from churnstream.kafka import reading
from churnstream.kafka.reading import read_to_end
from churnstream.replay import Selection, SendFailed, replay
from churnstream.settings import Settings, settings_from
from tests.fakes import FakeProducer, FakeRecord

SETTINGS = settings_from({"KAFKA_TOPIC_DEADLETTER": "dlq", "KAFKA_TOPIC_RAW": "raw"})


def dead_letter(offset: int, value: bytes = b"{}") -> FakeRecord:
    record = FakeRecord("dlq", 0, offset, b"key", value)
    record.headers = dead_letter_headers(
        stage="validate",
        reason="Contract='Forever' is not a known category",
        error_class="ValidationError",
        source_topic="raw",
        source_partition=0,
        source_offset=offset,
        failed_ts="2026-01-01T00:00:00Z",
        model_version="m1",
    )
    return record


class Topics:
    """What replay reads (read_to_end): the dead letters, generated as read, and an empty ledger.
    Counts the reads of each topic, and reports progress after every record, as often as it can."""

    def __init__(self, dead_letters: int, value_bytes: int = 2) -> None:
        self.dead_letters = dead_letters
        self.value = b"{" + b" " * (value_bytes - 2) + b"}"
        self.reads: Counter[str] = Counter()

    def __call__(self, settings: Settings, topic: str, *, on_progress: Any = None, **_: Any) -> Iterator[FakeRecord]:
        self.reads[topic] += 1
        if topic != settings.topic_deadletter:
            return
        for offset in range(self.dead_letters):
            yield dead_letter(offset, self.value)
            if on_progress is not None:
                on_progress(offset + 1, self.dead_letters)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> FakeProducer:
    made = FakeProducer()
    monkeypatch.setattr(replay_module, "make_producer", lambda *args, **kwargs: made)
    monkeypatch.setattr(replay_module, "_topic_id", lambda settings, topic: "topic-id")
    return made


def test_a_dead_letter_whose_send_failed_is_not_marked_replayed(
    producer: FakeProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: replay discarded what send() returned and committed, so a send that failed without
    failing the transaction (kafka-python commits without the failed records) left its ledger entry
    committed: marked replayed, never re-sent. Now every send is checked; the chunk is aborted."""
    monkeypatch.setattr(replay_module, "read_to_end", Topics(3))
    producer.fail_topics = {SETTINGS.topic_raw}
    with pytest.raises(SendFailed) as failed:
        replay(SETTINGS, Selection())
    assert "commit" not in producer.calls and producer.calls[-2:] == ["abort", "close"]
    assert "its chunk of 3 was not committed and none of it is marked replayed" in str(failed.value)


def test_replay_reads_the_dead_letters_once_and_says_how_far_it_is(
    producer: FakeProducer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: the topic was read twice (a count, then the sending pass), with no word until the end."""
    topics = Topics(5)
    monkeypatch.setattr(replay_module, "read_to_end", topics)
    monkeypatch.setattr(replay_module, "PROGRESS_INTERVAL_S", 0.0)
    with caplog.at_level(logging.INFO, logger="churnstream.replay"):
        summary = replay(SETTINGS, Selection(stage="validate"))
    assert topics.reads["dlq"] == 1
    assert topics.reads["dlq.replayed"] == 2  # before taking the transactional id, and after: complete
    assert (summary.dead_letters, summary.to_replay, summary.replayed) == (5, 5, 5)
    assert [topic for topic, *_ in producer.sent].count("raw") == 5
    assert producer.calls == ["init", "begin", "flush", "commit", "close"]
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("read ")]
    assert lines[2] == "read 3 of 5 dead-letter offsets (60%): 3 matching, 0 already replayed, 0 replayed so far"


def test_a_dry_run_holds_no_more_memory_for_a_hundred_times_the_dead_letters(
    producer: FakeProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A dead-letter topic is kept forever: replay streams it. 20,000 dead letters of 1 KB (20 MB
    if held) cost no more than 200 do; nothing is sent, and no transactional id is taken."""
    peaks = []
    for dead_letters in (200, 20_000):
        monkeypatch.setattr(replay_module, "read_to_end", Topics(dead_letters, value_bytes=1024))
        tracemalloc.start()
        try:
            summary = replay(SETTINGS, Selection(), dry_run=True)
            peaks.append(tracemalloc.get_traced_memory()[1])
        finally:
            tracemalloc.stop()
        assert summary.to_replay == dead_letters
    assert peaks[1] < 2 * peaks[0] + 256 * 1024, peaks
    assert producer.calls == []


# -- the reader: bounded by a stall, not by the topic's length


class SlowTopic:
    """One partition of ``records`` records, one per poll; each poll takes ``poll_s`` on a fake clock.
    Past ``stalls_after`` records, polls return nothing (a broker gone)."""

    def __init__(self, records: int, poll_s: float, stalls_after: int | None = None) -> None:
        self.tp = TopicPartition("dlq", 0)
        self.records = records
        self.poll_s = poll_s
        self.stalls_after = stalls_after
        self.position_ = 0
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def partitions_for_topic(self, topic: str) -> set[int]:
        return {0}

    def assign(self, partitions: list[TopicPartition]) -> None:
        pass

    def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.position_ = 0

    def beginning_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {self.tp: 0}

    def end_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {self.tp: self.records}

    def poll(self, timeout_ms: int = 0) -> dict[TopicPartition, list[FakeRecord]]:
        self.now += self.poll_s
        if self.stalls_after is not None and self.position_ >= self.stalls_after:
            return {}
        record = FakeRecord("dlq", 0, self.position_, None, b"{}")
        self.position_ += 1
        return {self.tp: [record]}

    def position(self, tp: TopicPartition) -> int:
        return self.position_

    def close(self) -> None:
        pass


def _read(monkeypatch: pytest.MonkeyPatch, topic: SlowTopic, **options: Any) -> list[Any]:
    monkeypatch.setattr(reading, "make_consumer", lambda *args, **kwargs: topic)
    monkeypatch.setattr(reading, "time", topic)
    return list(read_to_end(SETTINGS, "dlq", **options))


def test_a_long_read_that_keeps_moving_is_read_to_its_end(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: 120 s for the whole read, however long the topic: 30 polls of 10 s stopped at the 13th."""
    progress: list[tuple[int, int]] = []
    records = _read(monkeypatch, SlowTopic(records=30, poll_s=10.0), on_progress=lambda *seen: progress.append(seen))
    assert len(records) == 30
    assert progress[0] == (1, 30) and progress[-1] == (30, 30)


def test_a_read_that_stops_moving_ends_after_the_stall_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    topic = SlowTopic(records=30, poll_s=10.0, stalls_after=5)
    with pytest.raises(PipelineError) as stalled:
        _read(monkeypatch, topic, stall_s=60.0)
    assert str(stalled.value).startswith("reading dlq made no progress for 60 s, at 5 of 30 records")
    assert 60.0 < topic.now - 50.0 <= 70.0  # ended one poll past the bound, counted from the last record

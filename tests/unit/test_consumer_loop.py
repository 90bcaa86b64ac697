"""The consumer without a broker: batch offsets, both sinks, the loop, windows and stop conditions.

Fakes (tests/fakes.py) record every call, so the order "outputs, flush, then offsets" and "one
model call, one flush, one commit per batch" are checked exactly, in milliseconds.
"""

from __future__ import annotations

import time

import pytest
from kafka import errors as kafka_errors
from kafka.structs import MemberState, OffsetAndMetadata, TopicPartition

from churnstream.consumer.identity import claim_identity, host_part, transactional_id
from churnstream.consumer.loop import StopConditions, batch_offsets, consume_loop
from churnstream.consumer.options import MAX_CONSECUTIVE_ABORTS, ConsumerOptions
from churnstream.consumer.run import producer_options
from churnstream.consumer.scoring import score_batch
from churnstream.consumer.sinks import (
    AtLeastOnceSink,
    Batch,
    BatchAborted,
    CallStalled,
    OutputFailed,
    SinkTimes,
    TransactionalSink,
)
from churnstream.consumer.stats import RunStats
from churnstream.contract.events import encode_event
from churnstream.contract.outputs import Guarantee, Mode, decode_prediction
from churnstream.errors import TopicMissing
from churnstream.kafka import topics as topics_module
from churnstream.kafka.topics import wait_for_topics
from churnstream.lifecycle import StopFlag
from churnstream.observability.health import Health
from churnstream.settings import settings_from
from tests.fakes import FakeConsumer, FakeProducer, FakeRecord, StubModel
from tests.helpers import make_rows, telco_event

SETTINGS = settings_from({"KAFKA_TOPIC_RAW": "raw", "KAFKA_TOPIC_PREDICTIONS": "pred", "KAFKA_TOPIC_DEADLETTER": "dlq"})
P0, P1 = TopicPartition("raw", 0), TopicPartition("raw", 1)
EVENTS = [encode_event(telco_event(row, f"e-{i}", "2026-12-01T00:00:00.000Z")) for i, row in enumerate(make_rows(40))]


def records(tp: TopicPartition, first: int, count: int, bad: tuple[int, ...] = ()) -> list[FakeRecord]:
    """``count`` events of partition ``tp`` from offset ``first``; offsets in ``bad`` carry invalid JSON."""
    out = []
    for offset in range(first, first + count):
        value = b"not json" if offset in bad else EVENTS[offset % len(EVENTS)]
        out.append(FakeRecord(tp.topic, tp.partition, offset, b"k", value))
    return out


class CountingSink:
    """A sink that only records what it was handed (for the loop's own tests)."""

    def __init__(self, abort: int = 0) -> None:
        self.delivered: list[tuple[int, dict[TopicPartition, OffsetAndMetadata]]] = []
        self.abort = abort
        self.times = SinkTimes()

    def deliver(self, batch: Batch) -> None:
        if self.abort:
            self.abort -= 1
            raise BatchAborted("test")
        self.delivered.append((batch.result.consumed, batch.offsets))


def run_loop(consumer: FakeConsumer, sink: object, options: ConsumerOptions, model: StubModel) -> RunStats:
    stop = StopFlag()
    stats = RunStats(options)
    until = StopConditions(options, stop, stats)
    original_poll = consumer.poll

    def poll(timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if not consumer.batches:
            stop.set("test")
        return original_poll(timeout_ms, max_records)

    consumer.poll = poll  # type: ignore[method-assign]
    consume_loop(consumer, sink, model, stats, until)
    return stats


# --------------------------------------------------------------------- batch offsets


def test_batch_offsets_commit_past_the_last_record_and_rewind_to_the_first() -> None:
    polled = {P0: records(P0, 10, 3), P1: records(P1, 5, 2), TopicPartition("raw", 2): []}
    flat, offsets, rewind = batch_offsets(polled)
    assert [r.offset for r in flat] == [10, 11, 12, 5, 6]
    assert offsets == {P0: OffsetAndMetadata(13, "", 0), P1: OffsetAndMetadata(7, "", 0)}
    assert rewind == {P0: 10, P1: 5}


# --------------------------------------------------------------------- at-least-once sink


def test_at_least_once_flushes_once_then_commits_the_batch_offsets() -> None:
    consumer, producer = FakeConsumer([]), FakeProducer()
    result = score_batch(records(P0, 0, 5, bad=(2,)), StubModel())
    offsets = {P0: OffsetAndMetadata(5, "", 0)}
    AtLeastOnceSink(producer, consumer, SETTINGS).deliver(Batch(result, offsets, {P0: 0}))
    assert [topic for topic, *_ in producer.sent] == ["pred"] * 4 + ["dlq"]
    assert consumer.calls == ["commit"] and producer.calls == ["flush"]  # one flush, then one commit
    assert consumer.commits == [offsets]


def test_at_least_once_commits_nothing_when_an_output_fails() -> None:
    consumer, producer = FakeConsumer([]), FakeProducer(fail_topics=["dlq"])
    result = score_batch(records(P0, 0, 3, bad=(1,)), StubModel())
    with pytest.raises(OutputFailed, match="offsets were not committed"):
        AtLeastOnceSink(producer, consumer, SETTINGS).deliver(Batch(result, {P0: OffsetAndMetadata(3, "", 0)}, {P0: 0}))
    assert consumer.commits == []


# --------------------------------------------------------------------- exactly-once sink


def test_exactly_once_puts_outputs_and_offsets_in_one_transaction() -> None:
    consumer, producer = FakeConsumer([]), FakeProducer()
    result = score_batch(records(P0, 0, 4), StubModel())
    offsets = {P0: OffsetAndMetadata(4, "", 0)}
    TransactionalSink(producer, consumer, SETTINGS).deliver(Batch(result, offsets, {P0: 0}))
    assert producer.calls == ["begin", "offsets", "flush", "commit"]
    assert producer.offsets_sent == [offsets] and consumer.commits == []  # the offsets go in the transaction


def test_a_failed_output_aborts_the_transaction_and_rewinds_the_batch() -> None:
    consumer, producer = FakeConsumer([{P0: []}]), FakeProducer(fail_topics=["pred"])
    result = score_batch(records(P0, 7, 3), StubModel())
    with pytest.raises(BatchAborted):
        TransactionalSink(producer, consumer, SETTINGS).deliver(
            Batch(result, {P0: OffsetAndMetadata(10, "", 0)}, {P0: 7})
        )
    assert producer.calls[-1] == "abort" and "commit" not in producer.calls
    assert consumer.seeks == [(P0, 7)]  # polled again from the batch's first offset


def test_a_fence_stops_the_consumer_without_an_abort() -> None:
    consumer = FakeConsumer([])
    producer = FakeProducer(commit_error=kafka_errors.ProducerFencedError("fenced"))
    result = score_batch(records(P0, 0, 2), StubModel())
    with pytest.raises(OutputFailed, match="another consumer took over"):
        TransactionalSink(producer, consumer, SETTINGS).deliver(
            Batch(result, {P0: OffsetAndMetadata(2, "", 0)}, {P0: 0})
        )
    assert "abort" not in producer.calls


# --------------------------------------------------------------------- the loop


def test_the_loop_scores_each_poll_with_one_model_call_and_one_delivery() -> None:
    consumer = FakeConsumer([{P0: records(P0, 0, 7), P1: records(P1, 0, 5)}, {}, {P0: records(P0, 7, 3)}])
    sink, model = CountingSink(), StubModel()
    stats = run_loop(consumer, sink, ConsumerOptions(log_interval_s=0), model)
    assert model.calls == [12, 3]  # one predict_proba per poll batch, never per message
    assert [consumed for consumed, _ in sink.delivered] == [12, 3]
    assert sink.delivered[1][1] == {P0: OffsetAndMetadata(10, "", 0)}
    assert (stats.totals.consumed, stats.totals.batches, stats.aborted) == (15, 2, 0)


def test_aborts_in_a_row_stop_the_loop_and_a_success_resets_the_count() -> None:
    batches = [{P0: records(P0, 0, 1)} for _ in range(MAX_CONSECUTIVE_ABORTS + 2)]
    stats = run_loop(
        FakeConsumer(batches),
        CountingSink(abort=MAX_CONSECUTIVE_ABORTS - 1),
        ConsumerOptions(log_interval_s=0),
        StubModel(),
    )
    assert stats.aborted == MAX_CONSECUTIVE_ABORTS - 1 and stats.totals.batches == 3
    with pytest.raises(OutputFailed, match=f"{MAX_CONSECUTIVE_ABORTS} transactions in a row"):
        run_loop(FakeConsumer(batches), CountingSink(abort=99), ConsumerOptions(log_interval_s=0), StubModel())


def test_outputs_of_the_loop_are_one_per_record() -> None:
    consumer, producer = FakeConsumer([{P0: records(P0, 0, 6, bad=(3,))}]), FakeProducer()
    run_loop(consumer, AtLeastOnceSink(producer, consumer, SETTINGS), ConsumerOptions(log_interval_s=0), StubModel())
    predictions = [decode_prediction(value) for topic, _, value, _ in producer.sent if topic == "pred"]
    assert sorted(p.source_offset for p in predictions) == [0, 1, 2, 4, 5]
    assert [topic for topic, *_ in producer.sent].count("dlq") == 1


# --------------------------------------------------------------------- windows and stopping


def test_batch_mode_windows_have_exactly_their_size() -> None:
    options = ConsumerOptions(mode=Mode.BATCH, window_size=4, max_batch=10, log_interval_s=0)
    stats = RunStats(options)
    until = StopConditions(options, StopFlag(), stats)
    sizes = []
    offset = 0
    for _ in range(5):
        size = until.poll_limit()  # the loop polls at most this many: a window never spills over
        sizes.append(size)
        stats.record(score_batch(records(P0, offset, min(size, 3)), StubModel()))
        offset += min(size, 3)
    stats.close_window()
    assert sizes == [4, 1, 4, 1, 4]
    assert [w.events for w in stats.windows] == [4, 4, 3]
    assert [w.window for w in stats.windows] == [1, 2, 3]


def test_batch_mode_stops_when_caught_up_with_the_end_offsets_seen_at_assignment() -> None:
    options = ConsumerOptions(mode=Mode.BATCH, log_interval_s=0)
    consumer = FakeConsumer([{P0: records(P0, 0, 3)}], end_offsets={P0: 3})
    stats = RunStats(options)
    until = StopConditions(options, StopFlag(), stats)
    assert not until.reached(consumer)  # position 0 of 3
    consumer.poll()
    assert until.reached(consumer) and until.stopped_by == "caught-up"
    consumer.metadata.state = MemberState.REBALANCING
    assert not until.caught_up(consumer)  # not while the group rebalances


def test_a_signal_and_a_duration_stop_the_loop_with_their_names() -> None:
    stop = StopFlag()
    options = ConsumerOptions(guarantee=Guarantee.AT_LEAST_ONCE, duration_s=3600)
    until = StopConditions(options, stop, RunStats(options))
    consumer = FakeConsumer([])
    assert not until.reached(consumer)
    stop.set("SIGTERM")
    assert until.reached(consumer) and until.stopped_by == "SIGTERM"
    expired = ConsumerOptions(duration_s=1e-9)
    until = StopConditions(expired, StopFlag(), RunStats(expired))
    assert until.reached(consumer) and until.stopped_by == "duration"


# --------------------------------------------------------------------- identity


def test_each_process_on_a_host_takes_the_lowest_free_slot(tmp_path) -> None:  # type: ignore[no-untyped-def]
    first = claim_identity("group-a", slot_dir=tmp_path)
    second = claim_identity("group-a", slot_dir=tmp_path)
    other_group = claim_identity("group-b", slot_dir=tmp_path)
    assert (first.slot, second.slot, other_group.slot) == (0, 1, 0)
    assert first.transactional_id == f"group-a~{first.instance_id}" and first.instance_id.endswith("-0")
    first.release()  # as the kernel does for a process killed with -9
    successor = claim_identity("group-a", slot_dir=tmp_path)
    assert successor.slot == 0 and successor.transactional_id == first.transactional_id  # it fences the dead one
    explicit = claim_identity("group-a", instance_id="pod-7", slot_dir=tmp_path)
    assert (explicit.slot, explicit.transactional_id) == (None, "group-a~pod-7")
    for identity in (second, other_group, successor):
        identity.release()


# --------------------------------------------------------------------- bounds and fencing (issue 13)


def test_every_wait_inside_a_transaction_ends_before_the_transaction_does() -> None:
    """Before: a 15 s transaction timeout held a 120 s delivery timeout and a 150 s flush, so any stall
    over 15 s made the broker abort a transaction the consumer still waited on."""
    for timeout_ms in (10_000, 15_000, 60_000, 900_000):
        options = ConsumerOptions(transaction_timeout_ms=timeout_ms)
        timeout_s = timeout_ms / 1000
        assert options.request_timeout_ms + 5 <= options.delivery_timeout_ms  # kafka-python's own rule
        assert options.delivery_timeout_ms / 1000 < options.flush_timeout_s <= timeout_s - 3
        assert options.transaction_call_timeout_s <= timeout_s
    assert ConsumerOptions().transaction_timeout_ms == 60_000
    with pytest.raises(ValueError, match="transaction timeout"):
        ConsumerOptions(transaction_timeout_ms=5_000)


def test_the_output_producer_gets_the_nested_bounds() -> None:
    options = ConsumerOptions()
    identity = claim_identity("g", instance_id="i")
    extra = producer_options(options, identity)
    assert (extra["delivery_timeout_ms"], extra["request_timeout_ms"]) == (45_000, 30_000)
    assert extra["transaction_timeout_ms"] == 60_000


def test_a_transaction_the_broker_timed_out_is_called_a_stall_not_a_takeover() -> None:
    clock = iter([0.0, 61.0])
    consumer = FakeConsumer([])
    producer = FakeProducer(commit_error=kafka_errors.InvalidProducerEpochError("epoch bumped"))
    sink = TransactionalSink(producer, consumer, SETTINGS, ConsumerOptions(), clock=lambda: next(clock))
    with pytest.raises(OutputFailed, match="stayed open 61 s, past the transaction timeout \\(60 s"):
        sink.deliver(Batch(score_batch(records(P0, 0, 2), StubModel()), {P0: OffsetAndMetadata(2, "", 0)}, {P0: 0}))


class QuickBounds(ConsumerOptions):
    transaction_call_timeout_s = 0.3  # the real minimum is 10 s: too slow for a unit test


@pytest.mark.timeout(20)
def test_a_commit_that_never_returns_is_bounded() -> None:
    """Before: commit_transaction waited for good, holding the partitions and deaf to SIGTERM."""
    consumer, producer = FakeConsumer([]), FakeProducer()
    producer.commit_blocks = True
    sink = TransactionalSink(producer, consumer, SETTINGS, QuickBounds())
    started = time.monotonic()
    with pytest.raises(CallStalled, match="commit_transaction did not return within 0 s"):
        sink.deliver(Batch(score_batch(records(P0, 0, 2), StubModel()), {P0: OffsetAndMetadata(2, "", 0)}, {P0: 0}))
    assert time.monotonic() - started < 5


def test_the_offsets_carry_the_membership_the_batch_was_polled_under() -> None:
    """Before: the metadata was read at commit time. A dynamic member evicted while it scored had by
    then reset to generation -1 and no member id, which the broker accepts: the zombie's outputs and
    offsets committed after the new owner had processed the batch again (duplicates)."""
    consumer = FakeConsumer([{P0: records(P0, 0, 3)}])
    producer = FakeProducer()

    class EvictedWhileScoring(StubModel):
        def predict_proba(self, rows):  # type: ignore[no-untyped-def]
            consumer.metadata.generation_id, consumer.metadata.member_id = -1, ""
            return super().predict_proba(rows)

    run_loop(
        consumer,
        TransactionalSink(producer, consumer, SETTINGS),
        ConsumerOptions(log_interval_s=0),
        EvictedWhileScoring(),
    )
    (membership,) = producer.memberships
    assert (membership.generation_id, membership.member_id) == (1, "member-1")  # the broker can fence it


def test_batch_mode_is_not_caught_up_while_a_position_is_unknown() -> None:
    """Before: position() had no timeout, and a None it returned raised TypeError."""
    options = ConsumerOptions(mode=Mode.BATCH, log_interval_s=0)
    consumer = FakeConsumer([{P0: records(P0, 0, 3)}], end_offsets={P0: 3})
    consumer.poll()
    consumer.positions_unknown = True
    stats = RunStats(options)
    assert not StopConditions(options, StopFlag(), stats).caught_up(consumer)


def test_ids_that_ran_together_no_longer_collide() -> None:
    """Before: "<group>-<host>-<slot>": group a-b on host c and group a on host b-c were both a-b-c-0,
    and two hosts equal in their first 80 characters shared every id."""
    assert transactional_id("a-b", "c-0") != transactional_id("a", "b-c-0")
    long_a, long_b = "node-" + "x" * 80 + "-a", "node-" + "x" * 80 + "-b"
    assert host_part(long_a) != host_part(long_b) and len(host_part(long_a)) <= 49
    assert host_part("worker-3") == "worker-3"  # a short, plain name is kept as it is
    assert host_part("wörker") != host_part("w-rker")  # a replaced character cannot make two hosts one


# -- started before its input topic exists


class TopicsAppearing:
    """An admin client whose topic list gains ``topic`` at its ``appears_at``-th look (never: None)."""

    def __init__(self, topic: str, appears_at: int | None) -> None:
        self.topic = topic
        self.appears_at = appears_at
        self.looks = 0

    def list_topics(self) -> list[str]:
        self.looks += 1
        return [self.topic] if self.appears_at is not None and self.looks >= self.appears_at else []

    def describe_topics(self, names: list[str]) -> list[dict[str, object]]:
        return [{"name": name, "error_code": 3} for name in names]  # UNKNOWN_TOPIC_OR_PARTITION: not hidden


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(topics_module, "TOPIC_POLL_S", 0.01)


def test_a_consumer_waits_for_its_input_topic_then_goes_on(quick_polls: None) -> None:
    settings = settings_from({"KAFKA_TOPIC_RAW": "raw"})
    admin = TopicsAppearing("raw", appears_at=4)
    assert wait_for_topics(admin, settings, ["raw"], wait_s=5.0, stop=StopFlag()) is True
    assert admin.looks == 5  # 3 misses, the 4th finds it, require_topics' own look


def test_a_topic_that_never_comes_is_exit_7_after_the_bound_and_a_signal_ends_the_wait(quick_polls: None) -> None:
    settings = settings_from({"KAFKA_TOPIC_RAW": "raw"})
    started = time.monotonic()
    with pytest.raises(TopicMissing, match="raw"):
        wait_for_topics(TopicsAppearing("raw", None), settings, ["raw"], wait_s=0.2, stop=StopFlag())
    assert 0.2 <= time.monotonic() - started < 2.0
    stop = StopFlag()
    stop.set("SIGTERM")
    assert wait_for_topics(TopicsAppearing("raw", None), settings, ["raw"], wait_s=60.0, stop=stop) is False
    admin = TopicsAppearing("raw", None)
    with pytest.raises(TopicMissing):
        wait_for_topics(admin, settings, ["raw"], wait_s=0.0, stop=StopFlag())
    assert admin.looks == 2  # 0: no wait at all, as before


def test_readiness_says_the_consumer_waits_for_its_topic() -> None:
    health = Health(liveness_s=60.0)
    health.model_loaded = True
    health.waiting_for = "telco-raw-customers"
    assert health.ready() == (False, "waiting for topic telco-raw-customers to be created")
    assert health.live() == (True, "starting")

"""The producer without Kafka: rows made ready, the schedule, event ids, checkpoints, the CLI.

The run loops are driven with a fake sender and a fake clock, so the rate and the
checkpointing are checked exactly and in milliseconds, not by timing real runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.errors import KafkaTimeoutError, NotLeaderForPartitionError
from kafka.future import Future

import producer
from churnstream.cli.formatting import format_producer_summary
from churnstream.contract.events import parse_object
from churnstream.errors import EXIT_USAGE, CheckpointConflict, DataError
from churnstream.files import remove_stale_temp_files
from churnstream.kafka.clients import FLUSH_TIMEOUT_S
from churnstream.lifecycle import StopFlag
from churnstream.producer import checkpoint as cp
from churnstream.producer.delivery import DeliveryTracker
from churnstream.producer.loops import MAX_BURST, run_batch, run_streaming
from churnstream.producer.pacing import PaceMonitor, RateSchedule
from churnstream.producer.rows import (
    EventClock,
    PreparedData,
    batch_event_id,
    build_value,
    new_run_id,
    prepare_rows,
    streaming_event_id,
)
from churnstream.producer.summary import RunSummary
from tests.helpers import ROOT, SAMPLE_ROW, make_rows, telco_contract, write_csv

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


# --- fakes ------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


@dataclass
class Sent:
    topic: str
    key: bytes
    value: dict[str, Any]
    at: float


@dataclass
class FakeSender:
    """KafkaProducer's send/flush: futures resolve at once (or at flush), some keys fail."""

    clock: FakeClock | None = None
    cost_s: float = 0.0  # each send takes this long on the fake clock
    fail_keys: set[bytes] = field(default_factory=set)
    refuse_after: int | None = None  # send() raises KafkaTimeoutError after this many
    resolve_on_flush: bool = False
    flush_times_out: bool = False  # as kafka-python's flush(timeout) does when events never finish
    flush_timeouts: list[float | None] = field(default_factory=list)
    on_send: Callable[[int], None] | None = None
    records: list[Sent] = field(default_factory=list)
    flushes: int = 0
    _pending: list[tuple[Future, bytes]] = field(default_factory=list)

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future:
        assert value is not None and key is not None
        if self.refuse_after is not None and len(self.records) >= self.refuse_after:
            raise KafkaTimeoutError("Failed to allocate memory within the configured max blocking time")
        if self.clock is not None:
            self.clock.advance(self.cost_s)
        self.records.append(Sent(topic, key, orjson.loads(value), self.clock() if self.clock else 0.0))
        future = Future()
        if self.resolve_on_flush:
            self._pending.append((future, key))
        else:
            self._resolve(future, key)
        if self.on_send is not None:
            self.on_send(len(self.records))
        return future

    def _resolve(self, future: Future, key: bytes) -> None:
        if key in self.fail_keys:
            future.failure(NotLeaderForPartitionError("gave up after retries"))
        else:
            future.success(object())

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
        self.flush_timeouts.append(timeout)
        if self.flush_times_out:
            raise KafkaTimeoutError(f"Timeout after waiting for {timeout} secs.")
        pending, self._pending = self._pending, []
        for future, key in pending:
            self._resolve(future, key)


def fake_wait(clock: FakeClock, stop: StopFlag) -> Callable[[float], bool]:
    def wait(seconds: float) -> bool:
        clock.advance(seconds)
        return stop.is_set()

    return wait


@pytest.fixture
def csv_path(tmp_path: Path) -> Path:
    return write_csv(tmp_path / "rows.csv", make_rows(10))


@pytest.fixture
def data(csv_path: Path) -> PreparedData:
    return prepare_rows(csv_path, telco_contract())


def stream(
    data: PreparedData,
    events_per_sec: float,
    duration_s: float | None,
    sender: FakeSender | None = None,
    *,
    stop: StopFlag | None = None,
    seed: int = 1,
) -> tuple[RunSummary, FakeSender, FakeClock]:
    clock = sender.clock if sender is not None and sender.clock is not None else FakeClock()
    sender = sender or FakeSender(clock=clock)
    sender.clock = clock
    stop = stop or StopFlag()
    summary = run_streaming(
        sender,
        "raw",
        data.valid_rows,
        RateSchedule(events_per_sec, duration_s),
        seed=seed,
        run_id="run1",
        stop=stop,
        clock=clock,
        wait=fake_wait(clock, stop),
        event_clock=lambda: "2026-01-01T00:00:00.000Z",
    )
    return summary, sender, clock


# --- rows made ready once ---------------------------------------------------------------------


def test_rows_are_prepared_once_with_types_keys_and_line_numbers(data: PreparedData) -> None:
    assert data.rows_per_pass == 10 and len(data.valid_rows) == 10 and data.skipped == ()
    first = data.rows[0]
    assert first is not None
    assert (first.row_index, first.line_number, first.key) == (0, 2, b"0000-TEST")
    assert first.template["SeniorCitizen"] == 0 and isinstance(first.template["tenure"], int)
    assert first.template["TotalCharges"] is None  # the CSV's blank
    assert "Churn" not in first.template


def test_a_bad_row_stops_the_run_naming_file_and_line(tmp_path: Path) -> None:
    rows = make_rows(5)
    rows[2]["tenure"] = "many"
    path = write_csv(tmp_path / "bad.csv", rows)
    with pytest.raises(DataError) as caught:
        prepare_rows(path, telco_contract())
    assert str(caught.value) == (
        f"data file {path} line 4: tenure='many' is not a plain whole number; fix the row, "
        "or pass --skip-bad-rows to leave bad rows out"
    )


def test_skip_bad_rows_reports_each_and_keeps_positions(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rows = make_rows(6)
    rows[1]["Contract"] = "Forever"
    rows[4]["customerID"] = ""
    path = write_csv(tmp_path / "bad.csv", rows)
    with caplog.at_level(logging.WARNING):
        data = prepare_rows(path, telco_contract(), skip_bad_rows=True)
    assert [(s.row_index, s.line_number) for s in data.skipped] == [(1, 3), (4, 6)]
    assert data.rows_per_pass == 6 and data.rows[1] is None and data.rows[4] is None
    assert [r.row_index for r in data.valid_rows] == [0, 2, 3, 5]
    assert "line 3: Contract='Forever' is not a known category" in caplog.text
    assert "line 6: customerID is an empty string; a non-empty string is required" in caplog.text


def test_limit_reads_only_the_first_rows(csv_path: Path) -> None:
    assert prepare_rows(csv_path, telco_contract(), limit=3).rows_per_pass == 3


def test_missing_file_wrong_header_and_no_rows_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is missing; check --data \(or DATA_PATH\)"):
        prepare_rows(tmp_path / "nope.csv", telco_contract())
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("id,gender\n1,Male\n")
    with pytest.raises(DataError, match=r"wrong\.csv lacks the column\(s\) customerID, SeniorCitizen"):
        prepare_rows(wrong, telco_contract())
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(DataError, match="has no data rows"):
        prepare_rows(empty, telco_contract())
    all_bad = make_rows(2)
    for row in all_bad:
        row["gender"] = "?"
    with pytest.raises(DataError, match="has no valid rows"):
        prepare_rows(write_csv(tmp_path / "allbad.csv", all_bad), telco_contract(), skip_bad_rows=True)


def test_a_file_that_is_not_utf8_is_a_data_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.csv"
    path.write_bytes(",".join(SAMPLE_ROW).encode() + b"\n\xff\xfe,broken\n")
    with pytest.raises(DataError, match="is not UTF-8 text"):
        prepare_rows(path, telco_contract())


def test_built_values_follow_the_event_contract(data: PreparedData) -> None:
    row = data.valid_rows[3]
    value = build_value(row, "load-0-3", "2026-11-27T08:15:45.123Z")
    event = parse_object(value)
    assert list(event) == ["customerID", *telco_contract().feature_names, "event_ts", "event_id"]
    valid = telco_contract().decode(value)
    assert (valid.key, valid.event_id, valid.event_ts) == ("0003-TEST", "load-0-3", "2026-11-27T08:15:45.123Z")
    assert isinstance(event["MonthlyCharges"], float) and isinstance(event["TotalCharges"], float)
    assert row.template["event_id"] == "placeholder"  # the template is never changed by a send


# --- event ids and timestamps -----------------------------------------------------------------


def test_event_ids() -> None:
    assert streaming_event_id("abc", 41) == "abc-41"
    assert batch_event_id("L1", 2, 7042) == "L1-2-7042"
    ids = {new_run_id() for _ in range(100)}
    assert len(ids) == 100 and all(re.fullmatch(r"[0-9a-f]{12}", i) for i in ids)
    assert re.fullmatch(r"[0-9a-f]{12}", cp.new_load_id())


def test_event_clock_formats_utc_milliseconds_and_caches_per_millisecond() -> None:
    calls = []

    def now() -> float:
        calls.append(1)
        return 1_700_000_000.1239 if len(calls) < 3 else 1_700_000_000.125

    clock = EventClock(now)
    first, second, third = clock(), clock(), clock()
    assert first == second == "2023-11-14T22:13:20.123Z"
    assert third == "2023-11-14T22:13:20.125Z"
    assert TS_RE.match(EventClock()())


# --- the rate schedule ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "duration", "total"),
    [(1, 20, 20), (5000, 20, 100_000), (3, 0.5, 2), (0.5, 3, 2), (2.5, 4, 10), (1000, 0.0001, 1)],
)
def test_a_run_of_s_seconds_sends_the_events_due_before_its_end(rate: float, duration: float, total: int) -> None:
    assert RateSchedule(rate, duration).total_events == total


def test_due_times_are_absolute() -> None:
    schedule = RateSchedule(4)
    assert [schedule.due_time(i) for i in range(3)] == [0.0, 0.25, 0.5]
    assert schedule.due_count(-0.1) == 0
    assert schedule.due_count(0) == 1
    assert schedule.due_count(0.2499) == 1
    assert schedule.due_count(0.25) == 2
    assert schedule.due_count(1000) == 4001  # no duration: no cap
    assert RateSchedule(4, 1).due_count(1000) == 4
    with pytest.raises(ValueError):
        RateSchedule(0)
    with pytest.raises(ValueError):
        RateSchedule(1, 0)


def test_one_event_per_second_for_20_s_is_20_events_at_exactly_1_00(data: PreparedData) -> None:
    summary, sender, _ = stream(data, 1, 20)
    assert summary.sent == summary.acknowledged == 20
    assert summary.elapsed_s == pytest.approx(20.0)
    assert summary.achieved_rate == pytest.approx(1.0)
    assert [r.at - 1000.0 for r in sender.records] == pytest.approx(list(range(20)))  # on the absolute schedule
    assert [r.value["event_id"] for r in sender.records] == [f"run1-{i}" for i in range(20)]
    assert summary.ok and summary.max_sustainable_rate is None
    assert sender.flushes == 1  # one flush at the end, never per message


def test_fast_rates_send_small_bursts_and_stay_on_schedule(data: PreparedData) -> None:
    summary, sender, _ = stream(data, 5000, 2)
    assert summary.sent == 10_000
    assert summary.achieved_rate == pytest.approx(5000)
    times = [r.at for r in sender.records]
    bursts = len(set(times))
    assert 1500 <= bursts <= 2001  # a burst every ~1 ms (MIN_WAIT_S), not a sleep per event
    lateness = [t - 1000.0 - i / 5000 for i, t in enumerate(times)]
    assert max(lateness) <= 0.0011 and min(lateness) >= -1e-9  # never early, at most ~1 ms late


def test_lateness_is_caught_up_not_accumulated(data: PreparedData) -> None:
    clock = FakeClock()

    def hiccup(count: int) -> None:
        if count == 50:
            clock.advance(0.5)  # a 0.5 s stall (GC, broker) at event 50

    summary, sender, _ = stream(data, 100, 3, FakeSender(clock=clock, on_send=hiccup))
    assert summary.sent == 300 and summary.elapsed_s == pytest.approx(3.0)
    assert summary.max_sustainable_rate is None  # a hiccup is not a ceiling
    assert summary.max_lag_s == pytest.approx(0.5, abs=0.011)
    assert sender.records[-1].at - 1000.0 == pytest.approx(2.99)


def test_a_rate_over_the_ceiling_warns_once_with_the_sustainable_rate(
    data: PreparedData, caplog: pytest.LogCaptureFixture
) -> None:
    sender = FakeSender(clock=FakeClock(), cost_s=0.001)  # this "client" takes at most 1,000 events/s
    with caplog.at_level(logging.WARNING, logger="churnstream.producing"):
        summary, _, _ = stream(data, 5000, 3, sender)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert warnings[0].startswith("cannot keep up with 5000 events/s")
    assert "about 1000 events/s" in warnings[0]
    assert summary.max_sustainable_rate == pytest.approx(1000, rel=0.02)
    assert summary.elapsed_s == pytest.approx(3.0, abs=MAX_BURST * 0.001)  # stops at its duration (+ a burst)
    assert summary.sent == pytest.approx(3000, abs=MAX_BURST)
    assert summary.ok  # what was sent was acknowledged: a warning, not a failure


def test_stop_flag_ends_a_run_without_duration_cleanly(data: PreparedData) -> None:
    stop = StopFlag()
    clock = FakeClock()

    def stop_at(count: int) -> None:
        if count == 30:
            stop.set("SIGTERM")

    sender = FakeSender(clock=clock, on_send=stop_at, resolve_on_flush=True)
    summary, sender, _ = stream(data, 10, None, sender, stop=stop)
    assert summary.sent == summary.acknowledged == 30  # flushed before the summary
    assert summary.stopped_by == "SIGTERM" and summary.ok
    assert summary.duration_s is None


def test_seed_makes_the_choice_of_rows_reproducible(data: PreparedData) -> None:
    def keys(seed: int) -> list[bytes]:
        return [r.key for r in stream(data, 100, 1, seed=seed)[1].records]

    assert keys(7) == keys(7)
    assert keys(7) != keys(8)


def test_failed_deliveries_are_counted_and_fail_the_run(data: PreparedData) -> None:
    sender = FakeSender(clock=FakeClock(), fail_keys={b"0003-TEST"})
    summary, sender, _ = stream(data, 100, 1, sender, seed=3)
    failed = sum(r.key == b"0003-TEST" for r in sender.records)
    assert failed > 0
    assert summary.failed == failed and summary.acknowledged == summary.sent - failed
    assert not summary.ok
    assert summary.errors[0].startswith("event run1-") and "NotLeaderForPartitionError" in summary.errors[0]


def test_a_send_the_client_refuses_stops_the_run_and_counts(data: PreparedData) -> None:
    summary, _, _ = stream(data, 100, None, FakeSender(clock=FakeClock(), refuse_after=5))
    assert (summary.sent, summary.acknowledged, summary.failed) == (5, 5, 1)
    assert not summary.ok


def test_pace_monitor_tells_a_ceiling_from_a_hiccup() -> None:
    monitor = PaceMonitor(tolerance_s=0.1, sustained_s=1.0)
    assert not monitor.observe(0.0, 0, 0, 0.5)
    assert not monitor.observe(0.9, 900, 800, 0.5)
    assert not monitor.observe(1.0, 1000, 900, 0.05)  # caught up: that stretch was a hiccup
    assert not monitor.observe(1.5, 1000, 1000, 0.5)
    assert monitor.observe(2.5, 1600, 1300, 0.5)  # behind for 1 s on end: 600 taken by the client in it
    assert monitor.max_sustainable_rate == pytest.approx(600)
    assert not monitor.observe(3.5, 2200, 1900, 0.9)  # warns once
    monitor.finish(4.5, 2800)  # the summary's figure: 1,800 acknowledged over the 3 s stretch
    assert monitor.max_sustainable_rate == pytest.approx(600)
    assert monitor.overloaded and monitor.max_lag_s == 0.9


def test_delivery_tracker_counts_from_callbacks() -> None:
    tracker = DeliveryTracker()
    ok, bad = Future(), Future()
    tracker.track(ok, "e1")
    tracker.track(bad, "e2")
    assert tracker.pending == 2
    ok.success(object())
    bad.failure(KafkaTimeoutError("expired"))
    assert (tracker.sent, tracker.acknowledged, tracker.failed, tracker.pending) == (2, 1, 1, 0)


# --- the summary ------------------------------------------------------------------------------


def test_summary_json_has_every_field_the_harness_reads() -> None:
    summary = RunSummary(mode="batch", topic="t", sent=10, acknowledged=10, failed=0, elapsed_s=2.0, load_id="L")
    data = summary.to_json()
    for name in (
        "mode",
        "topic",
        "run_id",
        "load_id",
        "sent",
        "acknowledged",
        "failed",
        "skipped_rows",
        "elapsed_s",
        "requested_rate",
        "achieved_rate",
        "max_sustainable_rate",
        "resumed_from_row",
    ):
        assert name in data
    assert data["achieved_rate"] == 5.0 and data["requested_rate"] is None
    json.dumps(data)
    assert RunSummary.from_json(data) == summary
    text = format_producer_summary(summary)
    assert text.splitlines()[0] == "producer batch to t (load L)"
    assert "  achieved rate    5.00 events/s" in text


# --- checkpoints ------------------------------------------------------------------------------


def make_checkpoint(**changes: Any) -> cp.Checkpoint:
    values: dict[str, Any] = {
        "topic": "raw",
        "data_path": "/data/x.csv",
        "data_sha256": "a" * 64,
        "load_id": "L1",
        "repeat": 2,
        "rows_per_pass": 10,
        "total_rows": 20,
        "next_row": 5,
        "completed": False,
        "updated_ts": "2026-01-01T00:00:00.000Z",
    }
    values.update(changes)
    return cp.Checkpoint(**values)


def request(**changes: Any) -> cp.LoadRequest:
    values: dict[str, Any] = {
        "topic": "raw",
        "data_path": "/data/x.csv",
        "data_sha256": "a" * 64,
        "repeat": None,
        "limit": None,
        "rows_per_pass": 10,
    }
    values.update(changes)
    return cp.LoadRequest(**values)


def plan(existing: cp.Checkpoint | None, req: cp.LoadRequest | None = None, **flags: bool) -> cp.Checkpoint:
    return cp.plan_load(
        existing,
        req or request(),
        resume=flags.get("resume", False),
        restart=flags.get("restart", False),
        checkpoint_path=Path("/ck/raw.json"),
        load_id="NEW",
        now_ts="2026-01-02T00:00:00.000Z",
    )


def test_checkpoint_round_trips_with_the_documented_fields(tmp_path: Path) -> None:
    path = tmp_path / "ck" / "raw.json"
    checkpoint = make_checkpoint()
    cp.write_checkpoint(path, checkpoint)
    on_disk = json.loads(path.read_text())
    assert list(on_disk)[:11] == [
        "version",
        "topic",
        "data_path",
        "data_sha256",
        "load_id",
        "repeat",
        "rows_per_pass",
        "total_rows",
        "next_row",
        "completed",
        "updated_ts",
    ]
    assert on_disk["version"] == 1
    assert cp.read_checkpoint(path) == checkpoint
    assert cp.read_checkpoint(tmp_path / "none.json") is None
    assert cp.default_checkpoint_path(tmp_path, "telco-raw") == tmp_path / "telco-raw.json"


def test_checkpoint_write_is_fsynced_then_renamed_then_dir_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "raw.json"
    events: list[str] = []
    real_fsync, real_replace = os.fsync, Path.replace

    def fsync(fd: int) -> None:
        events.append("fsync-dir" if Path(f"/proc/self/fd/{fd}").is_dir() else "fsync-file")
        real_fsync(fd)

    def replace(self: Path, target: Path) -> Path:
        events.append("rename")
        return real_replace(self, target)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(Path, "replace", replace)
    cp.write_checkpoint(path, make_checkpoint())
    assert events == ["fsync-file", "rename", "fsync-dir"]


def test_a_write_that_dies_leaves_the_old_checkpoint_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "raw.json"
    old = make_checkpoint(next_row=5)
    cp.write_checkpoint(path, old)

    def crash(self: Path, target: Path) -> Path:
        raise OSError("disk gone")

    monkeypatch.setattr(Path, "replace", crash)
    with pytest.raises(OSError, match="disk gone"):
        cp.write_checkpoint(path, make_checkpoint(next_row=10))
    assert cp.read_checkpoint(path) == old
    assert [p.name for p in tmp_path.iterdir()] == ["raw.json"]  # no temp file left behind


def test_temp_files_of_a_killed_writer_are_cleaned_up(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    cp.write_checkpoint(path, make_checkpoint())
    (tmp_path / ".raw.json.abc123.tmp").write_text("{half")
    (tmp_path / ".other.json.abc123.tmp").write_text("{")  # another topic's: not ours to touch
    assert remove_stale_temp_files(path) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.json.abc123.tmp", "raw.json"]


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ("{not json", "it is not valid JSON"),
        ("[]", "it is not a JSON object"),
        ('{"version": 2}', "its version is 2, this producer reads 1"),
        ('{"version": 1, "topic": "raw"}', "the field 'data_path' is missing"),
    ],
)
def test_an_unreadable_checkpoint_says_how_to_start_over(tmp_path: Path, content: str, what: str) -> None:
    path = tmp_path / "raw.json"
    path.write_text(content)
    with pytest.raises(cp.CheckpointCorrupt) as caught:
        cp.read_checkpoint(path)
    assert str(caught.value).startswith(f"checkpoint {path} is unreadable: {what}")
    assert str(caught.value).endswith("delete it, or pass --restart to start the load over")


def test_checkpoint_fields_are_type_checked(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    data = make_checkpoint().to_json()
    data["next_row"] = True
    path.write_text(json.dumps(data))
    with pytest.raises(cp.CheckpointCorrupt, match="the field 'next_row' is True"):
        cp.read_checkpoint(path)
    data["next_row"] = 99
    path.write_text(json.dumps(data))
    with pytest.raises(cp.CheckpointCorrupt, match=r"outside 0\.\.20"):
        cp.read_checkpoint(path)


def test_no_checkpoint_or_a_completed_one_starts_a_new_load() -> None:
    fresh = plan(None, request(repeat=3))
    assert (fresh.load_id, fresh.next_row, fresh.total_rows, fresh.repeat, fresh.completed) == ("NEW", 0, 30, 3, False)
    after_done = plan(make_checkpoint(next_row=20, completed=True))
    assert (after_done.load_id, after_done.next_row, after_done.total_rows) == ("NEW", 0, 10)


def test_an_unfinished_load_without_resume_or_restart_is_refused() -> None:
    with pytest.raises(CheckpointConflict) as caught:
        plan(make_checkpoint())
    assert str(caught.value) == (
        "an unfinished batch load to topic raw exists (load L1: 5 of 20 rows acknowledged, checkpoint "
        "/ck/raw.json); pass --resume to continue it, or --restart to start over (rows already sent will "
        "then be sent again)"
    )
    assert caught.value.exit_code == 10


def test_resume_continues_the_same_load_and_restart_starts_a_new_one() -> None:
    existing = make_checkpoint()
    assert plan(existing, resume=True) == existing
    assert plan(existing, request(repeat=2), resume=True) == existing
    restarted = plan(existing, restart=True)
    assert (restarted.load_id, restarted.next_row) == ("NEW", 0)


@pytest.mark.parametrize(
    ("existing", "req", "message"),
    [
        (None, request(), "nothing to resume: there is no checkpoint /ck/raw.json for topic raw"),
        (make_checkpoint(next_row=20, completed=True), request(), "nothing to resume: the checkpoint"),
        (make_checkpoint(), request(data_sha256="b" * 64), "was written for data file /data/x.csv (sha256 aaaa"),
        (make_checkpoint(), request(repeat=3), "is a load with --repeat 2, not 3"),
        (make_checkpoint(), request(limit=4), "is a load with --limit None, not 4"),
        (make_checkpoint(), request(topic="other"), "belongs to topic raw, not other"),
        (make_checkpoint(), request(rows_per_pass=9), "counts 10 rows per pass, this run 9"),
    ],
)
def test_resume_refuses_what_it_cannot_continue(
    existing: cp.Checkpoint | None, req: cp.LoadRequest, message: str
) -> None:
    with pytest.raises(CheckpointConflict, match=re.escape(message)):
        plan(existing, req, resume=True)


def test_one_checkpoint_is_used_by_one_load_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "raw.json"
    with (
        cp.exclusive_lock(path),
        pytest.raises(CheckpointConflict, match="another batch producer"),
        cp.exclusive_lock(path),
    ):
        pass
    with cp.exclusive_lock(path):  # released: free again
        pass


# --- the batch loop ---------------------------------------------------------------------------


def new_load(data: PreparedData, repeat: int = 1) -> cp.Checkpoint:
    return cp.plan_load(
        None,
        request(rows_per_pass=data.rows_per_pass, repeat=repeat),
        resume=False,
        restart=False,
        checkpoint_path=Path("/ck/raw.json"),
        load_id="L",
        now_ts="t",
    )


def batch(
    data: PreparedData,
    checkpoint: cp.Checkpoint,
    sender: FakeSender | None = None,
    *,
    batch_size: int = 3,
    stop: StopFlag | None = None,
    resumed: bool = False,
) -> tuple[RunSummary, FakeSender, list[cp.Checkpoint]]:
    sender = sender or FakeSender(resolve_on_flush=True)
    saved: list[cp.Checkpoint] = []
    summary = run_batch(
        sender,
        data,
        checkpoint,
        batch_size=batch_size,
        save=saved.append,
        stop=stop or StopFlag(),
        resumed=resumed,
        event_clock=lambda: "2026-01-01T00:00:00.000Z",
    )
    return summary, sender, saved


def test_batch_sends_every_pass_in_order_and_checkpoints_after_each_chunk(data: PreparedData) -> None:
    summary, sender, saved = batch(data, new_load(data, repeat=2))
    assert [r.value["event_id"] for r in sender.records] == [f"L-{p}-{i}" for p in (0, 1) for i in range(10)]
    assert [r.key for r in sender.records[:2]] == [b"0000-TEST", b"0001-TEST"]
    assert [c.next_row for c in saved] == [3, 6, 9, 12, 15, 18, 20]
    assert [c.completed for c in saved] == [False] * 6 + [True]
    assert sender.flushes == 7  # once per chunk
    assert (summary.sent, summary.acknowledged, summary.failed, summary.completed) == (20, 20, 0, True)
    assert summary.resumed_from_row is None and summary.ok


def test_a_flush_that_never_finishes_is_bounded_and_its_events_count_as_failed(data: PreparedData) -> None:
    sender = FakeSender(resolve_on_flush=True, flush_times_out=True)
    summary, sender, saved = batch(data, new_load(data), sender)
    assert sender.flush_timeouts == [FLUSH_TIMEOUT_S]  # never an unbounded wait
    assert saved == []  # the checkpoint stays before the unconfirmed chunk
    assert (summary.sent, summary.acknowledged, summary.failed) == (3, 0, 3) and not summary.ok

    summary, sender, _ = stream(data, 10, 1, FakeSender(clock=FakeClock(), resolve_on_flush=True, flush_times_out=True))
    assert summary.sent == 10 and summary.acknowledged == 0 and summary.failed == 10 and not summary.ok


def test_resume_sends_only_the_rest_with_the_same_event_ids(data: PreparedData) -> None:
    checkpoint = new_load(data, repeat=2).advanced(13, "t")
    summary, sender, saved = batch(data, checkpoint, resumed=True)
    assert [r.value["event_id"] for r in sender.records] == [f"L-1-{i}" for i in range(3, 10)]
    assert summary.resumed_from_row == 13 and saved[-1].completed


def test_a_chunk_with_a_failed_event_does_not_advance_the_checkpoint(data: PreparedData) -> None:
    sender = FakeSender(fail_keys={b"0004-TEST"}, resolve_on_flush=True)
    summary, sender, saved = batch(data, new_load(data), sender)
    assert [c.next_row for c in saved] == [3]  # chunk 3..5 holds the failure: stop there
    assert len(sender.records) == 6
    assert (summary.sent, summary.acknowledged, summary.failed) == (6, 5, 1)
    assert summary.next_row == 3 and not summary.completed and not summary.ok


def test_skipped_rows_send_nothing_but_keep_their_positions(tmp_path: Path) -> None:
    rows = make_rows(5)
    rows[2]["gender"] = "?"
    data = prepare_rows(write_csv(tmp_path / "r.csv", rows), telco_contract(), skip_bad_rows=True)
    summary, sender, saved = batch(data, new_load(data), batch_size=2)
    assert [r.value["event_id"] for r in sender.records] == ["L-0-0", "L-0-1", "L-0-3", "L-0-4"]
    assert [c.next_row for c in saved] == [2, 4, 5]
    assert summary.skipped_rows == 1 and summary.ok


def test_a_stop_mid_chunk_flushes_and_checkpoints_what_was_sent(data: PreparedData) -> None:
    stop = StopFlag()

    def stop_at(count: int) -> None:
        if count == 4:
            stop.set("SIGINT")

    sender = FakeSender(on_send=stop_at, resolve_on_flush=True)
    summary, sender, saved = batch(data, new_load(data), sender, stop=stop)
    assert len(sender.records) == 4
    assert [c.next_row for c in saved] == [3, 4]
    assert summary.stopped_by == "SIGINT" and summary.ok and not summary.completed


# --- the CLI ----------------------------------------------------------------------------------


def test_producer_has_help() -> None:
    result = subprocess.run(
        [sys.executable, "producer.py", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: producer.py")
    for flag in (
        "--mode",
        "--events-per-sec",
        "--duration",
        "--seed",
        "--batch-size",
        "--resume",
        "--restart",
        "--limit",
        "--repeat",
        "--checkpoint-file",
        "--data",
        "--summary-json",
        "--no-progress",
        "--skip-bad-rows",
    ):
        assert flag in result.stdout


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--mode", "streaming"], "--mode streaming needs --events-per-sec R"),
        (["--mode", "streaming", "--events-per-sec", "5", "--resume"], "--resume only apply to --mode batch"),
        (["--mode", "batch", "--events-per-sec", "5", "--seed", "1"], "--events-per-sec, --seed only apply to --mode"),
        (["--mode", "batch", "--resume", "--restart"], "argument --restart: not allowed with argument --resume"),
        (["--mode", "streaming", "--events-per-sec", "0"], "expected a number above 0, got '0'"),
        (["--mode", "batch", "--batch-size", "0"], "expected a whole number of at least 1, got '0'"),
        (["--mode", "sideways"], "invalid choice: 'sideways'"),
    ],
)
def test_usage_errors_exit_64_with_a_message(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        producer.main(argv)
    assert caught.value.code == EXIT_USAGE
    assert message in capsys.readouterr().err


def test_cli_conflict_is_one_error_line_and_exit_10_before_any_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], csv_path: Path
) -> None:
    for name in list(os.environ):
        if name.startswith(("KAFKA_", "DATA_", "CHECKPOINT_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("CHURN_DOTENV", "none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "localhost:1")  # no broker: must not be needed
    monkeypatch.setenv("KAFKA_TOPIC_RAW", "raw")
    monkeypatch.setenv("CHECKPOINT_DIR", str(tmp_path / "ck"))
    cp.write_checkpoint(tmp_path / "ck" / "raw.json", make_checkpoint(data_path=str(csv_path)))
    assert producer.main(["--mode", "batch", "--data", str(csv_path)]) == 10
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("Error: an unfinished batch load to topic raw exists")


def test_the_rows_and_the_checkpoints_hash_come_from_one_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before: prepare_rows read the CSV and the batch load hashed it in a second read, so a file
    changed in between gave a checkpoint whose hash disagreed with the rows sent."""
    path = write_csv(tmp_path / "rows.csv", make_rows(30))
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    opened: list[Path] = []
    real_open = Path.open

    def open_(self: Path, *args: Any, **kwargs: Any) -> Any:  # read_bytes and read_text open through it
        opened.append(self)
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)
    data = prepare_rows(path, telco_contract())
    assert opened == [path]
    assert data.sha256 == expected

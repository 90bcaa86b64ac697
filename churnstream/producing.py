"""The producer's logic: rows made ready once, an absolute rate schedule, and the two run loops.

The pure parts (:func:`prepare_rows`, :class:`RateSchedule`, :class:`PaceMonitor`, the event-id
scheme, :class:`RunSummary`) know nothing about Kafka. The loops (:func:`run_streaming`,
:func:`run_batch`) take anything with KafkaProducer's ``send``/``flush`` and an injectable
clock, so the schedule and the checkpointing are unit-tested with a fake sender and a fake
clock; :func:`produce_streaming` and :func:`produce_batch` wire them to the real broker.
"""

from __future__ import annotations

import csv
import logging
import math
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from kafka import KafkaProducer
from kafka import errors as kafka_errors
from kafka.future import Future
from tqdm import tqdm

from churnstream.checkpoint import (
    Checkpoint,
    CheckpointCorrupt,
    LoadRequest,
    default_checkpoint_path,
    exclusive_lock,
    new_load_id,
    plan_load,
    read_checkpoint,
    remove_stale_temp_files,
    write_checkpoint,
)
from churnstream.cli import StopFlag, tune_garbage_collector
from churnstream.data import read_rows, sha256_file
from churnstream.errors import DataError, InvalidEvent
from churnstream.events import EVENT_ID, EVENT_TS, encode_event, format_ts, row_to_event
from churnstream.kafka_io import FLUSH_TIMEOUT_S, ensure_topics, kafka_errors_translated, make_admin, make_producer
from churnstream.outage import watch_broker
from churnstream.schema import ID_COLUMN
from config import Settings

logger = logging.getLogger(__name__)

MODE_STREAMING = "streaming"
MODE_BATCH = "batch"

# Behind schedule by more than this counts as "behind". Far above timer jitter (about 0.1 ms)
# and a GC pause, far below anything a user would call lag.
LAG_TOLERANCE_S = 0.1
# ... and only this long a stretch of "behind" is a ceiling, not a hiccup worth a warning.
SUSTAINED_LAG_S = 1.0
# A run that is not over its ceiling may finish up to this late (a broker pause near the end)
# before the remaining events are given up; an overloaded run stops at its duration exactly.
END_GRACE_S = 1.0
# Sleeping less than this costs more than it gains (wake-up latency is about 0.1 ms): above
# 1,000 events/s the loop sleeps 1 ms and sends the events that fell due meanwhile in a burst.
MIN_WAIT_S = 0.001
# The most events sent between two looks at the clock and the stop flag while catching up.
MAX_BURST = 100
# How many failed deliveries are logged one by one; the rest are only counted.
LOGGED_FAILURES = 5
# Rows between two progress-bar updates (an update costs far more than a send).
PROGRESS_EVERY = 1000
STREAM_PROGRESS_LOG_S = 10.0

# Producer tuning per mode (on top of make_producer's acks=all, idempotence and lz4).
# Streaming wants latency: a record waits at most 5 ms for companions, nothing next to the
# consumer's micro-batches, while at 5,000 events/s it goes out in batches of about 25, so
# the client's sender thread (which competes with the send loop for the GIL) makes 5x fewer
# requests than with no linger (a quick comparison here gave a few % more headroom than 2 ms).
STREAMING_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 5}
# Batch wants throughput: bigger batches compress better (lz4 works per batch) and cost fewer
# requests; 10 ms of linger is nothing next to a load of seconds.
BATCH_PRODUCER_OPTIONS: dict[str, Any] = {"linger_ms": 10, "batch_size": 128 * 1024}


# --- rows made ready once -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PreparedRow:
    """A CSV row checked and typed once; each send only adds ``event_ts`` and ``event_id``."""

    row_index: int  # 0-based among the file's data rows (bad ones included), stable across runs
    line_number: int
    key: bytes
    template: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SkippedRow:
    row_index: int
    line_number: int
    reason: str


@dataclass(frozen=True)
class PreparedData:
    path: Path
    rows: tuple[PreparedRow | None, ...]  # by row_index; None where a bad row was skipped
    skipped: tuple[SkippedRow, ...]

    @property
    def rows_per_pass(self) -> int:
        return len(self.rows)

    @property
    def valid_rows(self) -> list[PreparedRow]:
        return [row for row in self.rows if row is not None]


def prepare_rows(path: Path, *, skip_bad_rows: bool = False, limit: int | None = None) -> PreparedData:
    """Read and validate the CSV once, before any event is sent.

    A bad row stops the run (DataError naming its line) unless ``skip_bad_rows``: then it is
    logged with its line number and left out, and still counts as a row, so the positions and
    event ids of the rows after it do not depend on the flag.
    """
    rows: list[PreparedRow | None] = []
    skipped: list[SkippedRow] = []
    line_number = 1
    try:
        for line_number, raw in read_rows(path):
            if limit is not None and len(rows) >= limit:
                break
            row_index = len(rows)
            try:
                template = row_to_event(raw, event_id="", event_ts="")
            except InvalidEvent as exc:
                if not skip_bad_rows:
                    raise DataError(
                        f"data file {path} line {line_number}: {exc.reason}; fix the row, "
                        "or pass --skip-bad-rows to leave bad rows out"
                    ) from None
                logger.warning("skipping %s line %d: %s", path, line_number, exc.reason)
                skipped.append(SkippedRow(row_index, line_number, exc.reason))
                rows.append(None)
                continue
            rows.append(PreparedRow(row_index, line_number, template[ID_COLUMN].encode(), template))
    except UnicodeDecodeError as exc:
        raise DataError(f"data file {path} is not UTF-8 text (after line {line_number}): {exc.reason}") from None
    except csv.Error as exc:
        raise DataError(f"data file {path} line {line_number + 1} is not valid CSV: {exc}") from None
    if not any(row is not None for row in rows):
        what = "has no data rows" if not rows else "has no valid rows"
        raise DataError(f"data file {path} {what}; nothing to send")
    return PreparedData(path, tuple(rows), tuple(skipped))


def build_value(row: PreparedRow, event_id: str, event_ts: str) -> bytes:
    """The event's bytes: the prepared template plus this send's timestamp and id."""
    return encode_event({**row.template, EVENT_TS: event_ts, EVENT_ID: event_id})


# --- event ids --------------------------------------------------------------------------------


def new_run_id() -> str:
    """Fresh per streaming run, so ``{run_id}-{seq}`` never repeats across runs."""
    return uuid.uuid4().hex[:12]


def streaming_event_id(run_id: str, seq: int) -> str:
    return f"{run_id}-{seq}"


def batch_event_id(load_id: str, pass_index: int, row_index: int) -> str:
    """Derived from the load and the row, so a row re-sent after ``--resume`` keeps its id."""
    return f"{load_id}-{pass_index}-{row_index}"


class EventClock:
    """``event_ts`` for the event being sent, formatted once per millisecond, not per event."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._ms = -1
        self._text = ""

    def __call__(self) -> str:
        ms = int(self._now() * 1000)
        if ms != self._ms:
            self._ms = ms
            seconds, millis = divmod(ms, 1000)
            self._text = format_ts(datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000))
        return self._text


# --- the rate schedule ------------------------------------------------------------------------


@dataclass(frozen=True)
class RateSchedule:
    """Event ``i`` is due ``i / events_per_sec`` seconds after the start: an absolute schedule.

    Lateness never accumulates (a slow send is caught up by the next burst), unlike
    ``sleep(1/R)``, whose error grows with every event. A run of ``duration_s`` seconds sends
    the events due strictly before its end, ``ceil(R * S)`` of them (R * S when whole), and
    lasts the full ``S`` seconds: the last event's slot ends at ``S``, not when it is sent.
    """

    events_per_sec: float
    duration_s: float | None = None

    def __post_init__(self) -> None:
        if not self.events_per_sec > 0 or not math.isfinite(self.events_per_sec):
            raise ValueError(f"events_per_sec must be a positive number, got {self.events_per_sec!r}")
        if self.duration_s is not None and not self.duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {self.duration_s!r}")

    @property
    def total_events(self) -> int | None:
        if self.duration_s is None:
            return None
        # 1e-9 absorbs float error: 3 events/s for 2 s is 6 events, not 7
        return max(1, math.ceil(self.events_per_sec * self.duration_s - 1e-9))

    def due_time(self, index: int) -> float:
        """Seconds after the start at which event ``index`` (0-based) is due."""
        return index / self.events_per_sec

    def due_count(self, elapsed_s: float) -> int:
        """How many events are due ``elapsed_s`` seconds after the start (event 0 at once)."""
        if elapsed_s < 0:
            return 0
        count = math.floor(elapsed_s * self.events_per_sec + 1e-9) + 1
        total = self.total_events
        return count if total is None else min(count, total)


class PaceMonitor:
    """Notices a run that cannot keep its schedule, and measures the rate it does sustain.

    Behind by more than ``tolerance_s`` for ``sustained_s`` on end is a ceiling, not a hiccup.
    While behind, the loop sends as fast as the client takes events, so the rate over that
    stretch is the most this producer sustains here. The warning, early in the stretch, uses
    the rate the client *took* events at (acknowledgements lag at start-up: the producer id
    and the first batches); :meth:`finish` measures the stretch again by *acknowledged*
    events, to the last acknowledgement, for the summary.
    """

    def __init__(self, tolerance_s: float = LAG_TOLERANCE_S, sustained_s: float = SUSTAINED_LAG_S) -> None:
        self.tolerance_s = tolerance_s
        self.sustained_s = sustained_s
        self.max_lag_s = 0.0
        self.max_sustainable_rate: float | None = None
        self.overloaded = False
        self._behind_since: float | None = None
        self._sent_when_behind = 0
        self._acked_when_behind = 0

    def observe(self, now: float, sent: int, acknowledged: int, lag_s: float) -> bool:
        """Record the lag before a burst. True once: when the run is first found overloaded."""
        self.max_lag_s = max(self.max_lag_s, lag_s)
        if lag_s <= self.tolerance_s:
            self._behind_since = None  # caught up: that stretch was a hiccup, or is over
            return False
        if self._behind_since is None:
            self._behind_since, self._sent_when_behind, self._acked_when_behind = now, sent, acknowledged
            return False
        span = now - self._behind_since
        if span < self.sustained_s:
            return False
        self.max_sustainable_rate = (sent - self._sent_when_behind) / span
        first = not self.overloaded
        self.overloaded = True
        return first

    def finish(self, now: float, acknowledged: int) -> None:
        """At the end of a run still behind: the acknowledged rate over that whole stretch."""
        if self._behind_since is not None and now - self._behind_since >= self.sustained_s:
            self.max_sustainable_rate = (acknowledged - self._acked_when_behind) / (now - self._behind_since)
            self.overloaded = True


# --- delivery accounting ----------------------------------------------------------------------


class Sender(Protocol):
    """What the loops need of KafkaProducer (and what the unit tests fake)."""

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None) -> Future: ...

    def flush(self, timeout: float | None = None) -> None: ...


class DeliveryTracker:
    """Counts acknowledged and failed events from the futures' callbacks, never per-message flush.

    The callbacks usually run on the producer's sender thread, but kafka-python runs a callback at
    once, in the caller's thread, when the future is already done as it is added: so the delivery
    counters can have two writers, and take a lock (uncontended: well under a microsecond).
    """

    def __init__(self, on_ack: Callable[[], None] | None = None) -> None:
        self.sent = 0
        self.acknowledged = 0
        self._on_ack_hook = on_ack  # outage.OutageMonitor.progress: an acknowledgement means the broker is there
        self._failed_deliveries = 0
        self.refused = 0  # send() itself raised: the client could not even buffer the event
        self.first_errors: list[str] = []
        self._lock = threading.Lock()

    @property
    def failed(self) -> int:
        return self._failed_deliveries + self.refused

    @property
    def pending(self) -> int:
        return self.sent - self.acknowledged - self._failed_deliveries

    def track(self, future: Future, event_id: str) -> None:
        self.sent += 1
        future.add_callback(self._on_ack)
        future.add_errback(self._on_error, event_id)

    def refuse(self, event_id: str, exc: Exception) -> None:
        self.refused += 1
        self._note(event_id, exc)

    def _on_ack(self, _metadata: object) -> None:
        with self._lock:
            self.acknowledged += 1
        if self._on_ack_hook is not None:
            self._on_ack_hook()

    def _on_error(self, event_id: str, exc: BaseException) -> None:
        with self._lock:
            self._failed_deliveries += 1
            self._note(event_id, exc)

    def _note(self, event_id: str, exc: BaseException) -> None:
        if len(self.first_errors) < LOGGED_FAILURES:
            text = f"event {event_id}: {type(exc).__name__}: {exc}"
            self.first_errors.append(text)
            logger.error("delivery failed for %s", text)


# --- the summary ------------------------------------------------------------------------------


@dataclass
class RunSummary:
    """What a run did; printed on stdout and, with ``--summary-json``, written as JSON."""

    mode: str
    topic: str
    sent: int
    acknowledged: int
    failed: int
    elapsed_s: float
    skipped_rows: int = 0
    run_id: str | None = None
    load_id: str | None = None
    requested_rate: float | None = None
    duration_s: float | None = None
    seed: int | None = None
    max_sustainable_rate: float | None = None
    max_lag_s: float | None = None
    resumed_from_row: int | None = None
    next_row: int | None = None
    total_rows: int | None = None
    completed: bool | None = None
    stopped_by: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        """Acknowledged events per second of the run (0 when nothing took any time)."""
        return self.acknowledged / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def ok(self) -> bool:
        """Every event sent was acknowledged."""
        return self.failed == 0 and self.acknowledged == self.sent

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["elapsed_s"] = round(self.elapsed_s, 6)
        data["achieved_rate"] = round(self.achieved_rate, 3)
        if self.max_sustainable_rate is not None:
            data["max_sustainable_rate"] = round(self.max_sustainable_rate, 1)
        if self.max_lag_s is not None:
            data["max_lag_s"] = round(self.max_lag_s, 6)
        return data

    def format_text(self) -> str:
        ident = f"run {self.run_id}" if self.run_id else f"load {self.load_id}"
        lines = [f"producer {self.mode} to {self.topic} ({ident})"]
        items: list[tuple[str, str]] = [
            ("sent", f"{self.sent:,}"),
            ("acknowledged", f"{self.acknowledged:,}"),
            ("failed", f"{self.failed:,}"),
            ("skipped rows", f"{self.skipped_rows:,}"),
            ("elapsed", f"{self.elapsed_s:.3f} s"),
        ]
        if self.requested_rate is not None:
            items.append(("requested rate", f"{self.requested_rate:,.2f} events/s"))
        items.append(("achieved rate", f"{self.achieved_rate:,.2f} events/s"))
        if self.max_sustainable_rate is not None:
            items.append(("max sustainable", f"{self.max_sustainable_rate:,.0f} events/s (requested rate not met)"))
        if self.total_rows is not None:
            done = "complete" if self.completed else "incomplete: continue with --resume"
            items.append(("progress", f"{self.next_row:,} of {self.total_rows:,} rows acknowledged ({done})"))
        if self.resumed_from_row is not None:
            items.append(("resumed from row", f"{self.resumed_from_row:,}"))
        if self.stopped_by:
            items.append(("stopped by", self.stopped_by))
        lines.extend(f"  {name:<17}{value}" for name, value in items)
        return "\n".join(lines)


# --- the run loops (any Sender, any clock) ---------------------------------------------------


def _default_wait(stop: StopFlag) -> Callable[[float], bool]:
    return stop.wait


def _send(
    sender: Sender, topic: str, row: PreparedRow, event_id: str, event_ts: str, *, tracker: DeliveryTracker
) -> bool:
    """Hand one event to the client. False when the client refused it (buffer full past
    max_block_ms, no metadata): the broker is gone for longer than the client waits."""
    try:
        future = sender.send(topic, value=build_value(row, event_id, event_ts), key=row.key)
    except kafka_errors.KafkaTimeoutError as exc:
        tracker.refuse(event_id, exc)
        logger.error("the client could not take event %s (%s); stopping the run", event_id, exc)
        return False
    tracker.track(future, event_id)
    return True


def _flush(sender: Sender, tracker: DeliveryTracker) -> None:
    """Wait for every outstanding event, at most FLUSH_TIMEOUT_S. A second Ctrl-C gives up waiting.
    Either way the events still pending are not acknowledged, and the run fails."""
    try:
        sender.flush(timeout=FLUSH_TIMEOUT_S)
    except KeyboardInterrupt:
        logger.error("interrupted again: not waiting for %d unacknowledged event(s)", tracker.pending)
    except kafka_errors.KafkaTimeoutError:
        logger.error("gave up after %d s waiting for %d unacknowledged event(s)", FLUSH_TIMEOUT_S, tracker.pending)


def run_streaming(
    sender: Sender,
    topic: str,
    pool: Sequence[PreparedRow],
    schedule: RateSchedule,
    *,
    seed: int,
    run_id: str,
    stop: StopFlag,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], bool] | None = None,
    event_clock: Callable[[], str] | None = None,
    on_ack: Callable[[], None] | None = None,
) -> RunSummary:
    """Send random rows of ``pool`` on ``schedule`` until its duration ends or ``stop`` is set."""
    if not pool:
        raise DataError("no valid rows to stream")
    wait = wait or _default_wait(stop)
    event_clock = event_clock or EventClock()
    rng = random.Random(seed)
    tracker = DeliveryTracker(on_ack)
    monitor = PaceMonitor()
    total = schedule.total_events
    start = clock()
    deadline = None if schedule.duration_s is None else start + schedule.duration_s
    next_log = start + STREAM_PROGRESS_LOG_S
    seq = 0
    refused = False
    while not stop.is_set() and not refused:
        now = clock()
        due = schedule.due_count(now - start)
        if due > seq:
            lag = now - start - schedule.due_time(seq)
            if monitor.observe(now, seq, tracker.acknowledged, lag):
                logger.warning(
                    "cannot keep up with %s events/s: behind schedule for over %.1f s, the maximum sustainable "
                    "rate here is about %.0f events/s; the summary reports the rate achieved",
                    f"{schedule.events_per_sec:g}",
                    monitor.sustained_s,
                    monitor.max_sustainable_rate,
                )
            if deadline is not None and now > deadline + (0.0 if monitor.overloaded else END_GRACE_S):
                logger.info("duration over: %d event(s) due were never sent (over the ceiling)", due - seq)
                break
            burst_end = min(due, seq + MAX_BURST)
            while seq < burst_end:
                row = pool[rng.randrange(len(pool))]
                if not _send(sender, topic, row, streaming_event_id(run_id, seq), event_clock(), tracker=tracker):
                    refused = True
                    break
                seq += 1
            if now >= next_log:
                next_log = now + STREAM_PROGRESS_LOG_S
                logger.info("sent %d, acknowledged %d, failed %d", tracker.sent, tracker.acknowledged, tracker.failed)
            continue
        if total is not None and seq >= total:
            assert deadline is not None
            if deadline > now:  # hold to the end of the last event's slot: the run lasts S seconds
                wait(deadline - now)
            break
        wait(max(start + schedule.due_time(seq) - now, MIN_WAIT_S))
    _flush(sender, tracker)
    end = clock()
    elapsed = end - start
    monitor.finish(end, tracker.acknowledged)  # the summary carries the final, better measure
    return RunSummary(
        mode=MODE_STREAMING,
        topic=topic,
        run_id=run_id,
        sent=tracker.sent,
        acknowledged=tracker.acknowledged,
        failed=tracker.failed + tracker.pending,  # unconfirmed after the flush: not acknowledged
        elapsed_s=elapsed,
        requested_rate=schedule.events_per_sec,
        duration_s=schedule.duration_s,
        seed=seed,
        max_sustainable_rate=monitor.max_sustainable_rate,
        max_lag_s=monitor.max_lag_s,
        stopped_by=stop.signal_name,
        errors=list(tracker.first_errors),
    )


class _Progress:
    """tqdm on stderr (rows, rows/s, ETA), or nothing."""

    def __init__(self, enabled: bool, total: int, initial: int) -> None:
        self._bar = (
            tqdm(total=total, initial=initial, unit="rows", unit_scale=True, file=sys.stderr, dynamic_ncols=True)
            if enabled
            else None
        )

    def update(self, count: int) -> None:
        if self._bar is not None and count:
            self._bar.update(count)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def run_batch(
    sender: Sender,
    data: PreparedData,
    checkpoint: Checkpoint,
    *,
    batch_size: int,
    save: Callable[[Checkpoint], None],
    stop: StopFlag,
    resumed: bool,
    show_progress: bool = False,
    clock: Callable[[], float] = time.monotonic,
    event_clock: Callable[[], str] | None = None,
    on_ack: Callable[[], None] | None = None,
) -> RunSummary:
    """Send the load from ``checkpoint.next_row`` on, in chunks of ``batch_size`` rows.

    After each chunk: one flush (per chunk, never per message), then, only if every event
    of it was acknowledged, ``save`` the checkpoint past it. So after ``kill -9`` at any
    moment, everything before the checkpoint is on the topic, and what ``--resume`` sends
    again is at most the one chunk that was in flight.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if data.rows_per_pass != checkpoint.rows_per_pass:
        raise ValueError("the checkpoint was planned for another number of rows per pass")
    event_clock = event_clock or EventClock()
    topic, load_id, total = checkpoint.topic, checkpoint.load_id, checkpoint.total_rows
    rows, rows_per_pass = data.rows, data.rows_per_pass
    tracker = DeliveryTracker(on_ack)
    start_row = position = checkpoint.next_row
    progress = _Progress(show_progress, total, position)
    start = clock()
    refused = False
    try:
        while position < total and not stop.is_set() and not refused:
            chunk_end = min(position + batch_size, total)
            failed_before = tracker.failed
            cursor = position
            unreported = 0
            while cursor < chunk_end:
                if stop.is_set():
                    break
                pass_index, row_index = divmod(cursor, rows_per_pass)
                row = rows[row_index]
                if row is not None:
                    event_id = batch_event_id(load_id, pass_index, row_index)
                    if not _send(sender, topic, row, event_id, event_clock(), tracker=tracker):
                        refused = True
                        break
                cursor += 1
                unreported += 1
                if unreported >= PROGRESS_EVERY:
                    progress.update(unreported)
                    unreported = 0
            progress.update(unreported)
            _flush(sender, tracker)
            if tracker.failed > failed_before or tracker.pending:
                logger.error(
                    "%d event(s) of rows %d..%d were not acknowledged; the checkpoint stays at row %d "
                    "(--resume sends them again)",
                    tracker.failed - failed_before + tracker.pending,
                    position,
                    chunk_end - 1,
                    position,
                )
                break
            position = cursor
            checkpoint = checkpoint.advanced(position, event_clock())
            save(checkpoint)
    finally:
        progress.close()
    elapsed = clock() - start
    return RunSummary(
        mode=MODE_BATCH,
        topic=topic,
        load_id=load_id,
        sent=tracker.sent,
        acknowledged=tracker.acknowledged,
        failed=tracker.failed + tracker.pending,
        elapsed_s=elapsed,
        skipped_rows=len(data.skipped),
        resumed_from_row=start_row if resumed else None,
        next_row=checkpoint.next_row,
        total_rows=total,
        completed=checkpoint.completed,
        stopped_by=stop.signal_name,
        errors=list(tracker.first_errors),
    )


# --- wiring to the real broker ----------------------------------------------------------------


@dataclass(frozen=True)
class StreamingOptions:
    events_per_sec: float
    duration_s: float | None = None
    seed: int | None = None
    data_path: Path | None = None
    skip_bad_rows: bool = False


@dataclass(frozen=True)
class BatchOptions:
    batch_size: int = 5000
    resume: bool = False
    restart: bool = False
    limit: int | None = None
    repeat: int | None = None  # None: 1 for a new load, the checkpoint's on --resume
    checkpoint_file: Path | None = None
    data_path: Path | None = None
    skip_bad_rows: bool = False
    show_progress: bool = False


def connect(settings: Settings, topic: str, client_id: str, **producer_options: Any) -> KafkaProducer:
    """Create the topic when missing (an existing one is left as it is), then the producer.

    Both raise BrokerUnavailable within about 8 s when no broker answers.
    """
    admin = make_admin(settings, client_id=f"{client_id}-admin")
    try:
        ensure_topics(admin, settings, [topic])  # logs the topics it creates
    finally:
        admin.close()
    producer = make_producer(settings, client_id=client_id, **producer_options)
    try:
        with kafka_errors_translated(settings):
            # Fetch the topic's metadata now, so the first send (and the clock) does not wait for it.
            producer.partitions_for(topic)
    except BaseException:
        producer.close(timeout=0)
        raise
    return producer


def _close(producer: KafkaProducer) -> None:
    # After the final flush nothing is pending; the timeout only bounds a close on an error path.
    producer.close(timeout=10)


def produce_streaming(settings: Settings, options: StreamingOptions, stop: StopFlag) -> RunSummary:
    """``--mode streaming``: checks the data, connects, then streams on an absolute schedule."""
    schedule = RateSchedule(options.events_per_sec, options.duration_s)
    data_path = options.data_path or settings.data_path
    data = prepare_rows(data_path, skip_bad_rows=options.skip_bad_rows)
    seed = options.seed if options.seed is not None else random.SystemRandom().randrange(2**32)
    topic = settings.topic_raw
    producer = connect(settings, topic, "churn-producer-streaming", **STREAMING_PRODUCER_OPTIONS)
    tune_garbage_collector()  # the prepared rows and the client live for the whole run
    try:
        run_id = new_run_id()
        logger.info(
            "streaming %s events/s %s to %s from %d rows of %s (run %s, seed %d)",
            f"{schedule.events_per_sec:g}",
            f"for {schedule.duration_s:g} s" if schedule.duration_s else "until Ctrl-C",
            topic,
            len(data.valid_rows),
            data_path,
            run_id,
            seed,
        )
        with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
            summary = run_streaming(
                producer, topic, data.valid_rows, schedule, seed=seed, run_id=run_id, stop=stop, on_ack=outage.progress
            )
    finally:
        _close(producer)
    summary.skipped_rows = len(data.skipped)
    return summary


def produce_batch(settings: Settings, options: BatchOptions, stop: StopFlag) -> RunSummary:
    """``--mode batch``: plan against the checkpoint (refusing conflicts), connect, load."""
    topic = settings.topic_raw
    checkpoint_path = options.checkpoint_file or default_checkpoint_path(settings.checkpoint_dir, topic)
    data_path = options.data_path or settings.data_path
    with exclusive_lock(checkpoint_path):
        remove_stale_temp_files(checkpoint_path)
        try:
            existing = read_checkpoint(checkpoint_path)
        except CheckpointCorrupt:
            if not options.restart:
                raise
            logger.warning("replacing the unreadable checkpoint %s (--restart)", checkpoint_path)
            existing = None
        limit = options.limit
        if options.resume and existing is not None and limit is None:
            limit = existing.limit  # a resume reads the same rows the load started with
        data = prepare_rows(data_path, skip_bad_rows=options.skip_bad_rows, limit=limit)
        request = LoadRequest(
            topic=topic,
            data_path=str(data_path),
            data_sha256=sha256_file(data_path),
            repeat=options.repeat,
            limit=limit,
            rows_per_pass=data.rows_per_pass,
        )
        checkpoint = plan_load(
            existing,
            request,
            resume=options.resume,
            restart=options.restart,
            checkpoint_path=checkpoint_path,
            load_id=new_load_id(),
            now_ts=EventClock()(),
        )
        producer = connect(settings, topic, "churn-producer-batch", **BATCH_PRODUCER_OPTIONS)
        tune_garbage_collector()  # the prepared rows and the client live for the whole run
        try:
            if options.resume:
                logger.info("resuming %s from checkpoint %s", checkpoint.describe(), checkpoint_path)
            else:
                if options.restart and existing is not None and not existing.completed:
                    logger.warning(
                        "starting over: abandoning the unfinished %s; its rows will be on %s twice",
                        existing.describe(),
                        topic,
                    )
                write_checkpoint(checkpoint_path, checkpoint)
                logger.info(
                    "loading %d rows x %d pass(es) of %s to %s (load %s, checkpoint %s)",
                    checkpoint.rows_per_pass,
                    checkpoint.repeat,
                    data_path,
                    topic,
                    checkpoint.load_id,
                    checkpoint_path,
                )
            with kafka_errors_translated(settings), watch_broker(settings.bootstrap_servers) as outage:
                return run_batch(
                    producer,
                    data,
                    checkpoint,
                    batch_size=options.batch_size,
                    save=lambda cp: write_checkpoint(checkpoint_path, cp),
                    stop=stop,
                    resumed=options.resume,
                    show_progress=options.show_progress,
                    on_ack=outage.progress,
                )
        finally:
            _close(producer)

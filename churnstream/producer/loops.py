"""The producer's two run loops, over anything with KafkaProducer's ``send``/``flush`` and any clock.

So the schedule and the checkpointing are unit-tested with a fake sender and a fake clock;
producer.run wires them to the real broker.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from churnstream.contract.outputs import Mode
from churnstream.errors import DataError
from churnstream.lifecycle import StopFlag
from churnstream.producer.checkpoint import Checkpoint
from churnstream.producer.delivery import DeliveryTracker, Sender, flush_bounded, send_event
from churnstream.producer.pacing import PaceMonitor, RateSchedule
from churnstream.producer.rows import EventClock, PreparedData, PreparedRow, batch_event_id, streaming_event_id
from churnstream.producer.summary import RunSummary

logger = logging.getLogger(__name__)

# A run that is not over its ceiling may finish up to this late (a broker pause near the end)
# before the remaining events are given up; an overloaded run stops at its duration exactly.
END_GRACE_S = 1.0
# Sleeping less than this costs more than it gains (wake-up latency is about 0.1 ms): above
# 1,000 events/s the loop sleeps 1 ms and sends the events that fell due meanwhile in a burst.
MIN_WAIT_S = 0.001
# The most events sent between two looks at the clock and the stop flag while catching up.
MAX_BURST = 100
# Rows between two progress reports (a progress-bar update costs far more than a send).
PROGRESS_EVERY = 1000
STREAM_PROGRESS_LOG_S = 10.0


class Progress(Protocol):
    """Told how a batch load advances; the CLI draws a bar with it. The library never prints."""

    def start(self, total: int, done: int) -> None: ...

    def advance(self, rows: int) -> None: ...

    def finish(self) -> None: ...


class _NoProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def advance(self, rows: int) -> None:
        pass

    def finish(self) -> None:
        pass


def _default_wait(stop: StopFlag) -> Callable[[float], bool]:
    return stop.wait


def _log_stop(stop: StopFlag, what: str) -> None:
    if stop.is_set():
        logger.warning("%s received: %s", stop.signal_name, what)


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
    tracker: DeliveryTracker | None = None,
) -> RunSummary:
    """Send random rows of ``pool`` on ``schedule`` until its duration ends or ``stop`` is set.

    ``tracker``: the delivery counters to keep, when someone else reads them too (the metrics).
    """
    if not pool:
        raise DataError("no valid rows to stream")
    wait = wait or _default_wait(stop)
    event_clock = event_clock or EventClock()
    rng = random.Random(seed)
    tracker = tracker or DeliveryTracker(on_ack)
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
                if not send_event(sender, topic, row, streaming_event_id(run_id, seq), event_clock(), tracker=tracker):
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
    _log_stop(stop, "waiting for the events sent so far, then stopping")
    flush_bounded(sender, tracker)
    end = clock()
    elapsed = end - start
    monitor.finish(end, tracker.acknowledged)  # the summary carries the final, better measure
    return RunSummary(
        mode=Mode.STREAMING,
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


def run_batch(
    sender: Sender,
    data: PreparedData,
    checkpoint: Checkpoint,
    *,
    batch_size: int,
    save: Callable[[Checkpoint], None],
    stop: StopFlag,
    resumed: bool,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
    event_clock: Callable[[], str] | None = None,
    on_ack: Callable[[], None] | None = None,
    tracker: DeliveryTracker | None = None,
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
    tracker = tracker or DeliveryTracker(on_ack)
    start_row = position = checkpoint.next_row
    progress = progress or _NoProgress()
    progress.start(total, position)
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
                    if not send_event(sender, topic, row, event_id, event_clock(), tracker=tracker):
                        refused = True
                        break
                cursor += 1
                unreported += 1
                if unreported >= PROGRESS_EVERY:
                    progress.advance(unreported)
                    unreported = 0
            progress.advance(unreported)
            flush_bounded(sender, tracker)
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
        progress.finish()
    _log_stop(stop, f"stopped with the checkpoint at row {checkpoint.next_row:,} (--resume continues there)")
    elapsed = clock() - start
    return RunSummary(
        mode=Mode.BATCH,
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

"""Consumer lag per partition, in records and in seconds.

Records: the partition's end offset minus the offset the group has committed. The loop learns end
offsets with every fetch (``highwater``, no extra request) and its commits as it makes them; but a
loop blocked in one batch (its output refused) fetches nothing, and its lag would freeze at the
moment it is needed most. So when metrics are served, :class:`LagProbe` also asks the broker every
few seconds, from its own thread and client, for the end offsets and the group's committed offsets
(what ``kafka-consumer-groups --describe`` shows), which also covers a partition this run has not
committed yet.

Seconds: the age of the oldest record waiting. Every observation of the end offset (H at time t)
says each record below H existed at t, so the oldest waiting record is at least as old as the
earliest observation beyond the processed offset, the way kafka-lag-exporter estimates it. Those
observations are kept as long as a record they date is waiting (thinned, never dropped, past
:data:`MAX_SAMPLES`), so the age keeps growing while a partition is stuck; it cannot saturate.
What the table cannot know, the age of records that were waiting before this consumer first
looked (a restart, a rebalance), the probe reads off the oldest waiting record itself: its
timestamp, fetched off the loop with a small bounded fetch, once per processed offset, and only
where the table already says a record has waited a probe interval (a consumer keeping up costs
no fetch at all).
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from kafka.structs import TopicPartition

logger = logging.getLogger(__name__)

MAX_SAMPLES = 600  # end-offset observations per partition; past it, every other one is dropped
PROBE_INTERVAL_S = 5.0


def _offset(sample: tuple[int, float]) -> int:
    return sample[0]


@dataclass
class PartitionLag:
    committed: int | None = None  # the next offset to process, as last committed (or first seen)
    idle_position: int | None = None  # where an idle consumer stood: past the transaction markers
    highwater: int | None = None
    last_progress: float = 0.0  # monotonic time the committed offset last moved
    # (end offset, time): the end offset was past every record below it by then. Ordered by offset;
    # only those dating a record still waiting (offset above processed_to) are kept.
    samples: list[tuple[int, float]] = field(default_factory=list)
    dated: int | None = None  # the processed offset whose record the probe dated last

    @property
    def processed_to(self) -> int | None:
        """The committed offset, or further where an idle consumer's position says the rest were
        transaction markers (a replay writes the raw topic in transactions: the end offset counts
        their commit markers, which no one processes or commits past)."""
        if self.idle_position is None:
            return self.committed
        return self.idle_position if self.committed is None else max(self.committed, self.idle_position)

    @property
    def records(self) -> int:
        processed = self.processed_to
        if processed is None or self.highwater is None:
            return 0
        return max(self.highwater - processed, 0)

    def seconds(self, now: float) -> float:
        """Age of the oldest unprocessed record: now minus the earliest observation that dates it."""
        processed = self.processed_to
        if self.records == 0 or processed is None:
            return 0.0
        start = bisect.bisect_right(self.samples, processed, key=_offset)
        if start >= len(self.samples):
            return 0.0
        return max(now - min(at for _, at in self.samples[start:]), 0.0)

    def sample(self, end_offset: int, at: float) -> None:
        """Records below ``end_offset`` existed at ``at``. Kept in offset order; past MAX_SAMPLES,
        every other one goes but the first, which dates the oldest record waiting."""
        processed = self.processed_to
        if processed is not None and end_offset <= processed:
            return  # it dates only records already processed
        bisect.insort(self.samples, (end_offset, at), key=_offset)
        if len(self.samples) > MAX_SAMPLES:
            self.samples[1:] = self.samples[2::2]

    def forget_processed(self) -> None:
        """Drop the observations that date only processed records (the processed offset moved)."""
        processed = self.processed_to
        if processed is not None:
            del self.samples[: bisect.bisect_right(self.samples, processed, key=_offset)]


@dataclass(frozen=True)
class LagReading:
    tp: TopicPartition
    records: int
    seconds: float


class LagTracker:
    """Fed by the consumer's loop and the probe; read by the metrics and health endpoints. One lock
    (uncontended but for a scrape: well under a microsecond) keeps the three threads consistent."""

    def __init__(self) -> None:
        self.partitions: dict[TopicPartition, PartitionLag] = {}
        self._lock = threading.Lock()

    def assigned(self, partitions: list[TopicPartition], now: float) -> None:
        with self._lock:
            for tp in partitions:
                self.partitions.setdefault(tp, PartitionLag(last_progress=now))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        with self._lock:
            for tp in partitions:
                self.partitions.pop(tp, None)

    def assignment(self) -> list[TopicPartition]:
        with self._lock:
            return list(self.partitions)

    def observe(self, tp: TopicPartition, highwater: int | None, position: int | None, now: float) -> None:
        """An end offset (from a fetch, or the probe), and where the consumer stands when known."""
        with self._lock:
            lag = self.partitions.get(tp)
            if lag is None:
                return  # not (or no longer) ours: a probe answer that crossed a revocation
            if lag.committed is None and position is not None:
                lag.committed = position  # nothing committed by us yet: start from where we read
            if highwater is not None and (lag.highwater is None or highwater > lag.highwater):
                lag.highwater = highwater  # forward only: the loop's view may be older than the probe's
                lag.sample(highwater, now)

    def idle(self, tp: TopicPartition, position: int | None) -> None:
        """A poll returned nothing: everything fetched was processed and committed, so the consumer's
        position (past any transaction markers) is where the partition's work ends for now."""
        if position is None:
            return
        with self._lock:
            lag = self.partitions.get(tp)
            if lag is not None and (lag.idle_position is None or position > lag.idle_position):
                lag.idle_position = position
                lag.forget_processed()

    def committed(self, tp: TopicPartition, offset: int, now: float, *, seed: bool = False) -> None:
        """A committed offset: from the loop's own commit, or (``seed``) read back by the probe,
        where the first reading is where the group stood, not progress made."""
        with self._lock:
            lag = self.partitions.get(tp)
            if lag is None:
                return
            if lag.committed is None or offset > lag.committed:  # forward only, as the end offset
                if not (seed and lag.committed is None):
                    lag.last_progress = now
                lag.committed = offset
                lag.forget_processed()

    def undated(self, now: float, older_than_s: float) -> dict[TopicPartition, int]:
        """Partitions whose oldest waiting record the probe has not dated, and that has waited at
        least ``older_than_s`` by the table (a consumer keeping up has none): {partition: its offset}."""
        with self._lock:
            return {
                tp: lag.processed_to
                for tp, lag in self.partitions.items()
                if lag.records > 0
                and lag.processed_to is not None
                and lag.processed_to != lag.dated
                and lag.seconds(now) >= older_than_s
            }

    def dated(self, tp: TopicPartition, offset: int, record_offset: int, appended: float) -> None:
        """The first record at or after ``offset`` (transaction markers and aborted records are
        skipped) is ``record_offset``, appended at ``appended`` (this clock's time)."""
        with self._lock:
            lag = self.partitions.get(tp)
            if lag is not None:
                lag.dated = offset
                lag.sample(record_offset + 1, appended)

    def readings(self, now: float) -> list[LagReading]:
        with self._lock:
            return [LagReading(tp, lag.records, lag.seconds(now)) for tp, lag in sorted(self.partitions.items())]

    def total_records(self) -> int:
        with self._lock:
            return sum(lag.records for lag in self.partitions.values())

    def stalled(self, now: float, after_s: float) -> list[TopicPartition]:
        """Partitions whose oldest waiting record has waited ``after_s`` seconds with no committed
        progress in that time (a burst after a quiet spell is not a stall: its records are new)."""
        with self._lock:
            return [
                tp
                for tp, lag in self.partitions.items()
                if lag.records > 0 and now - lag.last_progress > after_s and lag.seconds(now) > after_s
            ]


# For some partitions: (their end offsets, the group's committed offsets).
OffsetsReader = Callable[[list[TopicPartition]], tuple[dict[TopicPartition, int], dict[TopicPartition, int]]]
# For some partitions and an offset in each: the first record at or after it, as (offset, timestamp ms).
RecordDater = Callable[[Mapping[TopicPartition, int]], dict[TopicPartition, tuple[int, int]]]


class LagProbe:
    """Every ``interval_s``, the end and committed offsets of the assigned partitions into the
    tracker, and the timestamps of the oldest waiting records it has not dated yet, from a thread
    of its own (with clients of its own: kafka-python's are not thread-safe)."""

    def __init__(
        self,
        tracker: LagTracker,
        read_offsets: OffsetsReader,
        date_records: RecordDater | None = None,
        *,
        interval_s: float = PROBE_INTERVAL_S,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.tracker = tracker
        self._read_offsets = read_offsets
        self._date_records = date_records
        self.interval_s = interval_s
        self._clock = clock
        self._wall_clock = wall_clock
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-probe", daemon=True)

    def start(self) -> LagProbe:
        self._thread.start()
        return self

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 15)

    def once(self) -> None:
        partitions = self.tracker.assignment()
        if not partitions:
            return
        try:
            ends, committed = self._read_offsets(partitions)
        except Exception as exc:  # a broker away: the loop says so; the probe tries again later
            logger.debug("lag probe: offsets not read (%s: %s)", type(exc).__name__, exc)
            return
        now = self._clock()
        for tp, offset in committed.items():
            self.tracker.committed(tp, offset, now, seed=True)
        for tp, end in ends.items():
            self.tracker.observe(tp, end, None, now)
        self._date_oldest()

    def _date_oldest(self) -> None:
        undated = self.tracker.undated(self._clock(), older_than_s=self.interval_s)
        if self._date_records is None or not undated:
            return
        try:
            found = self._date_records(undated)
        except Exception as exc:  # as above: next time
            logger.debug("lag probe: records not dated (%s: %s)", type(exc).__name__, exc)
            return
        now, wall = self._clock(), self._wall_clock()
        for tp, (record_offset, timestamp_ms) in found.items():
            age = max(wall - timestamp_ms / 1000, 0.0)  # a producer's clock ahead of ours: just now
            self.tracker.dated(tp, undated[tp], record_offset, now - age)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.once()

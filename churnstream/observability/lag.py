"""Consumer lag per partition, in records and in seconds, from what the client already knows.

Records: the partition's high watermark (learnt with every fetch, no extra request) minus the
offset the group has committed. Seconds: how long ago the high watermark passed the committed
offset, read off a small table of (high watermark, time) observations, the way kafka-lag-exporter
estimates it; the records' own timestamps would lie when a partition was idle before a burst.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass, field

from kafka.structs import TopicPartition

MAX_SAMPLES = 600  # a few minutes of observations at one per loop turn that saw the watermark move


@dataclass
class PartitionLag:
    committed: int | None = None  # the next offset to process, as last committed (or first seen)
    highwater: int | None = None
    last_progress: float = 0.0  # monotonic time the committed offset last moved
    samples: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))

    @property
    def records(self) -> int:
        if self.committed is None or self.highwater is None:
            return 0
        return max(self.highwater - self.committed, 0)

    def seconds(self, now: float) -> float:
        """Age of the oldest unprocessed record: now minus when the watermark first passed ``committed``."""
        if self.records == 0 or self.committed is None:
            return 0.0
        offsets = [offset for offset, _ in self.samples]
        index = bisect.bisect_right(offsets, self.committed)  # the first sample beyond the committed offset
        if index >= len(self.samples):
            return 0.0
        return max(now - self.samples[index][1], 0.0)


class LagTracker:
    """Fed by the consumer's loop (one thread); read by the metrics and health endpoints (another)."""

    def __init__(self) -> None:
        self.partitions: dict[TopicPartition, PartitionLag] = {}

    def assigned(self, partitions: list[TopicPartition], now: float) -> None:
        for tp in partitions:
            self.partitions.setdefault(tp, PartitionLag(last_progress=now))

    def revoked(self, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.partitions.pop(tp, None)

    def observe(self, tp: TopicPartition, highwater: int | None, position: int | None, now: float) -> None:
        """After a poll: the watermark the fetch reported, and where the consumer stands."""
        lag = self.partitions.get(tp)
        if lag is None:
            lag = self.partitions[tp] = PartitionLag(last_progress=now)
        if lag.committed is None and position is not None:
            lag.committed = position  # nothing committed by us yet: start from where we read
        if highwater is not None and highwater != lag.highwater:
            lag.highwater = highwater
            if not lag.samples or highwater > lag.samples[-1][0]:
                lag.samples.append((highwater, now))

    def committed(self, tp: TopicPartition, offset: int, now: float) -> None:
        lag = self.partitions.get(tp)
        if lag is None:
            lag = self.partitions[tp] = PartitionLag()
        if lag.committed is None or offset > lag.committed:
            lag.last_progress = now
        lag.committed = offset

    def total_records(self) -> int:
        return sum(lag.records for lag in list(self.partitions.values()))

    def stalled(self, now: float, after_s: float) -> list[TopicPartition]:
        """Partitions with records waiting and no committed progress for ``after_s`` seconds."""
        return [
            tp for tp, lag in list(self.partitions.items()) if lag.records > 0 and now - lag.last_progress > after_s
        ]

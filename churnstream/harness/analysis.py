"""What the harness concludes from what it read: conservation, latency, criteria. Pure functions.

The unit of accounting is the raw record, named by (partition, offset) on the run's raw topic.
Each must have exactly one outcome: a prediction or a dead letter that names it as its source
(contract.outputs). A dead letter must also carry the raw record's key and value byte for byte.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from churnstream.consumer.scoring import RawRecord
from churnstream.contract.outputs import DeadLetterInfo, Prediction, keeps_original_bytes
from churnstream.contract.wire import UndecodableBatch

Source = tuple[int, int]  # (partition, offset) on the raw topic


@dataclass(frozen=True, slots=True)
class ObservedPrediction:
    """A prediction, and when the harness's read_committed reader received it."""

    prediction: Prediction
    readable_ms: float  # wall-clock time of receipt

    @property
    def source(self) -> Source:
        return self.prediction.source


@dataclass(frozen=True, slots=True)
class ObservedDeadLetter:
    """A dead letter (its headers read, its key and value as they are), and when it was received."""

    info: DeadLetterInfo
    key: bytes | None
    value: bytes | None
    readable_ms: float

    @property
    def source(self) -> Source:
        return self.info.source

    @property
    def sources(self) -> list[Source]:
        """The raw records it accounts for: its source, or every offset of a batch it stands for."""
        return self.info.sources


@dataclass
class Conservation:
    raw_records: int
    scored: int
    dead_lettered: int
    lost: int
    duplicated: int
    unknown_sources: int
    duplicate_event_ids: int
    lost_examples: list[Source] = field(default_factory=list)
    dead_letter_bytes_mismatch: int = 0  # dead letters whose key or value differ from the raw record's

    @property
    def exact(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.unknown_sources == 0


def raw_sources_of(record: RawRecord) -> list[Source]:
    """A raw record's (partition, offset), or each offset of a batch this reader could not decompress either."""
    value = record.value
    if isinstance(value, UndecodableBatch):
        return [(record.partition, offset) for offset in range(value.first_offset, value.last_offset + 1)]
    return [record.source]


def dead_letter_keeps_bytes(raw: RawRecord, dead: ObservedDeadLetter) -> bool:
    """A batch's dead letter carries the batch's compressed records, no one record's bytes: not compared."""
    if dead.info.source_last_offset is not None:
        return True
    return keeps_original_bytes(raw.key, raw.value, dead.info, dead.key, dead.value)


def conservation(
    raw: Iterable[RawRecord], predictions: Sequence[ObservedPrediction], dead_letters: Sequence[ObservedDeadLetter]
) -> Conservation:
    """Match every raw record to its outcomes; count the missing, the extra and the altered."""
    raw_by_source = {source: record for record in raw for source in raw_sources_of(record)}
    raw_sources = raw_by_source.keys()
    outcomes = Counter(p.source for p in predictions) + Counter(s for d in dead_letters for s in d.sources)
    lost = sorted(source for source in raw_sources if outcomes[source] == 0)
    duplicated = sum(count - 1 for source, count in outcomes.items() if count > 1 and source in raw_sources)
    unknown = sum(count for source, count in outcomes.items() if source not in raw_sources)
    per_event = Counter(p.prediction.event_id for p in predictions)
    altered = sum(
        1 for d in dead_letters if d.source in raw_by_source and not dead_letter_keeps_bytes(raw_by_source[d.source], d)
    )
    return Conservation(
        raw_records=len(raw_sources),
        scored=len(predictions),
        dead_lettered=len(dead_letters),
        lost=len(lost),
        duplicated=duplicated,
        unknown_sources=unknown,
        duplicate_event_ids=sum(count - 1 for count in per_event.values() if count > 1),
        lost_examples=lost[:10],
        dead_letter_bytes_mismatch=altered,
    )


def percentiles(values: Sequence[float], ranks: Sequence[float]) -> list[float]:
    """The one definition of a percentile in this project (the harness, the benchmarks, the report):
    numpy's default, linear interpolation between the closest ranks."""
    return [float(v) for v in np.percentile(np.asarray(values, dtype=float), list(ranks))]


def percentile(values: Sequence[float], rank: float) -> float:
    return percentiles(values, [rank])[0]


def latency_summary(values_ms: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in milliseconds (None when there is nothing to measure)."""
    if len(values_ms) == 0:
        return {"p50": None, "p95": None, "p99": None, "max": None, "mean": None, "count": 0}
    array = np.asarray(values_ms, dtype=float)
    p50, p95, p99 = percentiles(array, [50, 95, 99])
    return {
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(array.max()), 2),
        "mean": round(float(array.mean()), 2),
        "count": len(array),
    }


def spread(values: Sequence[float | None]) -> dict[str, float | None]:
    """The median and the range of repeated measurements (None ones left out): how a figure varied."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return {"median": None, "min": None, "max": None, "n": 0}
    return {"median": float(np.median(present)), "min": min(present), "max": max(present), "n": len(present)}


# Exceedance levels for a CCDF: dense in the tail, where the goals are (p99 is 1e-2).
CCDF_LEVELS = (0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.15, 0.1, 0.07, 0.05, 0.03, 0.02, 0.015, 0.01, 0.007,
               0.005, 0.003, 0.002, 0.0015, 0.001, 0.0007, 0.0005, 0.0003, 0.0002, 0.0001)  # fmt: skip


def ccdf_points(values: Sequence[float], levels: Sequence[float] = CCDF_LEVELS) -> list[list[float]]:
    """[latency, fraction of values above it] pairs: the complementary CDF, sampled at ``levels``.

    Each latency is the percentile ``100 * (1 - level)`` (the one percentile definition), so the
    point at 0.01 is the p99. Levels finer than one value in the data are left out (the tail past
    1/n is not measured), and the maximum closes the curve at 1/n.
    """
    count = len(values)
    if count == 0:
        return []
    usable = [level for level in levels if level >= 1.0 / count]
    xs = percentiles(values, [100.0 * (1.0 - level) for level in usable])
    points = [[round(x, 3), level] for x, level in zip(xs, usable, strict=True)]
    points.append([round(float(max(values)), 3), 1.0 / count])
    return points


def latency_over_time(
    times_ms: Sequence[float], latencies_ms: Sequence[float], origin_ms: float, bin_ms: float = 250.0
) -> dict[str, list[float | None]]:
    """Per bin of receipt time: the median and the largest latency, to tell a pause (all late at once)
    from periodic commits (a saw-tooth). Empty bins hold None."""
    if not times_ms:
        return {"bin_s": [], "p50_ms": [], "max_ms": []}
    bins = np.floor((np.asarray(times_ms, dtype=float) - origin_ms) / bin_ms).astype(int)
    values = np.asarray(latencies_ms, dtype=float)
    keep = bins >= 0
    bins, values = bins[keep], values[keep]
    if bins.size == 0:
        return {"bin_s": [], "p50_ms": [], "max_ms": []}
    order = np.argsort(bins, kind="stable")
    bins, values = bins[order], values[order]
    edges = np.flatnonzero(np.diff(bins)) + 1
    medians: list[float | None] = [None] * (int(bins[-1]) + 1)
    maxima: list[float | None] = [None] * (int(bins[-1]) + 1)
    for group_bins, group in zip(np.split(bins, edges), np.split(values, edges), strict=True):
        index = int(group_bins[0])
        medians[index] = round(float(np.median(group)), 2)
        maxima[index] = round(float(group.max()), 2)
    return {"bin_s": [round(i * bin_ms / 1000.0, 3) for i in range(len(medians))], "p50_ms": medians, "max_ms": maxima}


def receipt_accounting(raw_sources: Iterable[Source], received: Iterable[Source]) -> Conservation:
    """The floor run's accounting: every raw record received exactly once by the reader itself."""
    raw_set = set(raw_sources)
    seen = Counter(received)
    lost = sorted(source for source in raw_set if seen[source] == 0)
    return Conservation(
        raw_records=len(raw_set),
        scored=sum(seen.values()),
        dead_lettered=0,
        lost=len(lost),
        duplicated=sum(count - 1 for source, count in seen.items() if count > 1 and source in raw_set),
        unknown_sources=sum(count for source, count in seen.items() if source not in raw_set),
        duplicate_event_ids=0,
        lost_examples=lost[:10],
    )


def timeline_bin_ms(times_ms: Sequence[float], origin_ms: float) -> float:
    """A bin width that shows the shape of a run: 1 s bins, or 100 ms ones for runs under 10 s."""
    span_ms = max(times_ms, default=origin_ms) - origin_ms
    return 100.0 if span_ms < 10_000 else 1000.0


def rate_per_bin(times_ms: Sequence[float], origin_ms: float, bin_ms: float = 1000.0) -> list[float]:
    """Events per second in consecutive bins of ``bin_ms`` after ``origin_ms`` (a throughput timeline)."""
    if not times_ms:
        return []
    bins = np.floor((np.asarray(times_ms, dtype=float) - origin_ms) / bin_ms).astype(int)
    bins = bins[bins >= 0]
    if bins.size == 0:
        return []
    return (np.bincount(bins) * (1000.0 / bin_ms)).tolist()


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "detail": self.detail}


def stage_counts(dead_letters: Iterable[ObservedDeadLetter]) -> dict[str, int]:
    return dict(sorted(Counter(d.info.stage for d in dead_letters).items()))

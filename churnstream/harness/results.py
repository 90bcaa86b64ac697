"""One run's results dict (the JSON the CLI writes) from what the harness read: pure except the sample check.

Latency is computed here, after the run, from the receipts the latency reader stored: for a
prediction (our consumer's or the bare loop's), receipt time minus its ``event_ts``; for the floor
run, where the reader reads the raw topic itself, receipt time minus the raw event's ``event_ts``.
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import orjson

from churnstream.consumer.scoring import RawRecord
from churnstream.consumer.stats import ConsumerSummary
from churnstream.contract.events import EVENT_TS, parse_object, ts_to_epoch_ms
from churnstream.contract.outputs import PREDICTION_NO, PREDICTION_YES, Mode
from churnstream.errors import InvalidEvent
from churnstream.harness.analysis import (
    Conservation,
    ObservedPrediction,
    ccdf_points,
    conservation,
    latency_over_time,
    latency_summary,
    rate_per_bin,
    receipt_accounting,
    stage_counts,
    timeline_bin_ms,
)
from churnstream.harness.plan import RunPlan, Subject
from churnstream.harness.processes import ManagedProcess
from churnstream.harness.readers import Outcomes
from churnstream.harness.receipts import Receipt
from churnstream.harness.verify import load_model_deferred
from churnstream.producer.summary import RunSummary
from churnstream.settings import Settings

PROBABILITY_TOLERANCE = 1e-9
SAMPLE_SIZE = 500
LATENCY_SAMPLE = 5000  # latencies kept in the JSON of a single run, for its plot


def read_json(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def sample_check(
    settings: Settings, raw: dict[tuple[int, int], RawRecord], predictions: list[ObservedPrediction], seed: int
) -> dict[str, Any]:
    """Recompute a sample of published probabilities offline, with the same model, in one call."""
    model = load_model_deferred(settings)
    sample = random.Random(seed).sample(predictions, min(SAMPLE_SIZE, len(predictions)))
    features, published = [], []
    for observed in sample:
        record = raw.get(observed.source)
        if record is None:
            continue
        try:
            features.append(model.contract.decode(record.value).features)
        except InvalidEvent:
            continue
        published.append(observed.prediction)
    offline = model.predict_proba(features) if features else []
    diffs = [abs(p.churn_probability - float(o)) for p, o in zip(published, offline, strict=True)]
    labels_ok = all(
        p.prediction == (PREDICTION_YES if float(o) >= model.threshold else PREDICTION_NO)
        for p, o in zip(published, offline, strict=True)
    )
    mismatches = sum(1 for d in diffs if d > PROBABILITY_TOLERANCE) + (0 if labels_ok else 1)
    return {
        "checked": len(published),
        "mismatches": mismatches,
        "max_abs_diff": max(diffs) if diffs else None,
        "model_version": model.version,
    }


def raw_event_ms(record: RawRecord) -> float | None:
    """A raw event's ``event_ts`` in epoch ms (None for a record that is not an event)."""
    try:
        return ts_to_epoch_ms(parse_object(record.value)[EVENT_TS])
    except (InvalidEvent, KeyError, TypeError, ValueError):
        return None


def floor_latencies(
    receipts: Sequence[Receipt], raw: dict[tuple[int, int], RawRecord]
) -> tuple[list[float], list[float]]:
    """The floor run: (receipt times, receipt - event_ts) for every raw event the reader received."""
    times, latencies = [], []
    for receipt in receipts:
        record = raw.get(receipt.source)
        event_ms = raw_event_ms(record) if record is not None else None
        if event_ms is not None:
            times.append(receipt.received_ms)
            latencies.append(receipt.received_ms - event_ms)
    return times, latencies


def _accounting(plan: RunPlan, counts: Conservation, outcomes: Outcomes) -> dict[str, Any]:
    return {
        "raw_records": counts.raw_records,
        "injected_bad": plan.inject_bad,
        "scored": counts.scored,
        "dead_lettered": counts.dead_lettered,
        "lost": counts.lost,
        "duplicated": counts.duplicated + counts.unknown_sources,
        "duplicate_event_ids": counts.duplicate_event_ids,
        "lost_examples": [list(s) for s in counts.lost_examples],
        "dead_letter_bytes_mismatch": counts.dead_letter_bytes_mismatch,
        "malformed_outputs": outcomes.malformed,
        "dead_letter_stages": stage_counts(outcomes.dead_letters),
    }


def _latencies(
    plan: RunPlan, receipts: Sequence[Receipt], outcomes: Outcomes, raw: dict[tuple[int, int], RawRecord]
) -> tuple[list[float], list[float], list[float], list[float]]:
    """Receipt times and end-to-end latencies of the timed records, processing latencies, and the
    receipt times of every outcome (dead letters included)."""
    if plan.subject == Subject.FLOOR:
        readable, e2e = floor_latencies(receipts, raw)
        return readable, e2e, [], [r.received_ms for r in receipts]
    event_ms = [ts_to_epoch_ms(p.prediction.event_ts) for p in outcomes.predictions]
    readable = [p.readable_ms for p in outcomes.predictions]
    e2e = [r - ms for r, ms in zip(readable, event_ms, strict=True)]
    processing = [
        ts_to_epoch_ms(p.prediction.processed_ts) - ms for p, ms in zip(outcomes.predictions, event_ms, strict=True)
    ]
    return readable, e2e, processing, readable + [d.readable_ms for d in outcomes.dead_letters]


def _summaries(run_dir: Path, plan: RunPlan) -> tuple[RunSummary | None, list[dict[str, Any] | None]]:
    produced = read_json(run_dir / "producer.json")
    consumed = [read_json(run_dir / f"consumer-{i}.json") for i in range(plan.processes)]
    return (RunSummary.from_json(produced) if produced else None), consumed


def _counts(
    plan: RunPlan, raw_records: list[RawRecord], receipts: Sequence[Receipt], outcomes: Outcomes
) -> Conservation:
    if plan.subject == Subject.FLOOR:
        return receipt_accounting((r.source for r in raw_records), (r.source for r in receipts))
    return conservation(raw_records, outcomes.predictions, outcomes.dead_letters)


def build_results(
    *,
    settings: Settings,
    plan: RunPlan,
    run_id: str,
    topics: dict[str, str],
    join_s: float | None,
    receipts: Sequence[Receipt],
    outcomes: Outcomes,
    producer: ManagedProcess,
    producer_code: int,
    processes: list[ManagedProcess],
    process_codes: list[int],
    raw_records: list[RawRecord],
    run_dir: Path,
    load_average: float | None,
) -> dict[str, Any]:
    produced, consumed = _summaries(run_dir, plan)
    counts = _counts(plan, raw_records, receipts, outcomes)
    raw_by_source = {r.source: r for r in raw_records}
    readable, e2e, processing, outcome_times = _latencies(plan, receipts, outcomes, raw_by_source)
    producer_start_ms = producer.started_at * 1000.0
    bin_ms = timeline_bin_ms(outcome_times, producer_start_ms)
    return {
        "run_id": run_id,
        "label": plan.label,
        "subject": plan.subject.value,
        "plan_text": plan.describe(),
        "plan": asdict(plan),
        "topics": topics,
        "load_average_at_start": load_average,
        "group_join_s": None if join_s is None else round(join_s, 2),
        "mode": plan.mode,
        "producer_started_at": round(producer.started_at, 3),
        "producer": _producer_results(plan, produced, producer, producer_code),
        "consumers": [
            _process_results(code, summary, process)
            for code, summary, process in zip(process_codes, consumed, processes, strict=False)
        ],
        **_accounting(plan, counts, outcomes),
        "latency_ms": latency_summary(e2e),
        "processing_latency_ms": latency_summary(processing),
        "latency_ccdf": ccdf_points(e2e),
        "latency_over_time": latency_over_time(readable, e2e, producer_start_ms),
        "throughput": {
            "consumer_events_per_sec": round(sum((s or {}).get("events_per_sec") or 0.0 for s in consumed), 1)
            if consumed
            else None,
            "observed_outcomes_per_sec": _observed_rate(outcome_times),
        },
        "all_readable_after_producer_start_s": (
            round((max(outcome_times) - producer_start_ms) / 1000.0, 3) if outcome_times else None
        ),
        "sample_check": (
            sample_check(settings, raw_by_source, outcomes.predictions, plan.seed)
            if plan.subject.scores
            else {"checked": 0, "mismatches": 0, "max_abs_diff": None, "model_version": None}
        ),
        "timeline": {
            "bin_s": bin_ms / 1000.0,
            "produced_per_s": rate_per_bin([float(r.timestamp) for r in raw_records], producer_start_ms, bin_ms),
            "readable_per_s": rate_per_bin(outcome_times, producer_start_ms, bin_ms),
        },
        "latencies_ms_sample": _thin(e2e, LATENCY_SAMPLE),
    }


def _producer_results(
    plan: RunPlan, produced: RunSummary | None, producer: ManagedProcess, code: int
) -> dict[str, Any]:
    return {
        "exit_code": code,
        "sent": produced.sent if produced else None,
        "acknowledged": produced.acknowledged if produced else None,
        "failed": produced.failed if produced else None,
        "requested_rate": plan.events_per_sec if plan.mode == Mode.STREAMING else None,
        "achieved_rate": round(produced.achieved_rate, 3) if produced else None,
        "elapsed_s": produced.elapsed_s if produced else None,
        "log_tail": producer.tail() if code != 0 else "",
    }


def _process_results(code: int, summary: dict[str, Any] | None, process: ManagedProcess) -> dict[str, Any]:
    """A consumer's (or bare loop's) exit code and its own summary's counts."""
    if summary is not None and "windows" in summary:  # a consumer.py summary
        parsed = ConsumerSummary.from_json(summary)
        summary = {
            "scored": parsed.scored,
            "dead_lettered": parsed.dead_lettered,
            "events_per_sec": parsed.events_per_sec,
            "transactions_aborted": parsed.transactions_aborted,
        }
    summary = summary or {}
    return {
        "exit_code": code,
        "scored": summary.get("scored"),
        "dead_lettered": summary.get("dead_lettered"),
        "events_per_sec": summary.get("events_per_sec"),
        "transactions_aborted": summary.get("transactions_aborted"),
        "log_tail": process.tail() if code != 0 else "",
    }


def _observed_rate(times_ms: Sequence[float]) -> float | None:
    if len(times_ms) < 2:
        return None
    span = (max(times_ms) - min(times_ms)) / 1000.0
    return round(len(times_ms) / span, 1) if span > 0 else None


def _thin(values: Sequence[float], limit: int) -> list[float]:
    """A deterministic subsample for plots, so the JSON stays small."""
    if len(values) <= limit:
        return [round(v, 2) for v in values]
    step = len(values) / limit
    return [round(values[int(i * step)], 2) for i in range(limit)]


def load_average() -> float | None:
    """The 1-minute load average now (None where the system has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None

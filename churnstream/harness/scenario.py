"""One harness run: the real scripts as subprocesses, on the run's own topics, measured from outside.

A run gets its own topics and consumer group (``<topic>-run-<id>``, or ``<topic>-<name>`` for a
named run such as the demo's), so runs never mix. The harness starts N consumers and one producer
as subprocesses, reads the outputs with its own ``read_committed`` consumer (the moment a
prediction becomes readable is what end-to-end latency is measured against), then reads the raw
topic and checks that every raw record has exactly one outcome.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson
from kafka import errors as kafka_errors

from churnstream.consumer.scoring import RawRecord
from churnstream.consumer.stats import ConsumerSummary
from churnstream.contract.events import decode_value, ts_to_epoch_ms, utc_now_iso, validate_event
from churnstream.contract.outputs import PREDICTION_NO, PREDICTION_YES, Mode
from churnstream.errors import InvalidEvent, PipelineError
from churnstream.harness import badinput
from churnstream.harness.analysis import (
    ObservedPrediction,
    conservation,
    latency_summary,
    rate_per_bin,
    stage_counts,
    timeline_bin_ms,
)
from churnstream.harness.judge import judge
from churnstream.harness.plan import RunPlan, RunTopics
from churnstream.harness.processes import CONSUMER, PRODUCER, ManagedProcess, script, wait_for_group
from churnstream.harness.readers import OutcomeReader, read_topic
from churnstream.harness.verify import load_model_deferred
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.topics import delete_topics, ensure_topics
from churnstream.lifecycle import tune_garbage_collector
from churnstream.producer.summary import RunSummary
from churnstream.settings import ENV_CONSUMER_INSTANCE_ID, Settings

logger = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-9
_GROUP_GONE = {"OK", kafka_errors.GroupIdNotFoundError.__name__}
SAMPLE_SIZE = 500
SETTLE_S = 1.0  # after the last outcome: late duplicates, if any, arrive before we count
TOPIC_GONE_TIMEOUT_S = 30.0


@dataclass
class RunContext:
    settings: Settings  # with the run's own topics and group
    plan: RunPlan
    run_id: str
    run_dir: Path
    topics: RunTopics
    env: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    join_s: float | None = None  # how long the consumers took to join the group

    @property
    def consumers(self) -> list[ManagedProcess]:
        return self.processes[: self.plan.consumers]


def _producer_args(ctx: RunContext) -> list[str]:
    plan = ctx.plan
    args = script(PRODUCER, "--mode", plan.mode, "--no-progress")
    args += ["--summary-json", str(ctx.run_dir / "producer.json")]
    if plan.mode == Mode.STREAMING:
        args += ["--events-per-sec", f"{plan.events_per_sec:g}", "--duration", f"{plan.duration_s:g}"]
        args += ["--seed", str(plan.seed)]
    else:
        args += ["--checkpoint-file", str(ctx.run_dir / "checkpoint.json")]
        if plan.limit:
            args += ["--limit", str(plan.limit)]
        if plan.repeat > 1:
            args += ["--repeat", str(plan.repeat)]
    return args + list(plan.connection_args)


def _consumer_args(ctx: RunContext, index: int) -> list[str]:
    args = script(CONSUMER, "--mode", Mode.STREAMING, "--guarantee", ctx.plan.guarantee)
    args += ["--summary-json", str(ctx.run_dir / f"consumer-{index}.json")]
    return args + list(ctx.plan.connection_args) + list(ctx.plan.consumer_args)


def _inject(ctx: RunContext, events: list[badinput.BadEvent], spread_s: float) -> None:
    """Send malformed events straight to the raw topic, spread over ``spread_s`` seconds."""
    if not events:
        return
    producer = make_producer(ctx.settings, client_id="churn-harness-injector", max_request_size=2_000_000)
    try:
        start = time.monotonic()
        for index, event in enumerate(events):
            due = start + spread_s * (index + 1) / (len(events) + 1)
            time.sleep(max(0.0, due - time.monotonic()))
            producer.send(ctx.topics.raw, key=event.key, value=event.value)
        with kafka_errors_translated(ctx.settings):
            producer.flush(timeout=60)
    finally:
        producer.close()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None


def _sample_check(
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
            features.append(validate_event(decode_value(record.value)).features)
        except InvalidEvent:
            continue
        published.append(observed.prediction)
    offline = model.predict_proba(features)
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


def _prepare(settings: Settings, plan: RunPlan, results_dir: Path) -> RunContext:
    """The run's id, folder, topics (a named run's are wiped first) and environment."""
    run_id = plan.run_name or uuid.uuid4().hex[:10]
    run_dir = results_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    topics = RunTopics.named(settings, plan.run_name) if plan.run_name else RunTopics.for_run(settings, run_id)
    # Each consumer takes its own slot: an id from the environment would give all of them one id.
    inherited = {k: v for k, v in os.environ.items() if k != ENV_CONSUMER_INSTANCE_ID}
    env = {**inherited, **topics.environment(), "PYTHONUNBUFFERED": "1"}
    run_settings = replace(
        settings,
        topic_raw=topics.raw,
        topic_predictions=topics.predictions,
        topic_deadletter=topics.deadletter,
        consumer_group=topics.group,
    )
    admin = make_admin(run_settings, client_id="churn-harness-admin")
    try:
        if plan.run_name:
            _wipe_named_run(admin, run_settings, topics)
        ensure_topics(admin, run_settings, topics.all_topics())
    finally:
        admin.close()
    return RunContext(run_settings, plan, run_id, run_dir, topics, env)


def _wipe_named_run(admin: Any, settings: Settings, topics: RunTopics) -> None:
    """A named run starts from empty topics and a group with no offsets, and keeps them afterwards."""
    existing = [name for name in topics.all_topics() if name in set(admin.list_topics())]
    if existing:
        logger.info("deleting the previous %s run's topics: %s", topics.group, ", ".join(existing))
        delete_topics(admin, settings, existing)
        deadline = time.monotonic() + TOPIC_GONE_TIMEOUT_S
        while set(existing) & set(admin.list_topics()):  # deletion is asynchronous on the broker
            if time.monotonic() > deadline:
                raise PipelineError(
                    f"topics {', '.join(existing)} were not deleted within {TOPIC_GONE_TIMEOUT_S:.0f} s"
                )
            time.sleep(0.2)
    with kafka_errors_translated(settings):
        results = admin.delete_groups([topics.group])  # {group: "OK" or the error's name}
    failed = [error for error in results.values() if error not in _GROUP_GONE]
    if failed:
        raise PipelineError(f"could not delete the previous run's group {topics.group}: {failed[0]}")


def _drive(ctx: RunContext, reader: OutcomeReader) -> tuple[ManagedProcess, int, list[int], list[RawRecord]]:
    """Start the consumers, then the producer and the injector; wait until every raw record has an outcome."""
    plan = ctx.plan
    for index in range(plan.consumers):
        log = ctx.run_dir / f"consumer-{index}.log"
        ctx.processes.append(ManagedProcess(f"consumer-{index}", _consumer_args(ctx, index), ctx.env, log))
    try:
        ctx.join_s = wait_for_group(ctx.settings, ctx.topics.group, ctx.processes)
    except PipelineError as exc:
        ctx.failures.append(str(exc))  # the run goes on: what was lost will show in the accounting
    bad = badinput.pick(plan.inject_bad, f"bad-{ctx.run_id}", utc_now_iso())
    producer = ManagedProcess("producer", _producer_args(ctx), ctx.env, ctx.run_dir / "producer.log")
    ctx.processes.append(producer)
    spread = plan.duration_s * 0.8 if plan.mode == Mode.STREAMING else 0.5
    injector = threading.Thread(target=_inject, args=(ctx, bad, spread), name="injector", daemon=True)
    injector.start()
    producer_limit = (plan.duration_s + 60) if plan.mode == Mode.STREAMING else 600
    producer_code = producer.wait(producer_limit)
    if producer_code is None:
        ctx.failures.append(f"producer did not finish within {producer_limit:.0f} s")
        producer_code = producer.stop()
    injector.join(timeout=60)
    raw_records = read_topic(ctx.settings, ctx.topics.raw)
    deadline = time.monotonic() + plan.timeout_s
    while reader.outcomes < len(raw_records) and time.monotonic() < deadline:
        if reader.error or any(p.poll() is not None for p in ctx.consumers):
            break
        time.sleep(0.1)
    time.sleep(SETTLE_S)
    consumer_codes = [p.stop() for p in ctx.consumers]
    return producer, producer_code, consumer_codes, raw_records


def run_scenario(settings: Settings, plan: RunPlan, results_dir: Path) -> dict[str, Any]:
    """One end-to-end run; returns the results dict (also the JSON the CLI writes)."""
    ctx = _prepare(settings, plan, results_dir)
    logger.info("run %s: %s", ctx.run_id, plan.describe())
    reader = OutcomeReader(ctx.settings, ctx.topics)
    tune_garbage_collector()  # GC passes would hold the GIL and delay the reader's timestamps
    reader.start_reading()
    try:
        producer, producer_code, consumer_codes, raw_records = _drive(ctx, reader)
        time.sleep(0.5)
    finally:
        for process in ctx.processes:
            process.stop(timeout=10)
        reader.stop()
    if reader.error is not None:
        ctx.failures.append(f"the harness reader failed: {reader.error!r}")
    results = _results(
        ctx,
        reader,
        producer=producer,
        producer_code=producer_code,
        consumer_codes=consumer_codes,
        raw_records=raw_records,
    )
    criteria = judge(results, plan, ctx.failures)
    results["criteria"] = [c.as_dict() for c in criteria]
    results["passed"] = all(c.passed for c in criteria)
    if not plan.keep_topics and not plan.run_name:
        admin = make_admin(ctx.settings, client_id="churn-harness-admin")
        try:
            delete_topics(admin, ctx.settings, ctx.topics.all_topics())
        finally:
            admin.close()
    return results


def _summaries(ctx: RunContext) -> tuple[RunSummary | None, list[ConsumerSummary | None]]:
    produced = _read_json(ctx.run_dir / "producer.json")
    consumed = [_read_json(ctx.run_dir / f"consumer-{i}.json") for i in range(ctx.plan.consumers)]
    return (
        RunSummary.from_json(produced) if produced else None,
        [ConsumerSummary.from_json(c) if c else None for c in consumed],
    )


def _results(
    ctx: RunContext,
    reader: OutcomeReader,
    *,
    producer: ManagedProcess,
    producer_code: int,
    consumer_codes: list[int],
    raw_records: list[RawRecord],
) -> dict[str, Any]:
    plan = ctx.plan
    produced, consumed = _summaries(ctx)
    counts = conservation(raw_records, reader.predictions, reader.dead_letters)
    event_ms = [ts_to_epoch_ms(p.prediction.event_ts) for p in reader.predictions]
    e2e = [p.readable_ms - ms for p, ms in zip(reader.predictions, event_ms, strict=True)]
    processing = [
        ts_to_epoch_ms(p.prediction.processed_ts) - ms for p, ms in zip(reader.predictions, event_ms, strict=True)
    ]
    producer_start_ms = producer.started_at * 1000.0
    outcome_times = [p.readable_ms for p in reader.predictions] + [d.readable_ms for d in reader.dead_letters]
    bin_ms = timeline_bin_ms(outcome_times, producer_start_ms)
    raw_by_source = {r.source: r for r in raw_records}
    return {
        "run_id": ctx.run_id,
        "label": plan.label,
        "plan_text": plan.describe(),
        "plan": asdict(plan),
        "topics": asdict(ctx.topics),
        "group_join_s": None if ctx.join_s is None else round(ctx.join_s, 2),
        "mode": plan.mode,
        "producer": _producer_results(plan, produced, producer, producer_code),
        "consumers": [
            _consumer_results(code, summary, process)
            for code, summary, process in zip(consumer_codes, consumed, ctx.consumers, strict=False)
        ],
        "raw_records": counts.raw_records,
        "injected_bad": plan.inject_bad,
        "scored": counts.scored,
        "dead_lettered": counts.dead_lettered,
        "lost": counts.lost,
        "duplicated": counts.duplicated + counts.unknown_sources,
        "duplicate_event_ids": counts.duplicate_event_ids,
        "lost_examples": [list(s) for s in counts.lost_examples],
        "dead_letter_bytes_mismatch": counts.dead_letter_bytes_mismatch,
        "malformed_outputs": reader.malformed_outputs,
        "dead_letter_stages": stage_counts(reader.dead_letters),
        "latency_ms": latency_summary(e2e),
        "processing_latency_ms": latency_summary(processing),
        "throughput": {
            "consumer_events_per_sec": round(sum(s.events_per_sec for s in consumed if s), 1),
            "observed_outcomes_per_sec": _observed_rate(outcome_times),
        },
        "all_readable_after_producer_start_s": (
            round((max(outcome_times) - producer_start_ms) / 1000.0, 3) if outcome_times else None
        ),
        "sample_check": _sample_check(ctx.settings, raw_by_source, reader.predictions, plan.seed),
        "timeline": {
            "bin_s": bin_ms / 1000.0,
            "produced_per_s": rate_per_bin([float(r.timestamp) for r in raw_records], producer_start_ms, bin_ms),
            "readable_per_s": rate_per_bin(outcome_times, producer_start_ms, bin_ms),
        },
        "latencies_ms_sample": _thin(e2e, 5000),
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


def _consumer_results(code: int, summary: ConsumerSummary | None, process: ManagedProcess) -> dict[str, Any]:
    return {
        "exit_code": code,
        "scored": summary.scored if summary else None,
        "dead_lettered": summary.dead_lettered if summary else None,
        "events_per_sec": summary.events_per_sec if summary else None,
        "transactions_aborted": summary.transactions_aborted if summary else None,
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

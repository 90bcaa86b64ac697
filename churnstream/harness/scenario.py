"""One harness run: the real scripts as subprocesses, on the run's own topics, measured from outside.

A run gets its own topics and consumer group (``<topic>-run-<id>``, or ``<topic>-<name>`` for a
named run such as the demo's), so runs never mix. The harness starts its latency reader (a process
of its own, ``latency_reader``), then N consumers (or N bare loops or Quix Streams applications, or
none for the floor run) and one producer as subprocesses. The reader timestamps each output on
receipt (what end-to-end latency is measured against); afterwards the harness reads the raw topic
and checks that every raw record has exactly one outcome.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from kafka import errors as kafka_errors

from churnstream.consumer.scoring import RawRecord
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import Mode
from churnstream.errors import PipelineError
from churnstream.harness import badinput
from churnstream.harness.judge import judge
from churnstream.harness.plan import RunPlan, RunTopics, Subject
from churnstream.harness.processes import (
    BARE_LOOP,
    CONSUMER,
    PRODUCER,
    ManagedProcess,
    child_environment,
    script,
    wait_for_group,
)
from churnstream.harness.quix import quix_script
from churnstream.harness.readers import LatencyReader, decode_outcomes, read_topic
from churnstream.harness.results import build_results, load_average
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.diagnosis import kafka_errors_translated
from churnstream.kafka.topics import delete_topics, ensure_topics
from churnstream.settings import Settings

logger = logging.getLogger(__name__)

_GROUP_GONE = {"OK", kafka_errors.GroupIdNotFoundError.__name__}
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
    load_average: float | None = None  # the machine's, when the run started

    @property
    def consumers(self) -> list[ManagedProcess]:
        """The consume->produce processes (our consumers or the bare loops; none for the floor)."""
        return self.processes[: self.plan.processes]


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
    summary = ["--summary-json", str(ctx.run_dir / f"consumer-{index}.json")]
    if ctx.plan.subject == Subject.BARE_LOOP:  # reads its connection from the environment the harness passes
        return script(BARE_LOOP, "--guarantee", ctx.plan.guarantee, *summary)
    if ctx.plan.subject == Subject.QUIX:  # the same, in its own virtualenv; at-least-once, Quix's default
        return quix_script(*summary)
    args = script(CONSUMER, "--mode", Mode.STREAMING, "--guarantee", ctx.plan.guarantee, *summary)
    return args + list(ctx.plan.connection_args) + list(ctx.plan.consumer_args)


def _reader_topics(ctx: RunContext) -> list[str]:
    """The floor run reads the raw topic itself; every other run the outputs (predictions first)."""
    if ctx.plan.subject == Subject.FLOOR:
        return [ctx.topics.raw]
    return [ctx.topics.predictions, ctx.topics.deadletter]


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


def _prepare(settings: Settings, plan: RunPlan, runs_dir: Path) -> RunContext:
    """The run's id, folder, topics (a named run's are wiped first) and environment."""
    run_id = plan.run_name or uuid.uuid4().hex[:10]
    run_dir = runs_dir / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    topics = RunTopics.named(settings, plan.run_name) if plan.run_name else RunTopics.for_run(settings, run_id)
    run_settings = replace(
        settings,
        topic_raw=topics.raw,
        topic_predictions=topics.predictions,
        topic_deadletter=topics.deadletter,
        consumer_group=topics.group,
    )
    env = child_environment(run_settings)  # the connection and its secrets: never on a command line
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


def _start_processes(ctx: RunContext) -> None:
    """The consumers (or bare loops), and the wait until their group is stable: the first events wait for nobody."""
    for index in range(ctx.plan.processes):
        log = ctx.run_dir / f"consumer-{index}.log"
        ctx.processes.append(ManagedProcess(f"consumer-{index}", _consumer_args(ctx, index), ctx.env, log))
    if not ctx.processes:
        return
    try:
        ctx.join_s = wait_for_group(ctx.settings, ctx.topics.group, ctx.processes)
    except PipelineError as exc:
        ctx.failures.append(str(exc))  # the run goes on: what was lost will show in the accounting


def _drive(ctx: RunContext, reader: LatencyReader) -> tuple[ManagedProcess, int, list[int], list[RawRecord]]:
    """Start the consumers, then the producer and the injector; wait until every raw record has an outcome."""
    plan = ctx.plan
    _start_processes(ctx)
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
    while reader.refresh() < len(raw_records) and time.monotonic() < deadline:
        if reader.failed or any(p.poll() is not None for p in ctx.consumers):
            break
        time.sleep(0.1)
    time.sleep(SETTLE_S)
    consumer_codes = [p.stop() for p in ctx.consumers]
    return producer, producer_code, consumer_codes, raw_records


def run_scenario(settings: Settings, plan: RunPlan, runs_dir: Path) -> dict[str, Any]:
    """One end-to-end run, its logs in ``runs_dir/<run id>/``; returns the results dict (the CLI's JSON)."""
    ctx = _prepare(settings, plan, runs_dir)
    ctx.load_average = load_average()
    logger.info("run %s: %s", ctx.run_id, plan.describe())
    reader = LatencyReader(_reader_topics(ctx), ctx.env, ctx.run_dir)
    try:
        reader.start()
        producer, producer_code, consumer_codes, raw_records = _drive(ctx, reader)
        time.sleep(0.5)
    finally:
        for process in ctx.processes:
            process.stop(timeout=10)
        reader.stop()
    if reader.error is not None:
        ctx.failures.append(f"the harness's latency reader failed: {reader.error}")
    outcomes = decode_outcomes(reader.receipts) if plan.subject != Subject.FLOOR else None
    results = build_results(
        settings=ctx.settings,
        plan=plan,
        run_id=ctx.run_id,
        topics=asdict(ctx.topics),
        join_s=ctx.join_s,
        receipts=reader.receipts,
        outcomes=outcomes if outcomes is not None else decode_outcomes([]),
        producer=producer,
        producer_code=producer_code,
        processes=ctx.consumers,
        process_codes=consumer_codes,
        raw_records=raw_records,
        run_dir=ctx.run_dir,
        load_average=ctx.load_average,
    )
    criteria = judge(results, plan, ctx.failures)
    results["criteria"] = [c.as_dict() for c in criteria]
    results["passed"] = all(c.passed for c in criteria)
    if results["passed"] and not plan.keep_topics:
        reader.path.unlink(missing_ok=True)  # tens of MB at 5,000/s; kept when a run failed or topics are kept
    if not plan.keep_topics and not plan.run_name:
        admin = make_admin(ctx.settings, client_id="churn-harness-admin")
        try:
            delete_topics(admin, ctx.settings, ctx.topics.all_topics())
        finally:
            admin.close()
    return results

"""The validation harness behind test_pipeline.py: run the real scripts, measure from outside.

A run gets its own topics and consumer group (``<topic>-run-<id>``), so runs never mix. The
harness starts N ``consumer.py`` and one ``producer.py`` as subprocesses, reads the outputs
with its own ``read_committed`` consumer (the moment a prediction becomes readable is what
end-to-end latency is measured against), then reads the raw topic and checks that every raw
record has exactly one outcome.
"""

from __future__ import annotations

import logging
import os
import platform
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from churnstream import badinput
from churnstream.analysis import (
    Criterion,
    DeadLetter,
    Prediction,
    RawRecord,
    conservation,
    latency_summary,
    rate_per_bin,
    stage_counts,
    timeline_bin_ms,
)
from churnstream.cli import tune_garbage_collector
from churnstream.data import DATASET_SHA256, verify_dataset
from churnstream.errors import InvalidEvent, PipelineError
from churnstream.events import decode_value, ts_to_epoch_ms, utc_now_iso, validate_event
from churnstream.kafka_io import (
    broker_version,
    ensure_topics,
    kafka_errors_translated,
    make_admin,
    make_consumer,
    make_producer,
)
from churnstream.scoring import HEADER_KEY_ABSENT
from config import (
    ENV_CONSUMER_GROUP,
    ENV_TOPIC_DEADLETTER,
    ENV_TOPIC_PREDICTIONS,
    ENV_TOPIC_RAW,
    PROJECT_ROOT,
    Settings,
)

if TYPE_CHECKING:
    from churnstream.model import ChurnModel

logger = logging.getLogger(__name__)

PROBABILITY_TOLERANCE = 1e-9
SAMPLE_SIZE = 500
GROUP_STABLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class RunPlan:
    mode: str = "streaming"  # or "batch"
    events_per_sec: float = 100.0
    duration_s: float = 10.0
    consumers: int = 1
    inject_bad: int = 0
    guarantee: str = "exactly-once"
    limit: int | None = None
    repeat: int = 1
    seed: int = 42
    timeout_s: float = 60.0
    keep_topics: bool = False
    p99_goal_ms: float | None = None
    batch_goal_s: float | None = None
    consumer_args: tuple[str, ...] = ()
    label: str = ""

    def describe(self) -> str:
        if self.mode == "streaming":
            text = f"streaming {self.events_per_sec:g} events/s for {self.duration_s:g} s"
        else:
            text = "batch, whole file" + (f" x{self.repeat}" if self.repeat > 1 else "")
            if self.limit:
                text += f", first {self.limit} rows"
        text += f", {self.consumers} consumer(s), {self.guarantee}"
        if self.inject_bad:
            text += f", {self.inject_bad} malformed events injected"
        return text


@dataclass(frozen=True)
class RunTopics:
    raw: str
    predictions: str
    deadletter: str
    group: str

    @classmethod
    def for_run(cls, settings: Settings, run_id: str) -> RunTopics:
        suffix = f"-run-{run_id}"
        return cls(
            raw=settings.topic_raw + suffix,
            predictions=settings.topic_predictions + suffix,
            deadletter=settings.topic_deadletter + suffix,
            group=settings.consumer_group + suffix,
        )

    def environment(self) -> dict[str, str]:
        return {
            ENV_TOPIC_RAW: self.raw,
            ENV_TOPIC_PREDICTIONS: self.predictions,
            ENV_TOPIC_DEADLETTER: self.deadletter,
            ENV_CONSUMER_GROUP: self.group,
        }


# --- checks for --verify-only ---------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def verify(settings: Settings) -> list[Check]:
    """Broker, topics, model and data: each checked on its own, so one failure hides no other.

    The model and the data are checked first, and missing topics are created only when both
    pass: a start-up fault (a missing model, an altered CSV) changes nothing on the broker.
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        # Connect while the model loads (scikit-learn's import alone takes seconds), so a broker
        # that is down is reported within the same 10 s as from the scripts.
        connecting = pool.submit(make_admin, settings, "churn-verify")
        local = _local_checks(settings)
        return _broker_checks(connecting, settings, local) + local


def _load_model(path: Path) -> ChurnModel:
    """Imported here, not at the top: scikit-learn's import takes seconds, and --verify-only
    connects to the broker meanwhile (see verify)."""
    from churnstream.model import load_model  # noqa: PLC0415

    return load_model(path)


def _local_checks(settings: Settings) -> list[Check]:
    local: list[Check] = []
    try:
        model = _load_model(settings.model_path)
        detail = f"{model.version}, sha256 matches its card ({settings.model_path.name})"
        local.append(Check("model integrity", True, detail))
    except PipelineError as exc:
        local.append(Check("model integrity", False, str(exc)))
    try:
        verify_dataset(settings.data_path)
        local.append(Check("data checksum", True, f"{settings.data_path.name} sha256 {DATASET_SHA256[:12]}..."))
    except PipelineError as exc:
        local.append(Check("data checksum", False, str(exc)))
    return local


def _broker_checks(connecting: Future[KafkaAdminClient], settings: Settings, local: list[Check]) -> list[Check]:
    checks: list[Check] = []
    try:
        admin = connecting.result()
    except PipelineError as exc:
        checks.append(Check("broker answers", False, str(exc)))
        checks.append(Check("topics exist", False, "skipped: no broker"))
    else:
        try:
            version = broker_version(admin)
            checks.append(Check("broker answers", True, f"{settings.bootstrap_servers}, Kafka API {version}"))
            topics = [settings.topic_raw, settings.topic_predictions, settings.topic_deadletter]
            if all(check.passed for check in local):
                created = ensure_topics(admin, settings, topics)
                detail = ", ".join(topics) + (f" (created {', '.join(created)})" if created else "")
                checks.append(Check("topics exist", True, detail))
            else:
                with kafka_errors_translated(settings):
                    missing = sorted(set(topics) - set(admin.list_topics()))
                detail = f"skipped creating {', '.join(missing)}: fix the failed checks first" if missing else ""
                checks.append(Check("topics exist", not missing, detail or ", ".join(topics)))
        except PipelineError as exc:
            checks.append(Check("topics exist", False, str(exc)))
        finally:
            admin.close()
    return checks


# --- subprocesses ------------------------------------------------------------------------------


class ManagedProcess:
    """A script subprocess with its output in a log file, stopped by signal, never orphaned."""

    def __init__(self, name: str, args: Sequence[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self.started_at = time.time()
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            # Its own session: a Ctrl-C in the terminal reaches only the harness, which then stops
            # each child with one SIGTERM (a clean stop) instead of the child seeing two signals.
            start_new_session=True,
        )

    def poll(self) -> int | None:
        return self.process.poll()

    def wait(self, timeout: float) -> int | None:
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM, wait; SIGKILL if it does not stop in time (and say so in the log)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            if self.wait(timeout) is None:
                logger.warning("%s did not stop within %.0f s of SIGTERM; killing it", self.name, timeout)
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode

    def tail(self, lines: int = 12) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


# --- readers --------------------------------------------------------------------------------


def _header(headers: Sequence[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return value.decode("utf-8", "replace") if value is not None else None
    return None


class OutcomeReader(threading.Thread):
    """Reads predictions and dead letters with read_committed, timestamping when each arrives."""

    def __init__(self, settings: Settings, topics: RunTopics) -> None:
        super().__init__(name="outcome-reader", daemon=True)
        self._settings = settings
        self._topics = topics
        self.predictions: list[Prediction] = []
        self.dead_letters: list[DeadLetter] = []
        self.malformed_outputs = 0
        self._stop_event = threading.Event()
        self._ready = threading.Event()
        self.error: BaseException | None = None
        self._consumer: KafkaConsumer | None = None

    @property
    def outcomes(self) -> int:
        return len(self.predictions) + len(self.dead_letters)

    def start_reading(self) -> None:
        self._consumer = make_consumer(
            self._settings,
            client_id="churn-harness-reader",
            isolation_level="read_committed",
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_poll_records=5000,
        )
        partitions = []
        for topic in (self._topics.predictions, self._topics.deadletter):
            ids = self._consumer.partitions_for_topic(topic) or set()
            partitions += [TopicPartition(topic, p) for p in sorted(ids)]
        self._consumer.assign(partitions)
        self._consumer.seek_to_beginning(*partitions)
        self.start()

    def run(self) -> None:
        assert self._consumer is not None
        try:
            while not self._stop_event.is_set():
                batch = self._consumer.poll(timeout_ms=100)
                now_ms = time.time() * 1000.0
                for tp, records in batch.items():
                    for record in records:
                        if tp.topic == self._topics.predictions:
                            self._take_prediction(record.value, now_ms)
                        else:
                            self._take_dead_letter(record, now_ms)
        except BaseException as exc:  # reported by the harness as a failed run, never swallowed
            self.error = exc
        finally:
            self._consumer.close()

    def _take_prediction(self, value: bytes, now_ms: float) -> None:
        try:
            body = orjson.loads(value)
            self.predictions.append(
                Prediction(
                    source=(int(body["source_partition"]), int(body["source_offset"])),
                    event_id=str(body["event_id"]),
                    customer_id=str(body["customerID"]),
                    churn_probability=float(body["churn_probability"]),
                    prediction=str(body["prediction"]),
                    event_ts_ms=ts_to_epoch_ms(body["event_ts"]),
                    processed_ts_ms=ts_to_epoch_ms(body["processed_ts"]),
                    readable_ms=now_ms,
                )
            )
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            self.malformed_outputs += 1

    def _take_dead_letter(self, record: Any, now_ms: float) -> None:
        partition = _header(record.headers, "dl.source_partition")
        offset = _header(record.headers, "dl.source_offset")
        if partition is None or offset is None:
            self.malformed_outputs += 1
            return
        self.dead_letters.append(
            DeadLetter(
                source=(int(partition), int(offset)),
                stage=_header(record.headers, "dl.stage") or "?",
                reason=_header(record.headers, "dl.reason") or "",
                key=record.key,
                value=record.value,
                readable_ms=now_ms,
                key_absent=_header(record.headers, HEADER_KEY_ABSENT) == "true",
            )
        )

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def read_topic(settings: Settings, topic: str) -> list[RawRecord]:
    """Every record of a topic, from the beginning to the end offsets seen now."""
    consumer = make_consumer(settings, client_id="churn-harness-raw", enable_auto_commit=False, max_poll_records=10000)
    try:
        partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or ())]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        ends = consumer.end_offsets(partitions)
        records: list[RawRecord] = []
        deadline = time.monotonic() + 120
        while any(consumer.position(tp) < ends[tp] for tp in partitions):
            if time.monotonic() > deadline:
                raise PipelineError(f"could not read {topic} to its end within 120 s")
            for tp, batch in consumer.poll(timeout_ms=500).items():
                records.extend(RawRecord((tp.partition, r.offset), r.key, r.value, r.timestamp) for r in batch)
        return records
    finally:
        consumer.close()


def wait_for_group(
    settings: Settings,
    group: str,
    consumers: Sequence[ManagedProcess],
    timeout_s: float = GROUP_STABLE_TIMEOUT_S,
) -> float:
    """Wait until the consumers have joined and own partitions, so the first events wait for nobody."""
    members = len(consumers)
    admin = make_admin(settings, client_id="churn-harness-admin")
    start = time.monotonic()
    try:
        while time.monotonic() - start < timeout_s:
            exited = [c for c in consumers if c.poll() is not None]
            if exited:
                raise PipelineError(
                    f"{exited[0].name} exited with code {exited[0].poll()} before joining group {group}"
                )
            with kafka_errors_translated(settings):
                description = admin.describe_groups([group]).get(group, {})
            if description.get("group_state") == "Stable" and len(description.get("members", [])) >= members:
                return time.monotonic() - start
            time.sleep(0.2)
    finally:
        admin.close()
    raise PipelineError(f"consumer group {group} did not reach {members} stable member(s) within {timeout_s:.0f} s")


# --- the run ------------------------------------------------------------------------------


@dataclass
class RunContext:
    settings: Settings
    plan: RunPlan
    run_id: str
    run_dir: Path
    topics: RunTopics
    env: dict[str, str]
    processes: list[ManagedProcess] = field(default_factory=list)


def _producer_args(ctx: RunContext) -> list[str]:
    plan = ctx.plan
    args = [str(PROJECT_ROOT / "producer.py"), "--mode", plan.mode, "--no-progress"]
    args += ["--summary-json", str(ctx.run_dir / "producer.json")]
    if plan.mode == "streaming":
        args += ["--events-per-sec", f"{plan.events_per_sec:g}", "--duration", f"{plan.duration_s:g}"]
        args += ["--seed", str(plan.seed)]
    else:
        args += ["--checkpoint-file", str(ctx.run_dir / "checkpoint.json")]
        if plan.limit:
            args += ["--limit", str(plan.limit)]
        if plan.repeat > 1:
            args += ["--repeat", str(plan.repeat)]
    return args


def _consumer_args(ctx: RunContext, index: int) -> list[str]:
    args = [str(PROJECT_ROOT / "consumer.py"), "--mode", "streaming", "--guarantee", ctx.plan.guarantee]
    args += ["--summary-json", str(ctx.run_dir / f"consumer-{index}.json")]
    return args + list(ctx.plan.consumer_args)


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
    settings: Settings, raw: dict[tuple[int, int], RawRecord], predictions: list[Prediction], seed: int
) -> dict[str, Any]:
    """Recompute a sample of published probabilities offline, with the same model, in one call."""
    model = _load_model(settings.model_path)
    sample = random.Random(seed).sample(predictions, min(SAMPLE_SIZE, len(predictions)))
    features, published = [], []
    for prediction in sample:
        record = raw.get(prediction.source)
        if record is None:
            continue
        try:
            features.append(validate_event(decode_value(record.value)).features)
        except InvalidEvent:
            continue
        published.append(prediction)
    offline = model.predict_proba(features)
    diffs = [abs(p.churn_probability - float(o)) for p, o in zip(published, offline, strict=True)]
    labels_ok = all(
        p.prediction == ("Yes" if float(o) >= model.threshold else "No")
        for p, o in zip(published, offline, strict=True)
    )
    mismatches = sum(1 for d in diffs if d > PROBABILITY_TOLERANCE) + (0 if labels_ok else 1)
    return {
        "checked": len(published),
        "mismatches": mismatches,
        "max_abs_diff": max(diffs) if diffs else None,
        "model_version": model.version,
    }


def run_scenario(settings: Settings, plan: RunPlan, results_dir: Path) -> dict[str, Any]:
    """One end-to-end run; returns the results dict (also the JSON the CLI writes)."""
    run_id = uuid.uuid4().hex[:10]
    run_dir = results_dir / "runs" / run_id
    run_dir.mkdir(parents=True, exist_ok=True)
    topics = RunTopics.for_run(settings, run_id)
    env = {**os.environ, **topics.environment(), "PYTHONUNBUFFERED": "1"}
    ctx = RunContext(settings, plan, run_id, run_dir, topics, env)
    run_settings = replace(
        settings,
        topic_raw=topics.raw,
        topic_predictions=topics.predictions,
        topic_deadletter=topics.deadletter,
        consumer_group=topics.group,
    )
    ctx.settings = run_settings
    logger.info("run %s: %s", run_id, plan.describe())
    admin = make_admin(run_settings, client_id="churn-harness-admin")
    try:
        ensure_topics(admin, run_settings, [topics.raw, topics.predictions, topics.deadletter])
    finally:
        admin.close()

    reader = OutcomeReader(run_settings, topics)
    tune_garbage_collector()  # GC passes would hold the GIL and delay the reader's timestamps
    reader.start_reading()
    results: dict[str, Any] = {
        "run_id": run_id,
        "label": plan.label,
        "plan_text": plan.describe(),
        "plan": asdict(plan),
        "topics": asdict(topics),
    }
    failures: list[str] = []
    try:
        for index in range(plan.consumers):
            ctx.processes.append(
                ManagedProcess(f"consumer-{index}", _consumer_args(ctx, index), env, run_dir / f"consumer-{index}.log")
            )
        try:
            results["group_join_s"] = round(wait_for_group(run_settings, topics.group, ctx.processes), 2)
        except PipelineError as exc:
            failures.append(str(exc))  # the run goes on: what was lost will show in the accounting

        bad = badinput.pick(plan.inject_bad, f"bad-{run_id}", utc_now_iso())
        producer = ManagedProcess("producer", _producer_args(ctx), env, run_dir / "producer.log")
        ctx.processes.append(producer)
        spread = plan.duration_s * 0.8 if plan.mode == "streaming" else 0.5
        injector = threading.Thread(target=_inject, args=(ctx, bad, spread), name="injector", daemon=True)
        injector.start()
        producer_limit = (plan.duration_s + 60) if plan.mode == "streaming" else 600
        producer_code = producer.wait(producer_limit)
        if producer_code is None:
            failures.append(f"producer did not finish within {producer_limit:.0f} s")
            producer_code = producer.stop()
        injector.join(timeout=60)
        producer_summary = _read_json(run_dir / "producer.json") or {}

        raw_records = read_topic(run_settings, topics.raw)
        deadline = time.monotonic() + plan.timeout_s
        while reader.outcomes < len(raw_records) and time.monotonic() < deadline:
            crashed = [p for p in ctx.processes[: plan.consumers] if p.poll() is not None]
            if crashed or reader.error:
                break
            time.sleep(0.1)
        time.sleep(1.0)  # let late duplicates, if any, arrive before we count
        consumer_codes = [p.stop() for p in ctx.processes[: plan.consumers]]
        time.sleep(0.5)
    finally:
        for process in ctx.processes:
            process.stop(timeout=10)
        reader.stop()

    if reader.error is not None:
        failures.append(f"the harness reader failed: {reader.error!r}")
    raw_by_source = {r.source: r for r in raw_records}
    counts = conservation(raw_records, reader.predictions, reader.dead_letters)
    consumer_summaries = [_read_json(run_dir / f"consumer-{i}.json") or {} for i in range(plan.consumers)]
    e2e = [p.readable_ms - p.event_ts_ms for p in reader.predictions]
    processing = [p.processed_ts_ms - p.event_ts_ms for p in reader.predictions]
    producer_start_ms = producer.started_at * 1000.0
    outcome_times = [p.readable_ms for p in reader.predictions] + [d.readable_ms for d in reader.dead_letters]
    produced_times = [float(r.timestamp_ms) for r in raw_records]
    bin_ms = timeline_bin_ms(outcome_times, producer_start_ms)
    sample = _sample_check(run_settings, raw_by_source, reader.predictions, plan.seed)

    results.update(
        {
            "mode": plan.mode,
            "producer": {
                "exit_code": producer_code,
                "sent": producer_summary.get("sent"),
                "acknowledged": producer_summary.get("acknowledged"),
                "failed": producer_summary.get("failed"),
                "requested_rate": plan.events_per_sec if plan.mode == "streaming" else None,
                "achieved_rate": producer_summary.get("achieved_rate"),
                "elapsed_s": producer_summary.get("elapsed_s"),
                "log_tail": producer.tail() if producer_code != 0 else "",
            },
            "consumers": [
                {
                    "exit_code": code,
                    "scored": summary.get("scored"),
                    "dead_lettered": summary.get("dead_lettered"),
                    "events_per_sec": summary.get("events_per_sec"),
                    "transactions_aborted": summary.get("transactions_aborted"),
                    "log_tail": process.tail() if code != 0 else "",
                }
                for code, summary, process in zip(consumer_codes, consumer_summaries, ctx.processes, strict=False)
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
                "consumer_events_per_sec": round(sum(s.get("events_per_sec") or 0 for s in consumer_summaries), 1),
                "observed_outcomes_per_sec": _observed_rate(outcome_times),
            },
            "all_readable_after_producer_start_s": (
                round((max(outcome_times) - producer_start_ms) / 1000.0, 3) if outcome_times else None
            ),
            "sample_check": sample,
            "timeline": {
                "bin_s": bin_ms / 1000.0,
                "produced_per_s": rate_per_bin(produced_times, producer_start_ms, bin_ms),
                "readable_per_s": rate_per_bin(outcome_times, producer_start_ms, bin_ms),
            },
            "latencies_ms_sample": _thin(e2e, 5000),
        }
    )
    criteria = judge(results, plan, failures)
    results["criteria"] = [c.as_dict() for c in criteria]
    results["passed"] = all(c.passed for c in criteria)
    if not plan.keep_topics:
        _delete_topics(run_settings, [topics.raw, topics.predictions, topics.deadletter])
    return results


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


def _delete_topics(settings: Settings, topics: list[str]) -> None:
    admin = make_admin(settings, client_id="churn-harness-admin")
    try:
        with kafka_errors_translated(settings):
            admin.delete_topics(topics, raise_errors=False)
    except PipelineError as exc:
        logger.warning("could not delete run topics %s: %s", ", ".join(topics), exc)
    finally:
        admin.close()


def judge(results: dict[str, Any], plan: RunPlan, failures: list[str]) -> list[Criterion]:
    """The pass/fail criteria, each with the figure it was judged on."""
    producer = results["producer"]
    criteria = [Criterion("harness ran cleanly", not failures, "; ".join(failures) or "no harness errors")]
    criteria.append(
        Criterion(
            "producer acknowledged every event",
            producer["exit_code"] == 0
            and producer["sent"] is not None
            and producer["acknowledged"] == producer["sent"],
            f"exit {producer['exit_code']}, sent {producer['sent']}, acknowledged {producer['acknowledged']}",
        )
    )
    codes = [c["exit_code"] for c in results["consumers"]]
    criteria.append(Criterion("no consumer crashed", all(code == 0 for code in codes), f"exit codes {codes}"))
    criteria.append(Criterion("lost = 0", results["lost"] == 0, f"lost {results['lost']} of {results['raw_records']}"))
    criteria.append(
        Criterion(
            "duplicated = 0",
            results["duplicated"] == 0 and results["duplicate_event_ids"] == 0,
            f"duplicated {results['duplicated']}, duplicate event ids {results['duplicate_event_ids']}",
        )
    )
    criteria.append(
        Criterion(
            "dead letters = injected malformed events",
            results["dead_lettered"] == plan.inject_bad,
            f"dead-lettered {results['dead_lettered']}, injected {plan.inject_bad}",
        )
    )
    mismatched = results["dead_letter_bytes_mismatch"]
    criteria.append(
        Criterion(
            "dead letters keep the original key and value bytes",
            mismatched == 0,
            f"{mismatched} of {results['dead_lettered']} dead letters differ from the raw record they name",
        )
    )
    valid_sent = producer["acknowledged"]
    criteria.append(
        Criterion(
            "every valid event scored",
            valid_sent is not None and results["scored"] >= valid_sent,
            f"scored {results['scored']}, valid events acknowledged {valid_sent}",
        )
    )
    sample = results["sample_check"]
    criteria.append(
        Criterion(
            "published probabilities equal offline predict_proba",
            sample["checked"] > 0 and sample["mismatches"] == 0,
            f"{sample['checked']} checked, {sample['mismatches']} mismatches, max |diff| {sample['max_abs_diff']}",
        )
    )
    criteria.append(
        Criterion("outputs well-formed", results["malformed_outputs"] == 0, f"{results['malformed_outputs']} malformed")
    )
    if plan.p99_goal_ms is not None:
        p99 = results["latency_ms"]["p99"]
        criteria.append(
            Criterion(
                f"p99 end-to-end latency <= {plan.p99_goal_ms:g} ms",
                p99 is not None and p99 <= plan.p99_goal_ms,
                f"p99 {p99} ms",
            )
        )
    if plan.batch_goal_s is not None:
        readable = results["all_readable_after_producer_start_s"]
        criteria.append(
            Criterion(
                f"all outcomes readable within {plan.batch_goal_s:g} s of the producer's start",
                readable is not None and readable <= plan.batch_goal_s,
                f"{readable} s",
            )
        )
    return criteria


# --- environment ----------------------------------------------------------------------------


def environment(settings: Settings) -> dict[str, Any]:
    """What this run ran on, for the report: machine, Python, packages, broker."""
    packages = {}
    for name in ("kafka-python", "scikit-learn", "pandas", "numpy", "orjson", "joblib", "crc32c", "lz4"):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = "not installed"
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    admin = make_admin(settings, client_id="churn-harness-admin")
    try:
        api = broker_version(admin)
        brokers = len(admin.describe_cluster()["brokers"])
    finally:
        admin.close()
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "packages": packages,
        "broker": {"bootstrap_servers": settings.bootstrap_servers, "api_version": api, "brokers": brokers},
    }

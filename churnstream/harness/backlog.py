"""Throughput on a backlog: the bare loop, our consumer and the seed-style consumer on one pre-filled topic.

The topic is filled once by ``producer.py --mode batch`` (real rows, fresh event ids). Then, per
repeat and per guarantee, the bare loop (``benchmarks.bare_loop --stop-after N``) and our consumer
(``consumer.py --mode batch``, one window spanning the backlog, so no poll is cut at a window's
edge) each read all of it with a fresh group into fresh output topics, the order swapped every
other repeat; and once per repeat the seed-style consumer (``benchmarks.seed_consumer``) for a few
seconds. Every process counts its own events/s, from its first records to its last commit, so
group joins and start-up count against nobody.
"""

from __future__ import annotations

import logging
import math
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from churnstream.contract.outputs import Guarantee, Mode
from churnstream.harness.analysis import spread
from churnstream.harness.plan import RunTopics, Subject
from churnstream.harness.processes import (
    BARE_LOOP,
    CONSUMER,
    PRODUCER,
    SEED_CONSUMER,
    ManagedProcess,
    child_environment,
    script,
)
from churnstream.harness.results import read_json
from churnstream.harness.suite import SuiteSpec
from churnstream.kafka.clients import make_admin
from churnstream.kafka.topics import delete_topics, ensure_topics
from churnstream.ml.dataset import DATASET_ROWS
from churnstream.settings import ENV_TOPIC_RAW, Settings

logger = logging.getLogger(__name__)

PROCESS_TIMEOUT_S = 600.0
SEED = "seed-style"


def fill_arguments(events: int) -> list[str]:
    """producer.py's --limit and --repeat for ``events`` (the file has DATASET_ROWS rows)."""
    repeat = max(1, math.ceil(events / DATASET_ROWS))
    return ["--limit", str(events // repeat), "--repeat", str(repeat)]


class Backlog:
    """The pre-filled topic, and a fresh set of output topics and group for each process run on it."""

    def __init__(self, settings: Settings, run_dir: Path) -> None:
        self.settings = settings
        self.run_dir = run_dir
        self.topic = RunTopics.for_run(settings, "backlog-" + uuid.uuid4().hex[:8]).raw
        self.created: list[str] = []
        self.failures: list[str] = []

    def _env(self, topics: RunTopics) -> dict[str, str]:
        return {**child_environment(self.settings), **topics.environment(), ENV_TOPIC_RAW: self.topic}

    def _topics(self, name: str) -> RunTopics:
        topics = RunTopics.for_run(self.settings, f"{name}-{uuid.uuid4().hex[:8]}")
        names = [self.topic, topics.predictions, topics.deadletter]
        # Settings naming these topics, so each gets its role's configuration (the dead-letter
        # topic's larger max.message.bytes, which the consumer checks at start-up).
        run_settings = replace(self.settings, topic_raw=self.topic, topic_predictions=topics.predictions,
                               topic_deadletter=topics.deadletter, consumer_group=topics.group)  # fmt: skip
        admin = make_admin(run_settings, client_id="churn-harness-admin")
        try:
            ensure_topics(admin, run_settings, names)
        finally:
            admin.close()
        self.created += [n for n in names if n not in self.created]
        return topics

    def run(self, name: str, command: list[str], topics: RunTopics | None = None) -> dict[str, Any] | None:
        """Run one process to its end; its summary, or None (and a failure noted) when it failed."""
        topics = topics or self._topics(name)
        summary_path = self.run_dir / f"{name}.json"
        process = ManagedProcess(name, [*command, "--summary-json", str(summary_path)], self._env(topics),
                                 self.run_dir / f"{name}.log")  # fmt: skip
        code = process.wait(PROCESS_TIMEOUT_S)
        if code is None:
            code = process.stop()
            self.failures.append(f"{name} did not finish within {PROCESS_TIMEOUT_S:.0f} s")
        process.stop()
        summary = read_json(summary_path)
        if code != 0 or summary is None:
            self.failures.append(f"{name} exited with code {code}: {process.tail(3)}")
            return None
        return summary

    def fill(self, events: int) -> int:
        topics = self._topics("fill")
        command = script(PRODUCER, "--mode", Mode.BATCH, "--no-progress", *fill_arguments(events))
        command += ["--checkpoint-file", str(self.run_dir / "fill-checkpoint.json")]
        summary = self.run("fill", command, topics)
        return int(summary["acknowledged"]) if summary else 0

    def delete(self) -> None:
        admin = make_admin(self.settings, client_id="churn-harness-admin")
        try:
            delete_topics(admin, self.settings, self.created)
        finally:
            admin.close()


def _moved_all(summary: dict[str, Any] | None, events: int, name: str, backlog: Backlog) -> float | None:
    """Its events/s, if it moved the whole backlog (else the figure would flatter it)."""
    if summary is None:
        return None
    if summary.get("consumed") != events:
        backlog.failures.append(f"{name} consumed {summary.get('consumed')} of {events} events")
        return None
    return float(summary["events_per_sec"])


def run_backlog(settings: Settings, spec: SuiteSpec, run_dir: Path, consumer_args: tuple[str, ...]) -> dict[str, Any]:
    """The throughput figures (events/s per repeat) of the bare loop, our consumer and the seed-style one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    backlog = Backlog(settings, run_dir)
    rates: dict[str, dict[str, list[float | None]]] = {
        g: {Subject.BARE_LOOP: [], Subject.CONSUMER: []} for g in spec.guarantees
    }
    seed: list[float | None] = []
    try:
        events = backlog.fill(spec.backlog_events)
        logger.info("backlog %s: %d events", backlog.topic, events)
        for repeat in range(spec.repeats):
            for guarantee in spec.guarantees if repeat % 2 == 0 else spec.guarantees[::-1]:
                runs = _pair(spec, guarantee, events, repeat, consumer_args)
                for subject, name, command in runs if repeat % 2 == 0 else runs[::-1]:
                    rates[guarantee][subject].append(_moved_all(backlog.run(name, command), events, name, backlog))
            name = f"seed-{repeat}"
            command = script(SEED_CONSUMER, "--max-events", str(spec.seed_max_events))
            command += ["--max-seconds", f"{spec.seed_max_seconds:g}"]
            summary = backlog.run(name, command)
            seed.append(float(summary["events_per_sec"]) if summary and summary.get("consumed") else None)
    finally:
        backlog.delete()
    return {
        "events": events,
        # Plain str keys (not the enums): the JSON writer wants them.
        "runs": {str(g): {str(s): values for s, values in by.items()} for g, by in rates.items()} | {SEED: seed},
        "throughput": {str(g): {str(s): spread(values) for s, values in by.items()} for g, by in rates.items()},
        "seed": spread(seed),
        "failures": backlog.failures,
    }


def _pair(
    spec: SuiteSpec, guarantee: Guarantee, events: int, repeat: int, consumer_args: tuple[str, ...]
) -> list[tuple[Subject, str, list[str]]]:
    bare = script(BARE_LOOP, "--guarantee", guarantee, "--stop-after", str(events))
    ours = script(CONSUMER, "--mode", Mode.BATCH, "--guarantee", guarantee, "--window-size", str(events))
    ours += ["--log-interval", "0", *consumer_args]
    return [
        (Subject.BARE_LOOP, f"bare-{guarantee}-{repeat}", bare),
        (Subject.CONSUMER, f"consumer-{guarantee}-{repeat}", ours),
    ]

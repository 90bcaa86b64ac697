"""What a harness run is: its plan (mode, rate, consumers, goals) and its own topics and group."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from churnstream.contract.outputs import Guarantee, Mode
from churnstream.settings import (
    ENV_CONSUMER_GROUP,
    ENV_TOPIC_DEADLETTER,
    ENV_TOPIC_PREDICTIONS,
    ENV_TOPIC_RAW,
    Settings,
)

RUN_SUFFIX = "-run-"  # run topics and groups are "<name>-run-<id>" (localkafka.acl grants them by prefix)


class Subject(StrEnum):
    """What a run measures between the raw topic and the latency reader."""

    CONSUMER = "consumer"  # our consumer.py: the pipeline itself
    BARE_LOOP = "bare-loop"  # benchmarks/bare_loop.py: kafka-python consume->produce, no validation, no model
    QUIX = "quix"  # benchmarks/quix_loop.py: Quix Streams, one message at a time, the same model (in .run/quix)
    FLOOR = "floor"  # nothing: the latency reader reads the raw topic (the broker and client floor)

    @property
    def scores(self) -> bool:
        """It scores with the served model, so its probabilities can be recomputed offline (the sample check)."""
        return self in (Subject.CONSUMER, Subject.QUIX)


SUBJECT_TEXT = {
    Subject.CONSUMER: "our consumer",
    Subject.BARE_LOOP: "the bare loop",
    Subject.QUIX: "Quix Streams",
    Subject.FLOOR: "the floor (no consumer)",
}


@dataclass(frozen=True)
class RunPlan:
    mode: Mode = Mode.STREAMING
    events_per_sec: float = 100.0
    duration_s: float = 10.0
    consumers: int = 1
    inject_bad: int = 0
    guarantee: Guarantee = Guarantee.EXACTLY_ONCE
    limit: int | None = None
    repeat: int = 1
    seed: int = 42
    timeout_s: float = 60.0
    keep_topics: bool = False
    p99_goal_ms: float | None = None
    batch_goal_s: float | None = None
    consumer_args: tuple[str, ...] = ()
    # -X tuning options, passed on to both scripts; the rest of the connection (secrets included)
    # reaches every process of the run in its environment (processes.child_environment).
    connection_args: tuple[str, ...] = ()
    label: str = ""
    run_name: str | None = None  # fixed topic names "<topic>-<name>", wiped at the start and kept (the demo)
    subject: Subject = Subject.CONSUMER

    @property
    def processes(self) -> int:
        """How many consume->produce processes run (none for the floor)."""
        return 0 if self.subject == Subject.FLOOR else self.consumers

    def describe(self) -> str:
        if self.mode == Mode.STREAMING:
            text = f"streaming {self.events_per_sec:g} events/s for {self.duration_s:g} s"
        else:
            text = "batch, whole file" + (f" x{self.repeat}" if self.repeat > 1 else "")
            if self.limit:
                text += f", first {self.limit} rows"
        if self.subject == Subject.FLOOR:
            text += ", no consumer: the reader on the raw topic"
        elif self.subject == Subject.BARE_LOOP:
            text += f", {self.consumers} bare loop(s), {self.guarantee}"
        elif self.subject == Subject.QUIX:
            text += f", {self.consumers} Quix Streams application(s), {self.guarantee}"
        else:
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
        suffix = f"{RUN_SUFFIX}{run_id}"
        return cls(
            raw=settings.topic_raw + suffix,
            predictions=settings.topic_predictions + suffix,
            deadletter=settings.topic_deadletter + suffix,
            group=settings.consumer_group + suffix,
        )

    @classmethod
    def named(cls, settings: Settings, name: str) -> RunTopics:
        """A named run's topics, e.g. ``telco-churn-predictions-demo``: the same every time."""
        return cls(
            raw=f"{settings.topic_raw}-{name}",
            predictions=f"{settings.topic_predictions}-{name}",
            deadletter=f"{settings.topic_deadletter}-{name}",
            group=f"{settings.consumer_group}-{name}",
        )

    def all_topics(self) -> list[str]:
        return [self.raw, self.predictions, self.deadletter]

    def environment(self) -> dict[str, str]:
        return {
            ENV_TOPIC_RAW: self.raw,
            ENV_TOPIC_PREDICTIONS: self.predictions,
            ENV_TOPIC_DEADLETTER: self.deadletter,
            ENV_CONSUMER_GROUP: self.group,
        }

"""Test doubles for the consumer without a broker: a model, a consumer and a producer that record their calls.

They implement only what the loop and the sinks use, with kafka-python's own Future and
structs, so a change in how the consumer talks to its clients shows up here in milliseconds.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from kafka.errors import KafkaError
from kafka.future import Future
from kafka.structs import ConsumerGroupMetadata, MemberState, OffsetAndMetadata, TopicPartition

from churnstream.contract.events import Contract
from tests.helpers import telco_contract


class StubModel:
    """A model whose answers and failures the test decides. Counts its calls. It reads events of the
    Telco schema (or ``contract``), and hands ``answer`` and ``fails_on`` each row as a dict by name."""

    def __init__(
        self,
        answer: Any = None,
        fails_on: Any = None,
        threshold: float = 0.5,
        version: str = "stub-1",
        broken: bool = False,
        *,
        contract: Contract | None = None,
    ) -> None:
        self.answer = answer or (lambda rows: [0.25] * len(rows))
        self.fails_on = fails_on or (lambda row: False)
        self.threshold = threshold
        self.version = version
        self.broken = broken  # its canary rows fail too: the model itself is broken
        self.calls: list[int] = []
        self.canary_checks = 0
        self.contract = contract or telco_contract()

    def canary_problem(self) -> str | None:
        self.canary_checks += 1
        return "RuntimeError: the model's library is gone" if self.broken else None

    def predict_proba(self, rows: Sequence[tuple[Any, ...]]) -> Any:
        self.calls.append(len(rows))
        named = [dict(zip(self.contract.feature_names, row, strict=True)) for row in rows]
        for row in named:
            if self.fails_on(row):
                raise ValueError(f"cannot score tenure={row['tenure']}")
        return np.asarray(self.answer(named), dtype=float)


class FakeRecord:
    """What kafka-python's ConsumerRecord offers the loop."""

    def __init__(self, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None) -> None:
        self.topic, self.partition, self.offset, self.key, self.value = topic, partition, offset, key, value
        self.leader_epoch = 0
        self.headers: list[tuple[str, bytes]] = []
        self.timestamp = 0
        self.timestamp_type = 0


class _GroupMetadata:
    def __init__(self) -> None:
        self.state = MemberState.STABLE
        self.generation_id = 1
        self.member_id = "member-1"

    def snapshot(self) -> ConsumerGroupMetadata:
        return ConsumerGroupMetadata("group", self.generation_id, self.member_id, None, self.state)


class FakeConsumer:
    """Hands out scripted poll batches; records commits and seeks."""

    def __init__(
        self, batches: Sequence[dict[TopicPartition, list[FakeRecord]]], end_offsets: dict | None = None
    ) -> None:
        self.batches = list(batches)
        self.polls = 0
        self.commits: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.metadata = _GroupMetadata()
        self._assignment = {tp for batch in batches for tp in batch}
        self._positions: dict[TopicPartition, int] = {tp: 0 for tp in self._assignment}
        self._end_offsets = end_offsets or {}
        self.calls: list[str] = []
        self.positions_unknown = False

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict[TopicPartition, list[FakeRecord]]:
        self.polls += 1
        if not self.batches:
            return {}
        batch = self.batches.pop(0)
        for tp, records in batch.items():
            if records:
                self._positions[tp] = records[-1].offset + 1
        return batch

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        self.calls.append("commit")
        self.commits.append(dict(offsets))

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self._positions[tp] = offset

    def assignment(self) -> set[TopicPartition]:
        return set(self._assignment)

    def position(self, tp: TopicPartition, timeout_ms: int | None = None) -> int | None:
        if self.positions_unknown:  # kafka-python answers None when it cannot learn it within timeout_ms
            return None
        return self._positions.get(tp, 0)

    def end_offsets(self, partitions: Sequence[TopicPartition], timeout_ms: int | None = None) -> dict:
        return {tp: self._end_offsets.get(tp, 0) for tp in partitions}

    def group_metadata(self) -> ConsumerGroupMetadata:
        return self.metadata.snapshot()


class FakeProducer:
    """Acknowledges (or fails) every send at flush; records the order of its calls."""

    def __init__(self, fail_topics: Sequence[str] = (), commit_error: BaseException | None = None) -> None:
        self.fail_topics = set(fail_topics)
        self.commit_error = commit_error
        self.sent: list[tuple[str, bytes | None, bytes | None, Any]] = []
        self.calls: list[str] = []
        self._pending: list[tuple[str, Future]] = []
        self.offsets_sent: list[dict[TopicPartition, OffsetAndMetadata]] = []
        self.memberships: list[Any] = []
        self.commit_blocks = False  # commit_transaction waits for good, as kafka-python's can

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None, headers: Any = None) -> Future:
        self.sent.append((topic, key, value, headers))
        future = Future()
        self._pending.append((topic, future))
        return future

    def flush(self, timeout: float | None = None) -> None:
        self.calls.append("flush")
        for topic, future in self._pending:
            if topic in self.fail_topics:
                future.failure(KafkaError(f"{topic} refused the record"))
            else:
                future.success(None)
        self._pending = []

    def init_transactions(self) -> None:
        self.calls.append("init")

    def begin_transaction(self) -> None:
        self.calls.append("begin")

    def send_offsets_to_transaction(self, offsets: dict, group_metadata: Any) -> None:
        self.calls.append("offsets")
        self.offsets_sent.append(dict(offsets))
        self.memberships.append(group_metadata)

    def commit_transaction(self) -> None:
        if self.commit_blocks:
            threading.Event().wait()
        if self.commit_error is not None:
            raise self.commit_error
        self.calls.append("commit")

    def abort_transaction(self) -> None:
        self.calls.append("abort")

    def close(self, timeout: float | None = None) -> None:
        self.calls.append("close")


# --------------------------------------------------------------------- models that misbehave on cue
# Pickled into a model file by write_wrapped_model, so a real consumer subprocess loads them; their
# class lives here, importable from the project root (the consumer runs with it as its folder).


class FlaggedPipeline:
    """The real scikit-learn pipeline, until the file named by ``flag_env`` exists."""

    def __init__(self, pipeline: Any, flag_env: str) -> None:
        self.pipeline = pipeline
        self.flag_env = flag_env

    def flagged(self) -> bool:
        flag = os.environ.get(self.flag_env)
        return bool(flag) and Path(flag).exists()

    def predict_proba(self, frame: Any) -> Any:
        return self.pipeline.predict_proba(frame)


class BreaksOnFlag(FlaggedPipeline):
    """Raises on every call once flagged, canary rows included: a model that broke in production."""

    def predict_proba(self, frame: Any) -> Any:
        if self.flagged():
            raise RuntimeError("the model's native library is gone")
        return self.pipeline.predict_proba(frame)


class SlowOnFlag(FlaggedPipeline):
    """Sleeps ``delay_s`` once when flagged (and removes the flag): a batch that takes long to score."""

    def __init__(self, pipeline: Any, flag_env: str, delay_s: float) -> None:
        super().__init__(pipeline, flag_env)
        self.delay_s = delay_s

    def predict_proba(self, frame: Any) -> Any:
        if self.flagged():
            Path(os.environ[self.flag_env]).unlink()
            time.sleep(self.delay_s)
        return self.pipeline.predict_proba(frame)


def write_wrapped_model(folder: Path, wrap: Callable[[Any], Any]) -> Path:
    """The trained model wrapped by ``wrap``, written with a card that passes every load check."""
    import joblib  # noqa: PLC0415 - scikit-learn's import is slow: only the tests that need it pay

    from tests.helpers import current_card_path, current_model_path  # noqa: PLC0415

    card = json.loads(current_card_path().read_text())
    folder.mkdir(parents=True, exist_ok=True)
    model_path = folder / "model.pkl"
    joblib.dump(wrap(joblib.load(current_model_path())), model_path)
    card["model_sha256"] = hashlib.sha256(model_path.read_bytes()).hexdigest()
    card["model_version"] = "wrapped-" + card["model_sha256"][:12]
    card["reasons"] = {"method": None, "about": "a wrapped model is not the project's linear kind: no reasons"}
    (folder / "model_card.json").write_text(json.dumps(card))
    return model_path

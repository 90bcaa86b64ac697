"""What the harness reads: the outputs as they become readable, and the raw topic to account for.

The outputs are read by the latency reader, a process of its own (``latency_reader``) that only
timestamps records on receipt and stores their bytes. :class:`LatencyReader` is the harness's
handle on it: it starts the process, follows its file, and decodes what it received
(:func:`decode_outcomes`, through ``contract.outputs``) only after the timestamps are taken.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from churnstream.consumer.scoring import RawRecord
from churnstream.contract.outputs import DeadLetterInfo, MalformedOutput, Stage, decode_prediction
from churnstream.errors import PipelineError
from churnstream.harness.analysis import ObservedDeadLetter, ObservedPrediction
from churnstream.harness.latency_reader import DEFAULT_FETCH_MAX_WAIT_MS, DEFAULT_MAX_POLL_RECORDS, ready_path
from churnstream.harness.plan import RunTopics
from churnstream.harness.processes import ManagedProcess, child_environment, script
from churnstream.harness.receipts import Receipt, ReceiptFile
from churnstream.kafka.reading import read_to_end
from churnstream.settings import Settings

LATENCY_READER = "churnstream.harness.latency_reader"
READY_TIMEOUT_S = 30.0


@dataclass
class Outcomes:
    """What the reader received on the prediction and dead-letter topics, decoded."""

    predictions: list[ObservedPrediction] = field(default_factory=list)
    dead_letters: list[ObservedDeadLetter] = field(default_factory=list)
    malformed: int = 0
    shadow_dead_letters: int = 0  # a challenger's failures: the event has its prediction too, not counted


def decode_outcomes(receipts: Sequence[Receipt], predictions_index: int = 0) -> Outcomes:
    """Receipts from the output topics -> predictions and dead letters (MalformedOutput is counted)."""
    outcomes = Outcomes()
    for receipt in receipts:
        try:
            if receipt.topic_index == predictions_index:
                prediction = decode_prediction(receipt.value)
                outcomes.predictions.append(ObservedPrediction(prediction, receipt.received_ms))
            else:
                info = DeadLetterInfo.from_headers(receipt.headers)
                if info.stage == Stage.SHADOW:
                    outcomes.shadow_dead_letters += 1
                    continue
                outcomes.dead_letters.append(ObservedDeadLetter(info, receipt.key, receipt.value, receipt.received_ms))
        except MalformedOutput:
            outcomes.malformed += 1
    return outcomes


class LatencyReader:
    """The latency reader process on ``topics``, and what it has received so far."""

    def __init__(
        self,
        topics: Sequence[str],
        env: dict[str, str],
        run_dir: Path,
        *,
        fetch_max_wait_ms: int = DEFAULT_FETCH_MAX_WAIT_MS,
        max_poll_records: int = DEFAULT_MAX_POLL_RECORDS,
    ) -> None:
        self.topics = list(topics)
        self.path = run_dir / "receipts.bin"
        self._command = script(LATENCY_READER, *[arg for t in self.topics for arg in ("--topic", t)])
        self._command += ["--out", str(self.path), "--fetch-max-wait-ms", str(fetch_max_wait_ms)]
        self._command += ["--max-poll-records", str(max_poll_records)]
        self._env = env
        self._log = run_dir / "latency-reader.log"
        self._file = ReceiptFile(str(self.path))
        self.receipts: list[Receipt] = []
        self.process: ManagedProcess | None = None
        self.error: str | None = None

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Start it and wait until its partitions are positioned: nothing is produced before that."""
        self.process = ManagedProcess("latency-reader", self._command, self._env, self._log)
        deadline = time.monotonic() + timeout_s
        while not ready_path(self.path).exists():
            code = self.process.poll()
            if code is not None:
                raise PipelineError(f"the latency reader exited with code {code}: {self.process.tail(5)}")
            if time.monotonic() > deadline:
                self.process.stop(timeout=5)
                tail = self.process.tail(5)
                raise PipelineError(f"the latency reader was not ready within {timeout_s:.0f} s: {tail}")
            time.sleep(0.05)

    def refresh(self) -> int:
        """Take in what the reader wrote since the last call; returns how many records it has received."""
        self.receipts += self._file.read_new()
        if self.error is None and self.process is not None and self.process.poll() not in (None, 0):
            self.error = f"the latency reader exited with code {self.process.poll()}: {self.process.tail(5)}"
        return len(self.receipts)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def stop(self) -> None:
        """SIGTERM: it writes what it holds and exits; then read the rest of its file."""
        if self.process is None:
            return
        code = self.process.stop(timeout=10)
        self.refresh()
        if code != 0 and self.error is None:
            self.error = f"the latency reader exited with code {code}: {self.process.tail(5)}"


class OutcomeReader:
    """The outputs of a pipeline as the latency reader process receives them, decoded as they come.

    For code that follows a run live (the fault and cluster tests): ``predictions``,
    ``dead_letters`` and ``outcomes`` take in what the process has written each time they are read.
    """

    def __init__(self, settings: Settings, topics: RunTopics, run_dir: Path | None = None) -> None:
        self._tmp = None if run_dir is not None else tempfile.TemporaryDirectory(prefix="churn-reader-")
        folder = run_dir if run_dir is not None else Path(self._tmp.name)  # type: ignore[union-attr]
        self._reader = LatencyReader([topics.predictions, topics.deadletter], child_environment(settings), folder)
        self._decoded = Outcomes()
        self._taken = 0

    def start_reading(self) -> None:
        self._reader.start()

    def _update(self) -> Outcomes:
        self._reader.refresh()
        fresh = self._reader.receipts[self._taken :]
        if fresh:
            decoded = decode_outcomes(fresh)
            self._decoded.predictions += decoded.predictions
            self._decoded.dead_letters += decoded.dead_letters
            self._decoded.malformed += decoded.malformed
            self._taken += len(fresh)
        return self._decoded

    @property
    def predictions(self) -> list[ObservedPrediction]:
        return self._update().predictions

    @property
    def dead_letters(self) -> list[ObservedDeadLetter]:
        return self._update().dead_letters

    @property
    def malformed_outputs(self) -> int:
        return self._update().malformed

    @property
    def outcomes(self) -> int:
        decoded = self._update()
        return len(decoded.predictions) + len(decoded.dead_letters)

    @property
    def error(self) -> str | None:
        self._reader.refresh()
        return self._reader.error

    def is_alive(self) -> bool:
        process = self._reader.process
        return process is not None and process.poll() is None

    def stop(self) -> None:
        self._reader.stop()
        self._update()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


def read_topic(settings: Settings, topic: str) -> list[RawRecord]:
    """Every record of a topic, from the beginning to the end offsets seen now."""
    return [
        RawRecord(r.topic, r.partition, r.offset, r.key, r.value, r.timestamp)
        for r in read_to_end(
            settings, topic, client_id="churn-harness-raw", committed_only=False, max_poll_records=10000
        )
    ]

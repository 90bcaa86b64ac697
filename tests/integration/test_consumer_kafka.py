"""consumer.py as a real subprocess against the real broker: outputs, dead letters, crashes, scale-out.

Input events are produced here with the project's event contract (not with producer.py), and
outputs are read back with this test's own consumers: ``read_committed`` for what a downstream
reader would see, ``read_uncommitted`` where the test wants to see aborted writes too.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest
from kafka.admin import NewTopic

from churnstream.contract.events import encode_event, utc_now_iso
from churnstream.contract.outputs import (
    DEADLETTER_HEADERS,
    PREDICTION_NO,
    PREDICTION_YES,
    DeadLetterInfo,
    Prediction,
    Stage,
    decode_prediction,
)
from churnstream.errors import EXIT_CONFIG, EXIT_MODEL_INTEGRITY, EXIT_MODEL_MISSING, EXIT_TOPIC
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.reading import read_all as read_topic_to_end
from churnstream.kafka.topics import ensure_topics
from churnstream.ml.dataset import load_rows
from churnstream.ml.features import features_frame
from churnstream.ml.model import load_model
from churnstream.settings import Settings, settings_from
from tests.helpers import (
    current_card_path,
    current_model_path,
    free_port,
    http_get,
    make_rows,
    run_script,
    start_script,
    telco_contract,
    telco_event,
    wait_until,
)

pytestmark = pytest.mark.integration

ASSIGNED_RE = re.compile(r"partitions assigned: (.*)$", re.MULTILINE)


# --------------------------------------------------------------------- helpers


def create_raw_topic(settings: Settings) -> None:
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw])
    finally:
        admin.close()


def produce(
    settings: Settings, records: Iterable[tuple[bytes | None, bytes | None]], partition: int | None = None
) -> None:
    producer = make_producer(settings, client_id="test-input", max_request_size=1_048_576)
    try:
        futures = [
            producer.send(settings.topic_raw, key=key, value=value, partition=partition) for key, value in records
        ]
        producer.flush(timeout=60)
        assert all(future.succeeded() for future in futures)
    finally:
        producer.close()


def real_events(real_data_path: Path, prefix: str) -> list[dict[str, Any]]:
    stamp = utc_now_iso()
    return [
        telco_event(row, event_id=f"{prefix}-{index}", event_ts=stamp)
        for index, row in enumerate(load_rows(real_data_path))
    ]


def as_records(events: list[dict[str, Any]]) -> list[tuple[bytes | None, bytes | None]]:
    return [(event["customerID"].encode(), encode_event(event)) for event in events]


def read_all(settings: Settings, topic: str, committed: bool = True, timeout_s: float = 60) -> list[Any]:
    """Every record of ``topic`` up to its end offsets (the last stable offsets for read_committed)."""
    return read_topic_to_end(settings, topic, committed_only=committed, timeout_s=timeout_s)


def predictions(settings: Settings, committed: bool = True) -> list[Prediction]:
    return [decode_prediction(record.value) for record in read_all(settings, settings.topic_predictions, committed)]


def wait_for_log(path: Path, pattern: re.Pattern[str], process: subprocess.Popen[str], timeout_s: float = 60) -> Any:
    """The last match of ``pattern`` in the consumer's stderr file, once one appears."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, f"consumer exited early ({process.returncode}): {path.read_text()[-2000:]}"
        matches = list(pattern.finditer(path.read_text())) if path.exists() else []
        if matches:
            return matches[-1]
        time.sleep(0.02)
    raise AssertionError(f"{pattern.pattern!r} did not appear in {path} within {timeout_s} s")


def start_consumer(env: dict[str, str], args: list[str], log: Path) -> subprocess.Popen[str]:
    return start_script("consumer.py", args, env=env, stdout=subprocess.PIPE, stderr=log.open("w"))


def stop(process: subprocess.Popen[str], sig: int = signal.SIGTERM, timeout_s: float = 60) -> str:
    """Signal the consumer and return its stdout; kill it if it does not stop in time."""
    try:
        if process.poll() is None:
            process.send_signal(sig)
        stdout, _ = process.communicate(timeout=timeout_s)
        return stdout or ""
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def summary_of(path: Path) -> dict[str, Any]:
    return orjson.loads(path.read_bytes())


# --------------------------------------------------------------------- the real data


def test_7043_real_events_in_7043_predictions_out_equal_to_offline(
    pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path
) -> None:
    settings = settings_from(pipeline_env)
    create_raw_topic(settings)
    events = real_events(real_data_path, "real")
    produce(settings, as_records(events))

    summary_file = tmp_path / "summary.json"
    args = ["--mode", "batch", "--window-size", "2000", "--summary-json", str(summary_file)]
    result = run_script("consumer.py", args, env=pipeline_env, timeout=170)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert [line.split(":")[0] for line in lines] == ["window 1", "window 2", "window 3", "window 4", "summary"]
    assert "events=1043 " in lines[3]
    summary = summary_of(summary_file)
    assert (summary["consumed"], summary["scored"], summary["dead_lettered"]) == (7043, 7043, 0)
    assert summary["guarantee"] == "exactly-once" and summary["transactions_aborted"] == 0
    assert [w["events"] for w in summary["windows"]] == [2000, 2000, 2000, 1043]
    assert set(summary) >= {
        "mode", "guarantee", "consumed", "scored", "dead_lettered", "batches", "elapsed_s", "events_per_sec",
        "mean_churn_probability", "churn_rate", "transactions_aborted", "model_version", "windows",
    }  # fmt: skip
    assert summary["model_version"] == load_model(current_model_path()).version

    records = read_all(settings, settings.topic_predictions)
    assert len(records) == 7043
    by_id = {}
    for record in records:
        payload = decode_prediction(record.value)
        assert record.key == payload.key.encode()
        by_id[payload.event_id] = payload
    assert set(by_id) == {event["event_id"] for event in events}

    model = load_model(current_model_path())
    features = [telco_contract().decode(encode_event(event)).features for event in events]
    offline = model.pipeline.predict_proba(features_frame(model.schema, features))[:, 1]
    online = [by_id[event["event_id"]].churn_probability for event in events]
    differences = [abs(a - b) for a, b in zip(online, offline.tolist(), strict=True)]
    # Equal up to the last bit or two: the consumer scores in batches of up to 2,000 and the
    # summation order inside the matrix product depends on the batch size (measured: <= 2.3e-16).
    assert max(differences) <= 1e-12
    for payload, probability in zip((by_id[e["event_id"]] for e in events), offline, strict=True):
        assert payload.prediction == (PREDICTION_YES if probability >= model.threshold else PREDICTION_NO)
    churn_rate = sum(p.prediction == PREDICTION_YES for p in by_id.values()) / 7043
    assert summary["churn_rate"] == pytest.approx(churn_rate, abs=1e-6)
    assert read_all(settings, settings.topic_deadletter) == []


# --------------------------------------------------------------------- good and bad together


def test_a_mixed_batch_gives_each_record_one_outcome_and_dead_letters_keep_the_bytes(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    settings = settings_from(pipeline_env)
    create_raw_topic(settings)
    good = [telco_event(row, event_id=f"good-{i}", event_ts=utc_now_iso()) for i, row in enumerate(make_rows(30))]
    unknown_category = {**good[0], "event_id": "bad-category", "Contract": "Three year"}
    senior_two = {**good[1], "event_id": "bad-senior", "SeniorCitizen": 2}
    missing_field = {k: v for k, v in good[2].items() if k != "tenure"} | {"event_id": "bad-missing"}
    bad: list[tuple[bytes | None, bytes | None]] = [
        (b"tombstone", None),
        (b"empty", b""),
        (None, b"not json at all"),
        (b"utf8", b'{"customerID": "\xff\xfe"}'),
        (b"array", b"[1, 2, 3]"),
        (b"nested", b"[" * 3000 + b"]" * 3000),
        (b"oversized", b'{"pad": "' + b"x" * 70_000 + b'"}'),
        (b"nearly-1mb", os.urandom(1_000_000)),  # incompressible, near the raw topic's limit
        (b"category", encode_event(unknown_category)),
        (b"senior", encode_event(senior_two)),
        (b"missing", encode_event(missing_field)),
    ]
    records = as_records(good[:15]) + bad + as_records(good[15:])
    produce(settings, records, partition=0)  # one partition: one poll batch holds good and bad alike

    summary_file = tmp_path / "summary.json"
    result = run_script("consumer.py", ["--mode", "batch", "--summary-json", str(summary_file)], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    summary = summary_of(summary_file)
    assert (summary["consumed"], summary["scored"], summary["dead_lettered"]) == (41, 30, 11)
    assert summary["dead_lettered_by_stage"] == {"decode": 8, "validate": 3}

    raw = {(r.partition, r.offset): r for r in read_all(settings, settings.topic_raw)}
    outcomes: Counter[tuple[int, int]] = Counter()
    for payload in predictions(settings):
        outcomes[payload.source] += 1
        assert payload.event_id.startswith("good-")
    dead_letters = read_all(settings, settings.topic_deadletter)
    for dead in dead_letters:
        assert [name for name, _ in dead.headers][: len(DEADLETTER_HEADERS)] == list(DEADLETTER_HEADERS)
        info = DeadLetterInfo.from_headers(dead.headers)
        assert info.source_topic == settings.topic_raw
        outcomes[info.source] += 1
        original = raw[info.source]
        assert (dead.key, dead.value) == (original.key, original.value)  # byte for byte, None stays None
        assert info.stage in {Stage.DECODE, Stage.VALIDATE} and info.reason
    assert outcomes == Counter(dict.fromkeys(raw, 1))  # every raw record: exactly one outcome
    reasons = {dead.key: DeadLetterInfo.from_headers(dead.headers).reason for dead in dead_letters}
    assert "tombstone" in reasons[b"tombstone"]
    assert "Contract" in reasons[b"category"] and "SeniorCitizen" in reasons[b"senior"]
    assert "tenure" in reasons[b"missing"] and "over the limit" in reasons[b"nearly-1mb"]


# --------------------------------------------------------------------- scale-out


def _assigned(match: Any) -> set[str]:
    text = match.group(1).strip()
    return set() if text == "none" else {part.strip() for part in text.split(",")}


def wait_for_split(logs: list[Path], processes: list[subprocess.Popen[str]], timeout_s: float = 60) -> list[set[str]]:
    """Until the members' latest assignments are disjoint, non-empty and cover the six partitions."""
    deadline = time.monotonic() + timeout_s
    while True:
        assignments = [_assigned(wait_for_log(log, ASSIGNED_RE, p)) for log, p in zip(logs, processes, strict=True)]
        union = set().union(*assignments)
        if all(assignments) and sum(map(len, assignments)) == len(union) == 6:
            return assignments
        assert time.monotonic() < deadline, f"the group never split the partitions: {assignments}"
        time.sleep(0.1)


def wait_for_predictions(settings: Settings, expected: set[str], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = {p.event_id for p in predictions(settings)}
        if seen >= expected:
            return
        assert time.monotonic() < deadline, f"only {len(seen & expected)} of {len(expected)} predictions arrived"
        time.sleep(0.5)


def test_two_consumers_in_one_group_split_the_work_and_lose_nothing(
    pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path
) -> None:
    settings = settings_from(pipeline_env)
    create_raw_topic(settings)
    logs = [tmp_path / "c0.log", tmp_path / "c1.log"]
    summaries = [tmp_path / "c0.json", tmp_path / "c1.json"]
    processes = [
        start_consumer(pipeline_env, ["--mode", "streaming", "--log-interval", "0.05", "--summary-json", str(s)], log)
        for log, s in zip(logs, summaries, strict=True)
    ]
    outputs: dict[int, str] = {}
    try:
        wait_for_split(logs, processes)
        first_load = real_events(real_data_path, "split")
        produce(settings, as_records(first_load))
        wait_for_predictions(settings, {event["event_id"] for event in first_load})

        # A clean stop leaves the group at once (static members otherwise linger for the
        # session timeout, 15 s): the survivor must own all six partitions well before that.
        stopped_at = time.monotonic()
        outputs[0] = stop(processes[0])
        while len(_assigned(wait_for_log(logs[1], ASSIGNED_RE, processes[1]))) < 6:
            assert time.monotonic() - stopped_at < 10, "the survivor did not take over the partitions"
            time.sleep(0.1)
        second_load = real_events(real_data_path, "after-stop")[:1000]
        produce(settings, as_records(second_load))
        wait_for_predictions(settings, {event["event_id"] for event in second_load})
    finally:
        for index, process in enumerate(processes):
            if index not in outputs:
                outputs[index] = stop(process)
    assert [process.returncode for process in processes] == [0, 0], [log.read_text()[-2000:] for log in logs]
    assert all("summary:" in output for output in outputs.values())

    stopped = [summary_of(path) for path in summaries]
    assert [s["stopped_by"] for s in stopped] == ["SIGTERM", "SIGTERM"]
    consumed = [s["consumed"] for s in stopped]
    assert consumed[0] > 0 and consumed[1] > 1000, consumed  # both did part of the work
    assert sum(consumed) == 7043 + 1000
    final = Counter(p.event_id for p in predictions(settings))
    expected = {event["event_id"] for event in first_load + second_load}
    assert set(final) == expected and sum(final.values()) == len(expected)  # each exactly once


# --------------------------------------------------------------------- start-up errors


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("Error: ")
    assert result.stdout == ""
    return lines[0]


def test_a_missing_model_is_one_line_and_exit_5(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    env = {**pipeline_env, "MODEL_PATH": str(tmp_path / "nope.pkl")}
    result = run_script("consumer.py", ["--mode", "batch"], env=env)
    assert result.returncode == EXIT_MODEL_MISSING
    assert "make model" in _one_error_line(result)


def test_an_altered_model_is_one_line_and_exit_6(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    model = tmp_path / "sklearn_pipeline.pkl"
    shutil.copy(current_model_path(), model)
    shutil.copy(current_card_path(), tmp_path / "model_card.json")
    with model.open("ab") as handle:
        handle.write(b"\x00")
    result = run_script("consumer.py", ["--mode", "batch"], env={**pipeline_env, "MODEL_PATH": str(model)})
    assert result.returncode == EXIT_MODEL_INTEGRITY
    assert "sha256" in _one_error_line(result)


def test_an_input_topic_that_never_comes_is_one_line_and_exit_7_after_the_wait(pipeline_env: dict[str, str]) -> None:
    """Before: exit 7 at once. Now it waits CONSUMER_WAIT_FOR_TOPIC_S (2 s here) first, saying so once."""
    started = time.monotonic()
    env = {**pipeline_env, "CONSUMER_WAIT_FOR_TOPIC_S": "2"}
    result = run_script("consumer.py", ["--mode", "batch", "--log-format", "json"], env=env)
    assert result.returncode == EXIT_TOPIC
    assert time.monotonic() - started >= 2
    lines = result.stderr.strip().splitlines()
    waiting = [orjson.loads(line)["message"] for line in lines[:-1] if "do not exist yet" in line]
    raw, bootstrap = pipeline_env["KAFKA_TOPIC_RAW"], pipeline_env["KAFKA_BOOTSTRAP_SERVERS"]
    assert waiting == [f"topic(s) {raw} do not exist yet on {bootstrap}; waiting up to 2 s for them to be created"]
    assert lines[-1].startswith("Error: topic(s) " + pipeline_env["KAFKA_TOPIC_RAW"])


def test_a_consumer_started_before_its_topic_waits_then_scores(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    """Services in any order: the consumer first (not ready, and saying why), then the topic and
    its events; it scores them. Before: exit 7 at once."""
    settings = settings_from(pipeline_env)
    port = free_port()
    args = ["--mode", "streaming", "--metrics-port", str(port), "--wait-for-topic", "60"]
    process = start_consumer(pipeline_env, args, tmp_path / "consumer.log")
    try:
        wanted = (503, f"waiting for topic {settings.topic_raw} to be created\n")
        wait_until(lambda: http_get(f"http://127.0.0.1:{port}/readyz") == wanted, 60, "/readyz to say it waits")
        assert process.poll() is None
        create_raw_topic(settings)
        events = [telco_event(row, event_id=f"late-{i}", event_ts=utc_now_iso()) for i, row in enumerate(make_rows(20))]
        produce(settings, as_records(events))
        wait_until(lambda: len(predictions(settings)) == len(events), 60, "the events to be scored")
        assert http_get(f"http://127.0.0.1:{port}/readyz") == (200, "ok\n")
    finally:
        stop(process)
    assert process.returncode == 0, (tmp_path / "consumer.log").read_text()[-2000:]


@pytest.mark.parametrize(
    ("raw_bytes", "dead_bytes"),
    [(None, None), ("3145728", None)],  # a dead-letter topic at the broker's 1 MB; a raw topic over 2 MB
    ids=["dead-letter-topic-at-the-broker-default", "raw-topic-larger-than-the-dead-letter-topic"],
)
def test_a_dead_letter_topic_too_small_for_the_raw_topic_is_refused_at_start(
    pipeline_env: dict[str, str], pipeline_settings: Settings, raw_bytes: str | None, dead_bytes: str | None
) -> None:
    """Before: a warning, then the first raw record too large to dead-letter aborted its batch five
    times, stopped the consumer, and stopped every restart on the same record."""
    settings = pipeline_settings
    raw = NewTopic(settings.topic_raw, 6, 1, topic_configs={"max.message.bytes": raw_bytes} if raw_bytes else None)
    admin = make_admin(settings)
    try:
        admin.create_topics([raw], wait_for_metadata=True)
        if raw_bytes is None:  # the dead-letter topic made by someone else, with the broker's default
            admin.create_topics([NewTopic(settings.topic_deadletter, 6, 1)], wait_for_metadata=True)
    finally:
        admin.close()
    result = run_script("consumer.py", ["--mode", "batch", "-q"], env=pipeline_env)
    line = _one_error_line(result)
    assert result.returncode == EXIT_CONFIG
    assert f"dead-letter topic {settings.topic_deadletter} takes records up to" in line
    assert f"--entity-name {settings.topic_deadletter} --add-config max.message.bytes=" in line

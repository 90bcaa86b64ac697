"""producer.py as a real subprocess against the real broker: what lands on the topic, and how it fails."""

from __future__ import annotations

import csv
import json
import re
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaAdminClient, TopicPartition
from kafka.admin import NewTopic

from benchmarks import bench_producer
from churnstream.contract.events import encode_event, parse_object
from churnstream.errors import EXIT_BROKER, EXIT_CHECKPOINT, EXIT_DATA
from churnstream.files import sha256_file
from churnstream.kafka.clients import make_consumer
from churnstream.producer.checkpoint import Checkpoint, read_checkpoint, write_checkpoint
from churnstream.settings import settings_from
from tests.helpers import (
    checkpoint_path,
    free_port,
    make_rows,
    run_script,
    start_script,
    telco_contract,
    wait_for_progress,
    write_csv,
)

pytestmark = pytest.mark.integration

TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def read_topic(env: dict[str, str], timeout_s: float = 60) -> list[tuple[bytes, dict[str, Any]]]:
    """Every committed record on the raw topic, read up to the end offsets seen at the start."""
    settings = settings_from(env)
    consumer = make_consumer(
        settings,
        group_id=settings.consumer_group,
        isolation_level="read_committed",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        partitions = [TopicPartition(settings.topic_raw, p) for p in consumer.partitions_for_topic(settings.topic_raw)]
        consumer.assign(partitions)
        consumer.seek_to_beginning(*partitions)
        end = consumer.end_offsets(partitions)
        records: list[tuple[bytes, dict[str, Any]]] = []
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end[tp] for tp in partitions):
            assert time.monotonic() < deadline, "timed out reading the topic back"
            for batch in consumer.poll(timeout_ms=500, max_records=5000).values():
                records.extend((r.key, parse_object(r.value)) for r in batch)
        return records
    finally:
        consumer.close()


def summary_of(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stderr.strip().splitlines()


def test_streaming_sends_the_requested_count_at_the_requested_rate(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    summary_file = tmp_path / "summary.json"
    args = ["--mode", "streaming", "--events-per-sec", "200", "--duration", "3", "--seed", "7"]
    result = run_script("producer.py", [*args, "--summary-json", str(summary_file)], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    summary = summary_of(summary_file)
    assert (summary["sent"], summary["acknowledged"], summary["failed"]) == (600, 600, 0)
    assert 180 <= summary["achieved_rate"] <= 205  # generous: a shared machine; the benchmark measures ±2 %
    assert summary["mode"] == "streaming" and summary["requested_rate"] == 200 and summary["seed"] == 7
    assert "  achieved rate" in result.stdout and "  sent             600" in result.stdout

    records = read_topic(pipeline_env)
    assert len(records) == 600
    ids = [event["event_id"] for _, event in records]
    assert len(set(ids)) == 600
    assert set(ids) == {f"{summary['run_id']}-{i}" for i in range(600)}
    for key, event in records:
        assert key == event["customerID"].encode()
        telco_contract().decode(encode_event(event))


def test_batch_sends_each_of_the_7043_rows_once_with_keys_and_types(
    pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path, admin: KafkaAdminClient
) -> None:
    summary_file = tmp_path / "summary.json"
    result = run_script("producer.py", ["--mode", "batch", "--summary-json", str(summary_file)], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    summary = summary_of(summary_file)
    assert (summary["sent"], summary["acknowledged"], summary["failed"], summary["skipped_rows"]) == (7043, 7043, 0, 0)
    assert summary["requested_rate"] is None and summary["achieved_rate"] > 0
    assert "  sent             7,043" in result.stdout
    assert "\r" not in result.stderr  # stderr is not a terminal here: no progress bar

    topic = pipeline_env["KAFKA_TOPIC_RAW"]
    assert len(admin.describe_topics([topic])[0]["partitions"]) == 6

    with real_data_path.open(newline="") as handle:
        customer_ids = [row["customerID"] for row in csv.DictReader(handle)]
    records = read_topic(pipeline_env)
    assert len(records) == 7043
    assert sorted(key.decode() for key, _ in records) == sorted(customer_ids)
    load_id = summary["load_id"]
    by_id = {event["event_id"]: event for _, event in records}
    assert set(by_id) == {f"{load_id}-0-{i}" for i in range(7043)}
    assert by_id[f"{load_id}-0-0"]["customerID"] == customer_ids[0]
    blanks = 0
    for key, event in records:
        assert key == event["customerID"].encode()
        assert list(event) == ["customerID", *telco_contract().feature_names, "event_ts", "event_id"]  # no Churn
        assert event["SeniorCitizen"] in (0, 1) and type(event["SeniorCitizen"]) is int
        assert type(event["tenure"]) is int and type(event["MonthlyCharges"]) is float
        assert event["TotalCharges"] is None or type(event["TotalCharges"]) is float
        blanks += event["TotalCharges"] is None
        assert TS_RE.match(event["event_ts"])
    assert blanks == 11  # the real data's blank TotalCharges, sent as null

    checkpoint = read_checkpoint(checkpoint_path(pipeline_env))
    assert checkpoint is not None and checkpoint.completed and checkpoint.next_row == 7043
    assert checkpoint.load_id == load_id


def test_kill_9_mid_batch_then_resume_leaves_no_row_missing(
    pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path
) -> None:
    repeat, chunk = 6, 500
    total = 7043 * repeat
    path = checkpoint_path(pipeline_env)
    args = ["--mode", "batch", "--repeat", str(repeat), "--batch-size", str(chunk), "--no-progress", "-q"]
    process = start_script("producer.py", args, env=pipeline_env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_progress(path, 3 * chunk, process)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=30)
    assert process.returncode == -signal.SIGKILL
    at_kill = read_checkpoint(path)
    assert at_kill is not None and not at_kill.completed, "the load finished before the kill: make it longer"

    refused = run_script("producer.py", ["--mode", "batch"], env=pipeline_env)
    assert refused.returncode == EXIT_CHECKPOINT
    assert "--resume" in refused.stderr and "--restart" in refused.stderr

    summary_file = tmp_path / "resume.json"
    result = run_script(
        "producer.py", ["--mode", "batch", "--resume", "--summary-json", str(summary_file)], env=pipeline_env
    )
    assert result.returncode == 0, result.stderr
    summary = summary_of(summary_file)
    assert summary["load_id"] == at_kill.load_id
    assert summary["resumed_from_row"] == at_kill.next_row
    assert summary["sent"] == total - at_kill.next_row

    ids = Counter(event["event_id"] for _, event in read_topic(pipeline_env))
    expected = {f"{at_kill.load_id}-{p}-{i}" for p in range(repeat) for i in range(7043)}
    assert expected - set(ids) == set()  # every row of every pass is on the topic
    assert set(ids) == expected
    resent = sum(ids.values()) - total
    assert 0 <= resent <= chunk  # re-sent at most one chunk
    for event_id, count in ids.items():
        if count > 1:
            _, p, i = event_id.rsplit("-", 2)
            assert at_kill.next_row <= int(p) * 7043 + int(i) < at_kill.next_row + chunk


def test_sigterm_stops_a_batch_cleanly_then_resume_finishes_it(
    pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path
) -> None:
    path = checkpoint_path(pipeline_env)
    summary_file = tmp_path / "stopped.json"
    args = ["--mode", "batch", "--repeat", "6", "--batch-size", "1000", "--summary-json", str(summary_file)]
    process = start_script("producer.py", args, env=pipeline_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_progress(path, 2000, process)
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert "  stopped by       SIGTERM" in stdout
    stopped = summary_of(summary_file)
    assert stopped["sent"] == stopped["acknowledged"] == stopped["next_row"] and stopped["failed"] == 0
    checkpoint = read_checkpoint(path)
    assert checkpoint is not None and checkpoint.next_row == stopped["next_row"] and not checkpoint.completed

    result = run_script("producer.py", ["--mode", "batch", "--resume"], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    assert len(read_topic(pipeline_env)) == 6 * 7043  # a clean stop re-sends nothing


def test_sigterm_stops_an_endless_stream_with_a_summary(pipeline_env: dict[str, str]) -> None:
    process = start_script(
        "producer.py",
        ["--mode", "streaming", "--events-per-sec", "50"],
        env=pipeline_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while "streaming 50 events/s" not in (line := process.stderr.readline() if process.stderr else ""):
            assert line and time.monotonic() < deadline, "the producer did not start streaming"
        time.sleep(1.0)
        process.send_signal(signal.SIGTERM)
        stdout, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    sent = int(re.search(r"  sent +([\d,]+)", stdout).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert 30 <= sent <= 80
    assert len(read_topic(pipeline_env)) == sent


def test_a_broker_that_is_down_is_one_line_and_exit_2_within_10_s_streaming_too(pipeline_env: dict[str, str]) -> None:
    """Fault scenario 6 runs the batch producer (and the consumer, and --verify-only) against a broker
    that is down; this is the streaming producer's path, and no checkpoint is left to resume."""
    port = free_port()
    env = {**pipeline_env, "KAFKA_BOOTSTRAP_SERVERS": f"localhost:{port}"}
    start = time.monotonic()
    result = run_script("producer.py", ["--mode", "streaming", "--events-per-sec", "10"], env=env, timeout=30)
    assert time.monotonic() - start < 10
    assert result.returncode == EXIT_BROKER
    assert result.stdout == ""
    assert error_lines(result) == [
        f"Error: no Kafka broker answers at localhost:{port} (KAFKA_BOOTSTRAP_SERVERS); start the local broker "
        "with 'make kafka-up', or point KAFKA_BOOTSTRAP_SERVERS at your cluster"
    ]
    assert not checkpoint_path(env).exists()  # nothing was started, so nothing to resume


def test_missing_csv_is_one_line_and_exit_4(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    result = run_script("producer.py", ["--mode", "batch", "--data", str(missing)], env=pipeline_env)
    assert result.returncode == EXIT_DATA
    assert error_lines(result) == [f"Error: data file {missing} is missing; check --data (or DATA_PATH)"]


def test_wrong_header_is_one_line_and_exit_4(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("customerID,gender\n1,Male\n")
    result = run_script(
        "producer.py", ["--mode", "streaming", "--events-per-sec", "1", "--data", str(wrong)], env=pipeline_env
    )
    assert result.returncode == EXIT_DATA
    lines = error_lines(result)
    assert len(lines) == 1
    assert lines[0].startswith(f"Error: data file {wrong} lacks the column(s) SeniorCitizen, ")


def test_a_bad_row_stops_the_run_unless_skip_bad_rows(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    rows = make_rows(20)
    rows[6]["MonthlyCharges"] = "lots"
    path = write_csv(tmp_path / "bad.csv", rows)
    result = run_script("producer.py", ["--mode", "batch", "--data", str(path)], env=pipeline_env)
    assert result.returncode == EXIT_DATA
    assert error_lines(result) == [
        f"Error: data file {path} line 8: MonthlyCharges='lots' is not a plain decimal number; fix the row, "
        "or pass --skip-bad-rows to leave bad rows out"
    ]

    summary_file = tmp_path / "summary.json"
    skipped = run_script(
        "producer.py",
        ["--mode", "batch", "--data", str(path), "--skip-bad-rows", "--summary-json", str(summary_file)],
        env=pipeline_env,
    )
    assert skipped.returncode == 0, skipped.stderr
    assert f"skipping {path} line 8: MonthlyCharges='lots' is not a plain decimal number" in skipped.stderr
    summary = summary_of(summary_file)
    assert (summary["sent"], summary["acknowledged"], summary["skipped_rows"]) == (19, 19, 1)
    assert len(read_topic(pipeline_env)) == 19


def test_checkpoint_conflict_and_resume_without_checkpoint_are_explained(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    path = write_csv(tmp_path / "rows.csv", make_rows(10))
    nothing = run_script("producer.py", ["--mode", "batch", "--data", str(path), "--resume"], env=pipeline_env)
    assert nothing.returncode == EXIT_CHECKPOINT
    assert error_lines(nothing) == [
        f"Error: nothing to resume: there is no checkpoint {checkpoint_path(pipeline_env)} for topic "
        f"{pipeline_env['KAFKA_TOPIC_RAW']}; run without --resume to start a load"
    ]

    unfinished = Checkpoint(
        topic=pipeline_env["KAFKA_TOPIC_RAW"],
        data_path=str(path),
        data_sha256=sha256_file(path),
        load_id="abc123",
        repeat=1,
        rows_per_pass=10,
        total_rows=10,
        next_row=4,
        completed=False,
        updated_ts="2026-01-01T00:00:00.000Z",
    )
    write_checkpoint(checkpoint_path(pipeline_env), unfinished)
    refused = run_script("producer.py", ["--mode", "batch", "--data", str(path)], env=pipeline_env)
    assert refused.returncode == EXIT_CHECKPOINT
    assert error_lines(refused) == [
        f"Error: an unfinished batch load to topic {pipeline_env['KAFKA_TOPIC_RAW']} exists (load abc123: 4 of 10 "
        f"rows acknowledged, checkpoint {checkpoint_path(pipeline_env)}); pass --resume to continue it, or "
        "--restart to start over (rows already sent will then be sent again)"
    ]

    resumed = run_script("producer.py", ["--mode", "batch", "--data", str(path), "--resume"], env=pipeline_env)
    assert resumed.returncode == 0, resumed.stderr
    assert sorted(e["event_id"] for _, e in read_topic(pipeline_env)) == sorted(f"abc123-0-{i}" for i in range(4, 10))
    done = read_checkpoint(checkpoint_path(pipeline_env))
    assert done is not None and done.completed

    again = run_script("producer.py", ["--mode", "batch", "--data", str(path)], env=pipeline_env)
    assert again.returncode == 0, again.stderr  # a completed checkpoint: a new load just starts


def test_an_existing_topic_is_left_as_it_is(
    pipeline_env: dict[str, str], admin: KafkaAdminClient, tmp_path: Path
) -> None:
    topic = pipeline_env["KAFKA_TOPIC_RAW"]
    admin.create_topics([NewTopic(topic, 2, 1)], wait_for_metadata=True)
    path = write_csv(tmp_path / "rows.csv", make_rows(10))
    result = run_script("producer.py", ["--mode", "batch", "--data", str(path)], env=pipeline_env)
    assert result.returncode == 0, result.stderr
    assert len(admin.describe_topics([topic])[0]["partitions"]) == 2
    assert "created topic" not in result.stderr


def test_an_unreadable_checkpoint_is_refused_until_restart(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    path = write_csv(tmp_path / "rows.csv", make_rows(10))
    checkpoint = checkpoint_path(pipeline_env)
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_text("{half a checkpoint")
    refused = run_script("producer.py", ["--mode", "batch", "--data", str(path)], env=pipeline_env)
    assert refused.returncode == EXIT_CHECKPOINT
    lines = error_lines(refused)
    assert len(lines) == 1 and lines[0].startswith(
        f"Error: checkpoint {checkpoint} is unreadable: it is not valid JSON"
    )
    assert lines[0].endswith("delete it, or pass --restart to start the load over")

    restarted = run_script("producer.py", ["--mode", "batch", "--data", str(path), "--restart"], env=pipeline_env)
    assert restarted.returncode == 0, restarted.stderr
    done = read_checkpoint(checkpoint)
    assert done is not None and done.completed and done.next_row == 10


def test_the_benchmark_runs_end_to_end_with_tiny_settings(
    kafka_bootstrap: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CHURN_DOTENV", "none")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    code = bench_producer.main(
        ["--seconds", "1", "--rates", "20", "--batch-repeats", "1", "--batch-limit", "100", "-q"]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    assert re.search(r"^ +20 +20 +20 +1\.0\d\d +\d+\.\d\d +[-+]\d+\.\d\d%  ok \(within 2 %\)$", out, re.MULTILINE), out
    assert re.search(r"^ +1 +100 +100 +\d+\.\d{3} +[\d,]+  ok$", out, re.MULTILINE), out

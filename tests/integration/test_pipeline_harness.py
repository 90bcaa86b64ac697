"""test_pipeline.py itself, in short configurations against the real broker, judged by its JSON."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import pytest

from churnstream.errors import EXIT_FAILURE
from tests.helpers import run_script, start_script

pytestmark = pytest.mark.integration


def harness(env: dict[str, str], tmp_path: Path, *args: str, timeout: float = 170) -> tuple[int, dict[str, Any], str]:
    results = tmp_path / "results.json"
    report = tmp_path / "TEST_RESULTS.md"
    completed = run_script(
        "test_pipeline.py",
        [*args, "--results-json", str(results), "--report", str(report)],
        env=env,
        timeout=timeout,
    )
    assert results.is_file(), completed.stdout + completed.stderr
    return completed.returncode, json.loads(results.read_text()), completed.stdout


def test_streaming_with_malformed_events(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    code, results, stdout = harness(
        pipeline_env,
        tmp_path,
        "--mode",
        "streaming",
        "--events-per-sec",
        "200",
        "--duration",
        "3",
        "--inject-bad",
        "12",
    )
    assert code == 0, stdout
    assert results["passed"] is True
    scenario = results["scenarios"][0]
    assert scenario["producer"]["sent"] == 600 == scenario["producer"]["acknowledged"]
    assert results["scored"] == 600
    assert results["dead_lettered"] == 12
    assert results["lost"] == 0 and results["duplicated"] == 0
    assert set(scenario["dead_letter_stages"]) == {"decode", "validate"}
    latency = results["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    assert scenario["sample_check"]["checked"] > 0 and scenario["sample_check"]["mismatches"] == 0
    report = (tmp_path / "TEST_RESULTS.md").read_text()
    assert report.startswith("**PASSED: ") and "python test_pipeline.py --mode streaming" in report
    assert (tmp_path / "TEST_RESULTS.png").stat().st_size > 10_000


def test_batch_with_two_consumers(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    code, results, stdout = harness(pipeline_env, tmp_path, "--mode", "batch", "--limit", "1500", "--consumers", "2")
    assert code == 0, stdout
    assert results["passed"] is True
    scenario = results["scenarios"][0]
    assert len(scenario["consumers"]) == 2
    assert all(consumer["exit_code"] == 0 for consumer in scenario["consumers"])
    # Both consumers did part of the work, and together all of it.
    scored = [consumer["scored"] for consumer in scenario["consumers"]]
    assert sum(scored) == 1500 and min(scored) > 0
    assert results["scored"] == 1500 and results["lost"] == 0 and results["duplicated"] == 0


def _processes_of_run(run_folder: Path, exclude: int) -> dict[int, str]:
    """pid -> command line of the processes now running that write into ``run_folder`` (each child of a
    run has its summary or log there), except ``exclude``: other tests' processes may run beside."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        try:
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue  # gone meanwhile
    return {pid: line for pid, line in found.items() if str(run_folder) in line}


def test_a_password_given_with_x_reaches_the_children_in_their_environment_only(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """Before: the password was on both children's command lines (``ps`` shows them to every user), and
    twice in the results JSON (command, plan), so in the report too. Now: in their environment, which
    only their user can read, and masked everywhere the run writes."""
    secrets = {"sasl.password": f"pw-{uuid.uuid4().hex}", "ssl.key.password": f"key-{uuid.uuid4().hex} "}
    args = ["--mode", "batch", "--limit", "200", "--timeout", "30", "-X", "reconnect.backoff.max.ms=2000"]
    args += [arg for key, value in secrets.items() for arg in ("-X", f"{key}={value}")]
    results, report = tmp_path / "results.json", tmp_path / "TEST_RESULTS.md"
    args += ["--results-json", str(results), "--report", str(report)]
    with (tmp_path / "harness.out").open("w") as out, (tmp_path / "harness.err").open("w") as err:
        harness = start_script("test_pipeline.py", args, pipeline_env, stdout=out, stderr=err)
        seen: dict[int, str] = {}
        environments: dict[int, bytes] = {}
        stop = threading.Event()

        def watch() -> None:
            while not stop.wait(0.05):
                for pid, line in _processes_of_run(tmp_path, exclude=harness.pid).items():
                    seen[pid] = line
                    if "churnstream.cli.consumer" in line and pid not in environments:
                        try:
                            environments[pid] = Path(f"/proc/{pid}/environ").read_bytes()
                        except OSError:
                            continue

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            code = harness.wait(timeout=170)
        finally:
            stop.set()
            watcher.join()
            if harness.poll() is None:
                harness.kill()
    assert code == 0, (tmp_path / "harness.err").read_text()[-3000:]
    children = "\n".join(seen.values())
    assert "churnstream.cli.consumer" in children and "churnstream.cli.producer" in children  # the scan saw them
    assert "reconnect.backoff.max.ms=2000" in children  # tuning still goes on the command line
    for secret in secrets.values():
        assert secret.strip() not in children
        assert any(secret.encode() in environ for environ in environments.values())
        written = [path for path in tmp_path.rglob("*") if path.is_file()]  # results, report, logs, summaries
        assert [path for path in written if secret.strip().encode() in path.read_bytes()] == []
    command = json.loads(results.read_text())["command"]
    assert "-X 'sasl.password=***' -X 'ssl.key.password=***'" in command
    assert "sasl.password=***" in report.read_text()


def test_a_crashing_consumer_fails_the_run_and_shows_its_log(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    code, results, stdout = harness(
        pipeline_env,
        tmp_path,
        "--mode",
        "batch",
        "--limit",
        "50",
        "--timeout",
        "5",
        "--consumer-arg=--max-batch=0",
    )
    assert code == EXIT_FAILURE
    assert results["passed"] is False
    failed = {c["name"] for c in results["scenarios"][0]["criteria"] if not c["passed"]}
    assert "no consumer crashed" in failed or "harness ran cleanly" in failed
    assert "last log lines" in stdout


def test_verify_only_prints_a_table_of_checks(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    completed = run_script("test_pipeline.py", ["--verify-only"], env=pipeline_env, timeout=60)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["PASS"] * 5
    assert "Kafka API 4.3" in lines[0]
    assert "compression codecs" in lines[4] and "reads none, gzip, snappy, lz4, zstd" in lines[4]
    assert f"created {pipeline_env['KAFKA_TOPIC_RAW']}" in completed.stdout


def test_verify_only_fails_on_a_missing_model(pipeline_env: dict[str, str], tmp_path: Path) -> None:
    env = {**pipeline_env, "MODEL_PATH": str(tmp_path / "absent.pkl")}
    completed = run_script("test_pipeline.py", ["--verify-only"], env=env, timeout=60)
    assert completed.returncode == EXIT_FAILURE
    assert "FAIL  model integrity" in completed.stdout


def test_the_quick_suite_runs_every_kind_of_run_and_judges_the_goals(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    """The suite's machinery with tiny settings: the floor, the bare loop and our consumer for both
    guarantees, the backlog runs, a batch run, the goals and the report. Its figures mean nothing
    (a loaded machine may fail a latency goal), so only what does not depend on speed is asserted."""
    code, results, stdout = harness(pipeline_env, tmp_path, "--suite", "quick", timeout=300)
    assert code in (0, EXIT_FAILURE), stdout
    goals = {goal["name"]: goal for goal in results["goals"]}
    assert goals["every run complete (baselines and floor included)"]["passed"], stdout
    assert goals["correctness of our consumer, every run"]["passed"], stdout
    assert results["verdict"].startswith("PASSED" if results["passed"] else "FAILED")
    subjects = {(cell["subject"], cell["guarantee"]) for cell in results["latency_cells"].values()}
    assert subjects == {
        ("floor", None),
        ("bare-loop", "exactly-once"),
        ("consumer", "exactly-once"),
        ("bare-loop", "at-least-once"),
        ("consumer", "at-least-once"),
    }
    backlog = results["backlog"]
    assert backlog["failures"] == [] and backlog["events"] == 600
    for by_subject in backlog["throughput"].values():
        assert by_subject["bare-loop"]["median"] > 0 and by_subject["consumer"]["median"] > 0
    assert backlog["seed"]["median"] > 0
    assert results["provenance"]["commit"] and results["provenance"]["model_version"]
    report = (tmp_path / "TEST_RESULTS.md").read_text()
    assert report.splitlines()[0] == f"**{results['verdict']}**"
    assert "## Goals" in report and "[results.json](results.json)" in report
    assert (tmp_path / "TEST_RESULTS.png").stat().st_size > 10_000

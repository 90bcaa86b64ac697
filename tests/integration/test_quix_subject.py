"""The Quix Streams baseline (benchmarks/quix_loop.py) against the session's broker, in its own virtualenv.

Skipped where .run/quix does not exist: make test does not build it (it would add a PyPI resolution
and a minute to the suite's budget); make test-quix and make benchmark do.
"""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest
from kafka import KafkaAdminClient

from churnstream.errors import EXIT_FAILURE
from churnstream.harness.quix import QUIX_LOOP, QUIX_VENV, quix_python
from churnstream.kafka.clients import make_producer
from churnstream.kafka.topics import ensure_topics
from churnstream.settings import Settings
from tests.helpers import SAMPLE_ROW, read_all_records, run_module, run_script, telco_contract, telco_event

pytestmark = pytest.mark.skipif(
    not (QUIX_VENV / "bin" / "python").is_file(),
    reason=f"the Quix Streams baseline's virtualenv {QUIX_VENV} is absent: make test-quix builds it and runs these",
)


def test_the_quix_subject_scores_every_event_and_commits_what_it_published(
    pipeline_env: dict[str, str], pipeline_settings: Settings, admin: KafkaAdminClient, tmp_path: Path
) -> None:
    """A short harness run of Quix Streams: every event scored once, with our model (the sample check), keyed by
    the event's key; stopped by SIGTERM, it has committed every offset it processed."""
    results_path = tmp_path / "results.json"
    args = ["--subject", "quix", "--guarantee", "at-least-once", "--events-per-sec", "200", "--duration", "3"]
    args += ["--keep-topics", "--no-report", "--results-json", str(results_path)]
    completed = run_script("test_pipeline.py", args, env=pipeline_env, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr[-3000:]
    run = json.loads(results_path.read_text())["scenarios"][0]
    assert run["subject"] == "quix" and run["passed"]
    assert run["scored"] == run["raw_records"] == 600 and run["lost"] == 0 and run["duplicated"] == 0
    assert run["sample_check"]["checked"] > 0 and run["sample_check"]["mismatches"] == 0
    assert run["consumers"][0]["scored"] == 600  # its own summary, written after Quix stopped on SIGTERM
    settings = Settings(bootstrap_servers=pipeline_settings.bootstrap_servers)
    key_field = telco_contract().key_field
    predictions = read_all_records(settings, run["topics"]["predictions"])
    assert len(predictions) == 600
    assert all(record.key == orjson.loads(record.value)[key_field].encode() for record in predictions)
    group = run["topics"]["group"]
    committed = admin.list_group_offsets({group: None})[group]
    assert sum(offset.offset for offset in committed.values()) == 600  # one past each partition's last record


def test_a_record_that_is_not_an_event_stops_it_with_an_error_and_uncommitted(
    pipeline_env: dict[str, str], pipeline_settings: Settings, admin: KafkaAdminClient
) -> None:
    """No dead-letter path: the bad record ends the run with exit 1 and one line, and its offset stays
    uncommitted, so nothing is lost (a restart reads it again)."""
    settings = pipeline_settings
    ensure_topics(admin, settings, [settings.topic_raw, settings.topic_predictions])
    producer = make_producer(settings)
    good = orjson.dumps(telco_event(SAMPLE_ROW))
    for value in (good, b'{"not": "an event"'):  # one key: one partition, the bad record after the good one
        producer.send(settings.topic_raw, key=b"0001-TEST", value=value)
    producer.flush()
    producer.close()
    completed = run_module(QUIX_LOOP, [], pipeline_env, timeout=90, python=quix_python())
    assert completed.returncode == EXIT_FAILURE, completed.stderr[-3000:]
    assert "Error: " in completed.stderr
    committed = admin.list_group_offsets({settings.consumer_group: None}).get(settings.consumer_group, {})
    assert all(offset.offset <= 1 for offset in committed.values())  # never past the bad record (offset 1)

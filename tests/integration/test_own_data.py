"""Bring your own data and model, end to end on a real broker, with nothing of the package edited.

A made-up mobile operator (examples/mobile): its own schema (other columns, other types, a 0/1 label),
its CSV, and a gradient-boosting pipeline trained by scikit-learn alone (examples/mobile/train_elsewhere.py,
as a notebook would). ``churn-model import`` adds it to a store, ``producer.py --schema --data`` streams
the holdout rows as events of that schema, and the unchanged ``consumer.py`` scores them: every row
predicted, keyed by the schema's x-key, each probability the pipeline's own offline (pandas.read_csv
then predict_proba) to 1e-9, and the malformed events dead-lettered at validate with their reasons.
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import joblib
import orjson
import pandas as pd
import pytest

from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import DeadLetterInfo, decode_prediction
from churnstream.kafka.clients import make_producer
from churnstream.kafka.reading import read_all
from churnstream.settings import settings_from
from tests.helpers import ROOT, run_module, run_script

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

EXAMPLE = ROOT / "examples" / "mobile"
SCHEMA = EXAMPLE / "mobile.schema.json"
FEATURES = ["plan", "region", "months_active", "data_gb", "dropped_calls", "roaming", "support_tickets", "monthly_fee"]


def _run_example(script: str, args: list[str]) -> None:
    import subprocess  # noqa: PLC0415

    result = subprocess.run([sys.executable, str(EXAMPLE / script), *args], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_a_telcos_own_schema_data_and_gradient_boosting_pipeline_score_in_the_stream(
    pipeline_env: dict[str, str], tmp_path: Path
) -> None:
    everything = tmp_path / "subscribers.csv"
    _run_example("make_data.py", ["--rows", "1500", "--seed", "11", "--out", str(everything)])
    with everything.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    train_csv, holdout = tmp_path / "train.csv", tmp_path / "holdout.csv"
    for path, part in ((train_csv, rows[:900]), (holdout, rows[900:])):
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(part)
    pickle_path = tmp_path / "gb.pkl"
    _run_example("train_elsewhere.py", ["--data", str(train_csv), "--out", str(pickle_path)])

    env = {**pipeline_env, "MODEL_STORE": str(tmp_path / "models"), "EVENT_SCHEMA": str(SCHEMA)}
    del env["MODEL_PATH"]  # the consumer follows the store: no flag tells it about the schema
    imported = run_module(
        "churnstream.cli.model",
        ["import", str(pickle_path), "--data", str(holdout), "--label", "churned", "--name", "mobile", "--promote"],
        env,
    )
    assert imported.returncode == 0, imported.stderr
    produced = run_script("producer.py", ["--mode", "batch", "--schema", str(SCHEMA), "--data", str(holdout)], env)
    assert produced.returncode == 0, produced.stderr

    settings = settings_from(env)
    event = {
        **{name: value for name, value in rows[0].items() if name != "churned"},
        "months_active": 3, "data_gb": 1.5, "dropped_calls": None, "roaming": False, "support_tickets": 0,
        "monthly_fee": 20.0, "event_ts": utc_now_iso(),
    }  # fmt: skip
    malformed = {
        "unknown-enum": {**event, "plan": "platinum", "event_id": "bad-enum"},
        "out-of-range": {**event, "months_active": 601, "event_id": "bad-range"},
        "missing-field": {k: v for k, v in {**event, "event_id": "bad-missing"}.items() if k != "support_tickets"},
    }
    producer = make_producer(settings)
    try:
        for value in malformed.values():
            producer.send(settings.topic_raw, key=value["subscriber_id"].encode(), value=orjson.dumps(value))
        producer.flush(timeout=30)
    finally:
        producer.close()

    consumed = run_script("consumer.py", ["--mode", "batch"], env, timeout=180)
    assert consumed.returncode == 0, consumed.stderr

    predictions = [(r.key, decode_prediction(r.value)) for r in read_all(settings, settings.topic_predictions)]
    assert len(predictions) == len(rows) - 900
    assert all(p.key_field == "subscriber_id" and key == p.key.encode() for key, p in predictions)
    published = {p.key: p.churn_probability for _, p in predictions}
    offline_frame = pd.read_csv(holdout)  # the notebook's own reading of the same rows
    offline = joblib.load(pickle_path).predict_proba(offline_frame[FEATURES])[:, 1]
    worst = max(abs(published[key] - p) for key, p in zip(offline_frame["subscriber_id"], offline, strict=True))
    assert worst <= 1e-9
    assert {p.model_version for _, p in predictions} == {predictions[0][1].model_version}
    assert predictions[0][1].model_version.startswith("mobile-")

    dead = {
        DeadLetterInfo.from_headers(r.headers).reason for r in read_all(settings, settings.topic_deadletter)
    }  # fmt: skip
    assert dead == {
        "plan='platinum' is not a known category; allowed: prepaid, postpaid, business",
        "months_active=601 is out of range [0, 600]",
        "missing required field(s): support_tickets",
    }
    print(f"\nFIGURES own-data: {len(predictions)} predictions, max |published - offline| {worst:.2e}, 3 dead letters")

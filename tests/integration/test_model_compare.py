"""``churn-model compare`` on a real broker: two real versions trained with different settings and on
different rows, their predictions for the same events on two topics, and the report checked against
figures computed here, on the events that are test rows of both versions only."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import precision_score, recall_score, roc_auc_score

from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import encode_prediction
from churnstream.errors import EXIT_MODEL_MISSING
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.topics import ensure_topics
from churnstream.ml.dataset import DATASET_LABEL, load_rows
from churnstream.ml.holdout import load_holdout
from churnstream.ml.model import ChurnModel, load_model
from churnstream.ml.store import HOLDOUT_FILE, ModelStore
from churnstream.ml.train import TrainOptions, train_into
from churnstream.settings import Settings
from tests.helpers import run_module, telco_contract, telco_features, write_csv

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

PER_GROUP = 200  # events whose key is a test row of both versions, of one only, of neither
SHADOW_MISSES = 7  # the last events have no shadow prediction: they must count as "only main"
CHALLENGER_SKIPS = 1000  # the challenger is trained without the CSV's first rows: another split, another holdout


def _publish(
    settings: Settings, topic: str, model: ChurnModel, rows: list[dict[str, str]], probabilities: np.ndarray
) -> None:
    producer = make_producer(settings)
    try:
        for index, (row, probability) in enumerate(zip(rows, probabilities, strict=True)):
            value = encode_prediction(
                "customerID",
                row["customerID"],
                float(probability),
                bool(probability >= model.threshold),
                event_ts=utc_now_iso(),
                processed_ts=utc_now_iso(),
                event_id=f"event-{index}",
                model_version=model.version,
                source_partition=0,
                source_offset=index,
            )
            producer.send(topic, key=row["customerID"].encode(), value=value)
        producer.flush(timeout=60)
    finally:
        producer.close()


def _line(output: str, prefix: str) -> str:
    matches = [line for line in output.splitlines() if line.startswith(prefix)]
    assert len(matches) == 1, (prefix, output)
    return matches[0]


def test_compare_judges_each_model_only_on_the_test_rows_of_both(
    pipeline_settings: Settings, pipeline_env: dict[str, str], real_data_path: Path, tmp_path: Path
) -> None:
    settings = pipeline_settings
    store = ModelStore(tmp_path / "models")
    all_rows = load_rows(real_data_path)
    main_version = train_into(store, real_data_path, telco_contract(), DATASET_LABEL).version
    challenger = TrainOptions(class_weight="balanced", cost_ratio=3.0)
    fewer = write_csv(tmp_path / "fewer.csv", all_rows[CHALLENGER_SKIPS:])
    shadow_version = train_into(store, fewer, telco_contract(), DATASET_LABEL, options=challenger).version
    assert main_version != shadow_version
    main_model, shadow_model = (load_model(*store.paths(v)) for v in (main_version, shadow_version))

    # events: keys that are test rows of both versions, of exactly one, and of neither (training rows)
    main_test, shadow_test = (set(load_holdout(store, v, "test").keys) for v in (main_version, shadow_version))
    both = [row for row in all_rows if row["customerID"] in main_test & shadow_test]
    one = [row for row in all_rows if row["customerID"] in main_test ^ shadow_test]
    neither = [row for row in all_rows if row["customerID"] not in main_test | shadow_test]
    rows = both[:PER_GROUP] + one[:PER_GROUP] + neither[:PER_GROUP]
    assert len(rows) == 3 * PER_GROUP
    features = [telco_features(row) for row in rows]
    main_p, shadow_p = main_model.predict_proba(features), shadow_model.predict_proba(features)
    main_topic, shadow_topic = settings.topic_predictions, settings.topic_predictions_shadow  # unique per test
    assert shadow_topic == pipeline_env["KAFKA_TOPIC_PREDICTIONS_SHADOW"]
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [main_topic, shadow_topic], partitions=3)
    finally:
        admin.close()
    _publish(settings, main_topic, main_model, rows, main_p)
    _publish(settings, shadow_topic, shadow_model, rows[:-SHADOW_MISSES], shadow_p[:-SHADOW_MISSES])

    def compared(*extra: str) -> subprocess.CompletedProcess[str]:
        return run_module(
            "churnstream.cli.model",
            ["--store", str(store.root), "compare", "--main-topic", main_topic, "--shadow-topic", shadow_topic,
             "--timeout-s", "60", *extra],
            env=pipeline_env,
        )  # fmt: skip

    results = compared(), compared("--data", str(real_data_path))
    assert [r.returncode for r in results] == [0, 0], [r.stderr for r in results]
    out, with_data = (r.stdout for r in results)

    # what the report must say, computed here: agreement and |dp| over the matched events...
    matched = len(rows) - SHADOW_MISSES
    main_yes = main_p[:matched] >= main_model.threshold
    shadow_yes = shadow_p[:matched] >= shadow_model.threshold
    delta = np.abs(main_p[:matched] - shadow_p[:matched])
    assert not np.all(main_yes == shadow_yes)  # different settings: some decisions differ
    assert out.startswith(f"main topic: {main_topic}\nshadow topic: {shadow_topic}\n")
    assert _line(out, "main versions: ") == f"main versions: {main_version} ({len(rows)})"
    assert _line(out, "shadow versions: ") == f"shadow versions: {shadow_version} ({matched})"
    assert _line(out, "matched events: ").startswith(f"matched events: {matched} (only main: {SHADOW_MISSES}, ")
    assert _line(out, "agreement: ") == (
        f"agreement: {np.mean(main_yes == shadow_yes):.4f} (main Yes / shadow No: {np.sum(main_yes & ~shadow_yes)}, "
        f"main No / shadow Yes: {np.sum(~main_yes & shadow_yes)})"
    )
    assert _line(out, "mean |dp|: ") == f"mean |dp|: {delta.mean():.6f}"
    assert _line(out, "p99 |dp|: ") == f"p99 |dp|: {np.percentile(delta, 99):.6f}"
    # ...and each model's quality on the first PER_GROUP events only: the test rows of both
    judged = slice(0, PER_GROUP)
    truth = np.array([row["Churn"] == "Yes" for row in rows[judged]], dtype=int)
    assert _line(out, "judged on: ") == (
        f"judged on: {PER_GROUP} matched events whose key is a test row of both versions "
        "(labels: the versions' holdout files)"
    )
    left_out = matched - PER_GROUP  # the test rows of one version, and the training rows of both
    assert _line(out, "left out: ").startswith(f"left out: {left_out} matched events that are not test rows of both ")
    for side, probabilities, decisions in (("main", main_p, main_yes), ("shadow", shadow_p, shadow_yes)):
        assert _line(out, f"{side} on ") == (
            f"{side} on {PER_GROUP} test rows: roc_auc {roc_auc_score(truth, probabilities[judged]):.4f}, "
            f"precision {precision_score(truth, decisions[judged]):.4f}, "
            f"recall {recall_score(truth, decisions[judged]):.4f}"
        )
    # the CSV's labels are the holdouts' for these rows: the same verdict, its source named
    assert with_data.replace(f"(labels: {real_data_path})", "(labels: the versions' holdout files)") == out
    # the two settings make genuinely different models: the balanced, cost-weighted one catches more churners
    assert recall_score(truth, shadow_yes[judged]) > recall_score(truth, main_yes[judged])

    # a version without a holdout (made by an older release): --data is refused in one line
    (store.root / shadow_version / HOLDOUT_FILE).unlink()
    refused = compared("--data", str(real_data_path))
    assert (refused.returncode, refused.stdout) == (EXIT_MODEL_MISSING, "")
    errors = refused.stderr.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith(f"Error: cannot judge on --data: {shadow_version} has no holdout")

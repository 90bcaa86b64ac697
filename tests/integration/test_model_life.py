"""The model's life on a real broker: a version promoted under load, a challenger in shadow, drift.

Each test has its own model store (a copy of the current version, plus a second version trained
with other settings), its own topics and group; the consumer follows the store (no MODEL_PATH pin).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from churnstream.contract.events import encode_event, utc_now_iso
from churnstream.contract.outputs import Prediction, decode_prediction
from churnstream.kafka.clients import make_admin, make_producer
from churnstream.kafka.reading import read_all
from churnstream.kafka.topics import ensure_topics
from churnstream.ml.dataset import DATASET_LABEL, load_rows
from churnstream.ml.model import load_model
from churnstream.ml.store import ModelStore
from churnstream.ml.train import TrainOptions, train_into
from churnstream.settings import DEFAULT_MODEL_STORE, Settings, settings_from
from tests.helpers import free_port, run_module, run_script, scrape, start_script, telco_contract, telco_event

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

RATE, SECONDS, PROMOTE_AFTER_S = 1000, 14, 5.0


@pytest.fixture(scope="module")
def second_version(tmp_path_factory: pytest.TempPathFactory, real_data_path: Path) -> tuple[Path, str, str]:
    """A store holding the current version and one trained with other settings (shared by the module)."""
    root = tmp_path_factory.mktemp("store") / "models"
    source = ModelStore(DEFAULT_MODEL_STORE)
    current = source.current()
    assert current is not None, "no current model: run 'make model'"
    shutil.copytree(source.root / current, root / current)
    store = ModelStore(root)
    store.promote(current)
    options = TrainOptions(class_weight="balanced", cost_ratio=3.0)
    challenger = train_into(store, real_data_path, telco_contract(), DATASET_LABEL, options=options)
    return root, current, challenger.card["model_version"]


@pytest.fixture
def store_env(
    pipeline_env: dict[str, str], second_version: tuple[Path, str, str], tmp_path: Path
) -> tuple[dict[str, str], ModelStore, str, str]:
    """The test's own copy of the store, followed (not pinned) by the consumer."""
    root, first, second = second_version
    mine = tmp_path / "models"
    shutil.copytree(root, mine)
    store = ModelStore(mine)
    store.promote(first)
    env = {key: value for key, value in pipeline_env.items() if key != "MODEL_PATH"}
    env["MODEL_STORE"] = str(mine)
    return env, store, first, second


def outputs(settings: Settings) -> tuple[list[Prediction], int]:
    predictions = [decode_prediction(r.value) for r in read_all(settings, settings.topic_predictions, timeout_s=60)]
    dead = len(read_all(settings, settings.topic_deadletter, timeout_s=60))
    return predictions, dead


def outcome_count(settings: Settings) -> int:
    """Predictions plus dead letters: each output topic read once."""
    predictions, dead = outputs(settings)
    return len(predictions) + dead


def raw_count(settings: Settings) -> int:
    return len(read_all(settings, settings.topic_raw, timeout_s=60))


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_a_version_promoted_under_load_serves_from_the_next_batch_and_loses_nothing(
    store_env: tuple[dict[str, str], ModelStore, str, str], tmp_path: Path
) -> None:
    env, store, first, second = store_env
    settings = settings_from(env)
    summary_path = tmp_path / "consumer.json"
    consumer = start_script(
        "consumer.py", ["--summary-json", str(summary_path), "--log-interval", "0"], env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    producer = start_script(
        "producer.py", ["--mode", "streaming", "--events-per-sec", str(RATE), "--duration", str(SECONDS)], env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(PROMOTE_AFTER_S)
        assert outputs(settings)[0], "nothing scored yet: the consumer is not running"
        promoted_at = time.time()
        store.promote(second)
        assert producer.wait(timeout=SECONDS + 60) == 0
        total = raw_count(settings)
        wait_for(lambda: outcome_count(settings) >= total, 90, "every outcome")
    finally:
        consumer.terminate()
        _, err = consumer.communicate(timeout=90)
    assert consumer.returncode == 0, err[-3000:]

    predictions, dead = outputs(settings)
    sources = [(p.source_partition, p.source_offset) for p in predictions]
    assert len(set(sources)) == len(sources), "an event was scored twice"
    assert len(predictions) + dead == total, "an event was lost"  # every raw record: one outcome
    by_partition: dict[int, list[Prediction]] = defaultdict(list)
    for prediction in sorted(predictions, key=lambda p: (p.source_partition, p.source_offset)):
        by_partition[prediction.source_partition].append(prediction)
    for partition, ordered in by_partition.items():  # in offset order: the old version, then only the new
        versions = [p.model_version for p in ordered]
        switch = versions.index(second) if second in versions else len(versions)
        assert set(versions[:switch]) <= {first} and set(versions[switch:]) == {second}, partition
    late_old = [p for p in predictions if p.model_version == first and _epoch(p.processed_ts) > promoted_at]
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["scored_by_version"] == {
        first: sum(p.model_version == first for p in predictions),
        second: sum(p.model_version == second for p in predictions),
    }
    assert summary["model_version"] == second
    # Within one batch: what the old version scored after the promotion is at most the batch in flight.
    assert len(late_old) <= summary["consumed"] / summary["batches"] * 3 + 50, len(late_old)
    print(
        f"FIGURES promotion total={total} old_after_promotion={len(late_old)} by_version={summary['scored_by_version']}"
    )


def _epoch(ts: str) -> float:
    from churnstream.contract.events import parse_ts  # noqa: PLC0415

    return parse_ts(ts).timestamp()


def test_a_corrupt_version_is_refused_and_the_current_one_keeps_serving(
    store_env: tuple[dict[str, str], ModelStore, str, str], tmp_path: Path
) -> None:
    env, store, first, second = store_env
    model_file, _ = store.paths(second)
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one flipped byte: the hash no longer matches the card
    model_file.write_bytes(bytes(data))
    settings = settings_from(env)
    summary_path = tmp_path / "consumer.json"
    consumer = start_script(
        "consumer.py", ["--summary-json", str(summary_path), "--log-interval", "0"], env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        produced = run_script("producer.py", ["--mode", "batch", "--limit", "500", "--no-progress"], env)
        assert produced.returncode == 0, produced.stderr
        wait_for(lambda: len(outputs(settings)[0]) >= 500, 90, "the first load scored")  # the consumer runs
        store.promote(second)
        produced = run_script("producer.py", ["--mode", "batch", "--limit", "500", "--restart", "--no-progress"], env)
        assert produced.returncode == 0, produced.stderr
        total = raw_count(settings)
        wait_for(lambda: outcome_count(settings) >= total, 90, "every outcome")
    finally:
        consumer.terminate()
        _, err = consumer.communicate(timeout=90)
    assert consumer.returncode == 0, err[-3000:]
    predictions, dead = outputs(settings)
    assert {p.model_version for p in predictions} == {first}
    assert len({(p.source_partition, p.source_offset) for p in predictions}) == len(predictions) == total - dead
    refusals = [line for line in err.splitlines() if f"model {second} refused, {first} keeps serving: " in line]
    assert len(refusals) == 1, err[-3000:]
    assert "sha256" in refusals[0]
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["models_refused"] == [second] and summary["model_version"] == first


def test_a_current_version_that_does_not_load_at_start_falls_back_then_serves_once_repaired(
    store_env: tuple[dict[str, str], ModelStore, str, str], tmp_path: Path
) -> None:
    """Before: the start ended with exit 1 ("unexpected error", TypeError), and so did every restart."""
    env, store, first, second = store_env
    store.promote(second)
    _, card_path = store.paths(second)
    card_text = card_path.read_text()
    card = orjson.loads(card_text)
    card_path.write_bytes(orjson.dumps({**card, "features": 5}))  # the card: a TypeError when checked
    settings = settings_from(env)
    port = free_port()
    summary_path = tmp_path / "consumer.json"
    consumer = start_script(
        "consumer.py", ["--summary-json", str(summary_path), "--log-interval", "0", "--metrics-port", str(port)], env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip

    def scored(count: int) -> Callable[[], bool]:
        def check() -> bool:
            assert consumer.poll() is None, "the consumer stopped"
            return len(outputs(settings)[0]) >= count

        return check

    try:
        produced = run_script("producer.py", ["--mode", "batch", "--limit", "300", "--no-progress"], env)
        assert produced.returncode == 0, produced.stderr
        wait_for(scored(300), 90, "the fallback to score the first load")
        during = scrape(port)
        card_path.write_text(card_text)  # repaired: its files change, so it is tried again
        produced = run_script("producer.py", ["--mode", "batch", "--limit", "300", "--restart", "--no-progress"], env)
        assert produced.returncode == 0, produced.stderr
        wait_for(scored(600), 90, "every outcome")
        after = scrape(port)
    finally:
        consumer.terminate()
        _, err = consumer.communicate(timeout=90)
    assert consumer.returncode == 0, err[-3000:]
    assert (during["churn_model_fallback"], during[f'churn_model_info{{version="{first}"}}']) == (1.0, 1.0)
    assert during["churn_model_load_failures_total"] == 1.0
    assert (after["churn_model_fallback"], after[f'churn_model_info{{version="{second}"}}']) == (0.0, 1.0)
    fallbacks = [line for line in err.splitlines() if f"model {second} (the store's current version) refused" in line]
    assert len(fallbacks) == 1 and f"serving {first} instead" in fallbacks[0], err[-3000:]
    assert "features is 5, not a list of names" in fallbacks[0]
    predictions, _ = outputs(settings)
    in_order = [p.model_version for p in sorted(predictions, key=lambda p: p.processed_ts)]
    assert len(predictions) == 600 and in_order[:300] == [first] * 300 and in_order[-1] == second
    summary = orjson.loads(summary_path.read_bytes())
    assert summary["models_refused"] == [second] and summary["model_version"] == second


def test_a_shadow_model_scores_every_event_beside_the_unchanged_main_outputs(
    store_env: tuple[dict[str, str], ModelStore, str, str], tmp_path: Path
) -> None:
    env, store, first, second = store_env
    settings = settings_from(env)
    produced = run_script("producer.py", ["--mode", "batch", "--limit", "800", "--no-progress"], env)
    assert produced.returncode == 0, produced.stderr
    _send_malformed(settings, 3)
    summary_path = tmp_path / "consumer.json"
    consumed = run_script(
        "consumer.py", ["--mode", "batch", "--shadow-model", second, "--summary-json", str(summary_path)], env,
        timeout=180,
    )  # fmt: skip
    assert consumed.returncode == 0, consumed.stderr
    main, dead = outputs(settings)
    shadow = [decode_prediction(r.value) for r in read_all(settings, settings.topic_predictions_shadow, timeout_s=60)]
    assert len(main) == 800 and dead == 3
    assert sorted(p.event_id for p in shadow) == sorted(p.event_id for p in main)  # one shadow output per output
    assert {p.model_version for p in main} == {first} and {p.model_version for p in shadow} == {second}
    # The main predictions are what the main model alone gives (a shadow changes nothing in them).
    main_model = load_model(*store.paths(first))
    raw = {(r.partition, r.offset): r.value for r in read_all(settings, settings.topic_raw, timeout_s=60)}
    offline = main_model.predict_proba([_features(raw[(p.source_partition, p.source_offset)]) for p in main])
    assert max(abs(p.churn_probability - float(o)) for p, o in zip(main, offline, strict=True)) < 1e-9
    summary = orjson.loads(summary_path.read_bytes())
    assert (summary["shadow_model_version"], summary["shadow_scored"], summary["shadow_dead_lettered"]) == (
        second, 800, 0,
    )  # fmt: skip

    compared = run_module(
        "churnstream.cli.model",
        ["compare", "--data", str(settings.data_path)],
        env,
    )
    assert compared.returncode == 0, compared.stderr
    assert "matched events: 800 " in compared.stdout
    assert "agreement: " in compared.stdout and "roc_auc" in compared.stdout


def test_an_unknown_shadow_version_stops_the_start_with_the_settings_code(
    store_env: tuple[dict[str, str], ModelStore, str, str],
) -> None:
    env, *_ = store_env
    result = run_script("consumer.py", ["--mode", "batch", "--shadow-model", "logreg-000000000000"], env, timeout=60)
    assert result.returncode == 3, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "logreg-000000000000" in errors[0]


def _features(value: bytes) -> tuple:
    return telco_contract().decode(value).features


def _send_malformed(settings: Settings, count: int) -> None:
    producer = make_producer(settings)
    try:
        for index in range(count):
            producer.send(settings.topic_raw, key=b"bad", value=b"not json %d" % index)
        producer.flush(timeout=30)
    finally:
        producer.close()


@pytest.mark.parametrize("population", ["month-to-month fiber", "random sample"])
def test_drift_shows_where_live_customers_differ_from_the_training_data(
    store_env: tuple[dict[str, str], ModelStore, str, str], real_data_path: Path, tmp_path: Path, population: str
) -> None:
    env, *_ = store_env
    settings = settings_from(env)
    rows = load_rows(real_data_path)
    if population == "month-to-month fiber":
        rows = [r for r in rows if r["Contract"] == "Month-to-month" and r["InternetService"] == "Fiber optic"]
    else:
        import random  # noqa: PLC0415

        rows = random.Random(7).sample(rows, 2000)
    rows = rows[:2000]
    admin = make_admin(settings)
    try:
        ensure_topics(admin, settings, [settings.topic_raw])
    finally:
        admin.close()
    producer = make_producer(settings)
    try:
        for index, row in enumerate(rows):
            event = telco_event(row, event_id=f"drift-{index}", event_ts=utc_now_iso())
            producer.send(settings.topic_raw, key=row["customerID"].encode(), value=encode_event(event))
        producer.flush(timeout=60)
    finally:
        producer.close()
    summary_path = tmp_path / "consumer.json"
    consumed = run_script("consumer.py", ["--mode", "batch", "--summary-json", str(summary_path)], env, timeout=180)
    assert consumed.returncode == 0, consumed.stderr
    psi = orjson.loads(summary_path.read_bytes())["feature_psi"]
    warned = set(re.findall(r"drift: (\w+) has PSI", consumed.stderr))
    over = {name for name, value in psi.items() if value > 0.2}
    print(f"FIGURES drift {population}: " + " ".join(f"{k}={v:.3f}" for k, v in sorted(psi.items())))
    if population == "month-to-month fiber":
        assert {"Contract", "InternetService"} <= over
        assert {"Contract", "InternetService"} <= warned
        assert "drift_psi=" in consumed.stdout
    else:
        assert over == set() and warned == set()

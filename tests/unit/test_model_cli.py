"""churn-model list / promote / rollback / migrate, and training into a store, in-process on a temporary store."""

from __future__ import annotations

import hashlib
import json
import shutil
import threading
from pathlib import Path

import pytest

from churnstream.cli import model as model_cli
from churnstream.cli import train as train_cli
from churnstream.errors import EXIT_CONFIG, EXIT_MODEL_INTEGRITY
from churnstream.ml.dataset import DATASET_LABEL
from churnstream.ml.store import CARD_FILE, LEGACY_MODEL_FILE, MODEL_FILE, ModelStore
from churnstream.ml.train import TrainOptions, train_into
from tests.helpers import current_card_path, current_model_path, make_rows, telco_contract, write_csv


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    """Two real versions: the project's current model, and one trained on small made-up rows (newer)."""
    store = ModelStore(tmp_path / "models")
    store.add(current_model_path().read_bytes(), json.loads(current_card_path().read_text()))
    data = write_csv(tmp_path / "rows.csv", make_rows(300))
    train_into(store, data, telco_contract(), DATASET_LABEL, options=TrainOptions(class_weight="balanced"))
    return store


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = model_cli.main(["-q", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def test_list_shows_every_version_oldest_first_and_marks_the_current(
    store: ModelStore, capsys: pytest.CaptureFixture[str]
) -> None:
    old, new = store.versions()
    store.promote(new)
    code, out, _ = run_cli(["--store", str(store.root), "list"], capsys)
    assert code == 0
    header, first, second = out.strip().splitlines()
    assert header.split() == ["VERSION", "TRAINED_AT", "THRESHOLD", "RULE", "ROC_AUC", "PRECISION", "RECALL"]
    assert first.split()[0] == old and second.split()[:2] == ["*", new]
    card = store.card(new)
    assert f"{card['threshold']:.4f}" in second and card["threshold_rule"]["rule"] in second
    assert f"{card['metrics']['roc_auc']:.4f}" in second


def test_the_store_comes_from_model_store_without_a_flag(
    store: ModelStore, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CHURN_DOTENV", "none")
    monkeypatch.setenv("MODEL_STORE", str(store.root))
    code, out, _ = run_cli(["list"], capsys)
    assert code == 0 and all(version in out for version in store.versions())


def test_promote_and_rollback(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = store.versions()
    root = ["--store", str(store.root)]
    assert run_cli([*root, "promote", old], capsys)[:2] == (0, f"current: {old} (was none)\n")
    assert run_cli([*root, "promote", new], capsys)[:2] == (0, f"current: {new} (was {old})\n")
    assert store.current() == new
    assert run_cli([*root, "rollback"], capsys)[:2] == (0, f"current: {old} (was {new})\n")
    assert store.current() == old
    code, out, err = run_cli([*root, "rollback"], capsys)
    assert (code, out) == (EXIT_CONFIG, "")
    assert len(err) == 1 and err[0].startswith("Error: no earlier model version to roll back to")


def test_an_unknown_version_is_one_line_and_exit_3(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["promote", "logreg-nope"], ["compare", "--main-version", "logreg-nope"]):
        code, out, err = run_cli(["--store", str(store.root), *command], capsys)
        assert (code, out) == (EXIT_CONFIG, "")
        assert len(err) == 1
        assert err[0].startswith("Error: model version 'logreg-nope' is not in the store")
        assert all(version in err[0] for version in store.versions())  # it lists the known ones
    assert store.current() is None


def test_a_version_that_fails_its_checks_is_not_promoted(store: ModelStore, capsys: pytest.CaptureFixture[str]) -> None:
    old, new = store.versions()
    store.promote(old)
    model_path, _ = store.paths(new)
    model_path.write_bytes(model_path.read_bytes() + b"\x00")
    code, _, err = run_cli(["--store", str(store.root), "promote", new], capsys)
    assert code == EXIT_MODEL_INTEGRITY
    assert len(err) == 1 and "sha256" in err[0]
    assert store.current() == old


def test_migrate_moves_the_single_file_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "models"
    root.mkdir()
    shutil.copy(current_model_path(), root / LEGACY_MODEL_FILE)
    shutil.copy(current_card_path(), root / CARD_FILE)
    version = json.loads(current_card_path().read_text())["model_version"]
    code, out, _ = run_cli(["--store", str(root), "migrate"], capsys)
    assert (code, out) == (0, f"migrated the single-file model into {root / version}\n")
    assert (root / version / MODEL_FILE).is_file() and ModelStore(root).current() == version
    assert run_cli(["--store", str(root), "migrate"], capsys)[:2] == (0, "nothing to migrate\n")


def test_training_adds_a_version_and_promotes_only_when_asked(
    tmp_path: Path, real_data_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ModelStore(tmp_path / "models")
    base = ["-q", "--store", str(store.root), "--data", str(real_data_path)]
    assert train_cli.main([*base, "--C", "0.5"]) == 0  # an empty store: the first version becomes current
    first = store.current()
    assert first is not None and f"current: {first} (was none)" in capsys.readouterr().out
    assert train_cli.main([*base, "--class-weight", "balanced", "--cost-ratio", "3"]) == 0
    out = capsys.readouterr().out
    (second,) = set(store.versions()) - {first}
    assert store.current() == first and f"churn-model promote {second}" in out  # written, not promoted
    card = store.card(second)
    assert card["threshold_rule"] == {"rule": "min_cost", "cost_ratio": 3.0}
    assert card["training_options"] == {"C": 1.0, "class_weight": "balanced", "cost_ratio": 3.0, "calibrate": None}
    assert train_cli.main([*base, "--if-missing"]) == 0  # a valid current version: nothing to do
    assert f"model {first} is current" in capsys.readouterr().out and len(store.versions()) == 2
    assert train_cli.main([*base, "--class-weight", "balanced", "--cost-ratio", "3", "--promote"]) == 0
    assert "already in the store" in capsys.readouterr().out  # the same data and options: the same version
    assert store.current() == second and len(store.versions()) == 2


def test_rollback_makes_current_the_version_it_checked_while_another_writer_promotes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: rollback checked store.previous() outside the lock and then chose its target again; a
    promotion in between (here v3, while v1 was being checked) made v2 current, never checked."""
    store = ModelStore(tmp_path / "models")
    for version in ("v1", "v2", "v3"):
        payload = f"pickle of {version}".encode()
        store.add(payload, {"model_version": version, "model_sha256": hashlib.sha256(payload).hexdigest()})
    store.promote("v1")
    store.promote("v2")
    checked: list[str] = []
    writer = threading.Thread(target=store.promote, args=("v3",))

    def verify(store: ModelStore, version: str) -> None:
        checked.append(version)
        writer.start()  # another churn-model promote, while this version is being loaded
        writer.join(timeout=1.0)  # it waits for the lock now; before, it went through at once

    monkeypatch.setattr(model_cli, "verify_version", verify)
    try:
        code, out, _ = run_cli(["--store", str(store.root), "rollback"], capsys)
    finally:
        writer.join(timeout=10)
    assert (code, out, checked) == (0, "current: v1 (was v2)\n", ["v1"])
    assert store.current() == "v3"  # the other writer then went on


def test_a_current_version_whose_folder_is_gone_counts_as_missing_for_make_model(store: ModelStore) -> None:
    """Before: ConfigError (exit 3) from 'make model' instead of training a new current version."""
    old, new = store.versions()
    store.promote(new)
    shutil.rmtree(store.root / new)
    assert train_cli.usable_current(store) is None
    store.promote(old)
    assert train_cli.usable_current(store) is not None

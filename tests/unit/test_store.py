"""The model store: versions on disk, an atomic ``current``, rollback, the legacy layout, resolve_model."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing
from churnstream.ml import store as store_module
from churnstream.ml.model import load_model
from churnstream.ml.store import (
    CARD_FILE,
    CURRENT_FILE,
    HISTORY_FILE,
    LEGACY_MODEL_FILE,
    MODEL_FILE,
    ModelStore,
    resolve_model,
)
from churnstream.settings import settings_from
from tests.helpers import current_card_path, current_model_path


def fake_model(version: str, trained_at: str, payload: bytes | None = None) -> tuple[bytes, dict[str, Any]]:
    payload = payload if payload is not None else f"pickle of {version}".encode()
    card = {"model_version": version, "model_sha256": hashlib.sha256(payload).hexdigest(), "trained_at": trained_at}
    return payload, card


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    return ModelStore(tmp_path / "models")


def add(store: ModelStore, version: str, trained_at: str = "2026-12-01T00:00:00.000Z") -> str:
    return store.add(*fake_model(version, trained_at))


def test_add_writes_a_whole_version_folder_and_versions_are_oldest_first(store: ModelStore) -> None:
    assert store.versions() == []
    # added in another order than their age, and named against it: the card's trained_at decides
    add(store, "a-newest", "2026-12-03T00:00:00.000Z")
    add(store, "z-oldest", "2026-12-01T00:00:00.000Z")
    add(store, "m-middle", "2026-12-02T00:00:00.000Z")
    assert store.versions() == ["z-oldest", "m-middle", "a-newest"]
    model_path, card_path = store.paths("m-middle")
    assert model_path == store.root / "m-middle" / MODEL_FILE and card_path.name == CARD_FILE
    assert model_path.read_bytes() == b"pickle of m-middle"
    assert json.loads(card_path.read_text())["model_file"] == MODEL_FILE
    assert [p.name for p in store.root.iterdir() if p.name.endswith(".tmp")] == []  # no temp folder left
    assert store.current() is None and store.current_marker() is None  # adding promotes nothing


def test_a_version_that_exists_is_left_alone(store: ModelStore) -> None:
    add(store, "v1", "2026-12-01T00:00:00.000Z")
    assert add(store, "v1", "2030-01-01T00:00:00.000Z") == "v1"
    assert store.card("v1")["trained_at"] == "2026-12-01T00:00:00.000Z"


def test_add_refuses_bytes_that_are_not_the_cards_and_names_that_are_not_folders(store: ModelStore) -> None:
    payload, card = fake_model("v1", "t")
    with pytest.raises(ModelIntegrityError, match="not adding it"):
        store.add(payload + b"x", card)
    for name in ("../escape", ".hidden", "", "a/b"):
        with pytest.raises(ConfigError, match="is not valid"):
            store.add(payload, {**card, "model_version": name})
    assert store.versions() == []


def test_an_unknown_version_is_one_line_listing_the_known_ones(store: ModelStore) -> None:
    add(store, "v1")
    add(store, "v2", "2026-12-02T00:00:00.000Z")
    for unknown in ("v3", "../v1", CURRENT_FILE):
        with pytest.raises(ConfigError) as refused:
            store.paths(unknown)
        message = str(refused.value)
        assert len(message.splitlines()) == 1
        assert f"model version {unknown!r} is not in the store" in message and "(known: v1, v2)" in message
    with pytest.raises(ConfigError, match="is not in the store"):
        store.promote("v3")
    assert store.current() is None


def test_promote_returns_the_previous_version_and_records_it(store: ModelStore) -> None:
    for version in ("v1", "v2"):
        add(store, version)
    assert store.promote("v1") is None
    marker = store.current_marker()
    assert store.promote("v2") == "v1"
    assert store.current() == "v2"
    assert (store.root / CURRENT_FILE).read_text() == "v2\n"
    assert store.current_marker() != marker  # a new file each time: one stat sees the change
    assert store.history() == ["v1", "v2"]
    assert store.promote("v2") == "v2"  # promoting the current one changes nothing
    assert store.history() == ["v1", "v2"]


def test_a_reader_never_sees_a_partial_current_while_another_thread_promotes(store: ModelStore) -> None:
    versions = ["v-one", "v-two-with-a-longer-name"]
    for version in versions:
        add(store, version)
    store.promote(versions[0])
    stop = threading.Event()

    def promote_in_a_loop() -> None:
        index = 0
        while not stop.is_set():
            index += 1
            store.promote(versions[index % 2])

    seen: list[str | None] = []
    writer = threading.Thread(target=promote_in_a_loop)
    writer.start()
    try:
        markers = set()
        while len(seen) < 20_000 or len(set(seen)) < 2:
            seen.append(store.current())
            markers.add(store.current_marker())
    finally:
        stop.set()
        writer.join()
    assert set(seen) == set(versions)  # both seen, and nothing else: never None, empty or half a name
    assert len(markers) > 2
    assert not [p for p in store.root.iterdir() if p.name.endswith(".tmp")]


def test_rollback_steps_back_one_promotion_at_a_time(store: ModelStore) -> None:
    for version in ("v1", "v2", "v3"):
        add(store, version)
        store.promote(version)
    assert store.previous() == "v2"
    assert store.rollback() == "v2"
    assert store.current() == "v2"
    assert store.rollback() == "v1"
    with pytest.raises(ConfigError, match="no earlier model version to roll back to"):
        store.rollback()
    assert store.current() == "v1"
    store.promote("v3")
    assert store.rollback() == "v1"  # back to what was current before v3


def test_rollback_from_a_current_set_by_hand(store: ModelStore) -> None:
    for version in ("v1", "v2", "v3"):
        add(store, version)
    store.promote("v1")
    store.promote("v2")
    (store.root / CURRENT_FILE).write_text("v3\n")  # an operator's edit: v3 was never promoted
    assert store.rollback() == "v2"
    (store.root / HISTORY_FILE).unlink()
    with pytest.raises(ConfigError, match="no earlier model version"):
        store.rollback()


def test_rollback_to_a_version_whose_folder_is_gone_is_refused(store: ModelStore) -> None:
    for version in ("v1", "v2"):
        add(store, version)
        store.promote(version)
    shutil.rmtree(store.root / "v1")
    with pytest.raises(ConfigError, match="'v1' is not in the store"):
        store.rollback()
    assert store.current() == "v2"


def _legacy_layout(root: Path) -> tuple[bytes, dict[str, Any]]:
    """The single-file layout, made from the current model (a real pickle and card)."""
    root.mkdir(parents=True, exist_ok=True)
    payload = current_model_path().read_bytes()
    card = json.loads(current_card_path().read_text())
    (root / LEGACY_MODEL_FILE).write_bytes(payload)
    (root / CARD_FILE).write_text(json.dumps({**card, "model_file": LEGACY_MODEL_FILE}))
    return payload, card


def test_migrate_legacy_moves_the_files_into_a_version_and_makes_it_current(store: ModelStore) -> None:
    assert store.migrate_legacy() is None  # nothing to migrate
    payload, card = _legacy_layout(store.root)
    version = store.migrate_legacy()
    assert version == card["model_version"]
    assert not (store.root / LEGACY_MODEL_FILE).exists() and not (store.root / CARD_FILE).exists()
    model_path, card_path = store.paths(version)
    assert model_path.read_bytes() == payload
    assert json.loads(card_path.read_text())["model_file"] == MODEL_FILE
    assert store.current() == version
    assert load_model(model_path, card_path).version == version  # it still passes every check
    assert store.migrate_legacy() is None


def test_migrate_legacy_leaves_a_current_version_current(store: ModelStore) -> None:
    add(store, "v1")
    store.promote("v1")
    _, card = _legacy_layout(store.root)
    assert store.migrate_legacy() == card["model_version"]
    assert store.current() == "v1"
    assert card["model_version"] in store.versions()


def test_migrate_legacy_without_a_card_names_the_version_by_its_hash(store: ModelStore) -> None:
    store.root.mkdir()
    (store.root / LEGACY_MODEL_FILE).write_bytes(b"an old pickle")
    version = store.migrate_legacy()
    assert version == "legacy-" + hashlib.sha256(b"an old pickle").hexdigest()[:12]
    assert (store.root / version / MODEL_FILE).read_bytes() == b"an old pickle"
    with pytest.raises(ModelMissing, match=r"model card .* is missing"):
        load_model(*store.paths(version))


def test_resolve_model_follows_the_current_version(store: ModelStore) -> None:
    settings = settings_from({"MODEL_STORE": str(store.root)})
    with pytest.raises(ModelMissing, match=r"has no current version.*run 'make model'"):
        resolve_model(settings)
    add(store, "v1")
    store.promote("v1")
    ref = resolve_model(settings)
    assert (ref.version, ref.pinned) == ("v1", False)
    assert ref.paths == store.paths("v1")
    shutil.rmtree(store.root / "v1")
    with pytest.raises(ModelMissing, match="names a version that is gone"):
        resolve_model(settings)


def test_resolve_model_pinned_by_model_path_ignores_the_store(store: ModelStore, tmp_path: Path) -> None:
    add(store, "v1")
    store.promote("v1")
    pinned = tmp_path / "elsewhere" / MODEL_FILE
    pinned.parent.mkdir()
    shutil.copy(current_model_path(), pinned)
    shutil.copy(current_card_path(), pinned.parent / CARD_FILE)
    ref = resolve_model(settings_from({"MODEL_STORE": str(store.root), "MODEL_PATH": str(pinned)}))
    assert ref.pinned and ref.model_path == pinned and ref.card_path == pinned.parent / CARD_FILE
    assert ref.version == json.loads(current_card_path().read_text())["model_version"]
    assert load_model(*ref.paths).version == ref.version


def test_a_pinned_legacy_path_that_is_gone_says_where_models_live_now(tmp_path: Path) -> None:
    settings = settings_from({"MODEL_STORE": str(tmp_path), "MODEL_PATH": str(tmp_path / LEGACY_MODEL_FILE)})
    with pytest.raises(ModelMissing, match="leave MODEL_PATH empty to follow its current version"):
        resolve_model(settings)


def test_fallbacks_are_the_earlier_promotions_newest_first_each_once(store: ModelStore) -> None:
    for version in ("v1", "v2", "v3"):
        add(store, version)
    for version in ("v1", "v2", "v3", "v2", "v3"):
        store.promote(version)
    assert store.fallbacks("v3") == ["v2", "v1"]
    store.rollback()
    assert (store.current(), store.fallbacks("v2")) == ("v2", ["v3", "v1"])
    assert ModelStore(store.root / "nothing").fallbacks("v1") == []


def test_the_files_marker_changes_when_a_versions_files_are_replaced_repaired_or_removed(store: ModelStore) -> None:
    add(store, "v1")
    model_path, card_path = store.paths("v1")
    seen = [store.files_marker("v1")]
    assert store.files_marker("v1") == seen[-1]  # stable while nothing changes
    card_path.chmod(0o600)  # a permission repaired: its mode and ctime say so
    seen.append(store.files_marker("v1"))
    temp = model_path.with_name("replacement")
    temp.write_bytes(model_path.read_bytes())
    temp.replace(model_path)  # the same bytes, a new file
    seen.append(store.files_marker("v1"))
    card_path.unlink()
    seen.append(store.files_marker("v1"))
    shutil.rmtree(store.root / "v1")
    seen.append(store.files_marker("v1"))
    assert len(set(seen)) == len(seen)
    assert seen[-1] == ("FileNotFoundError",) * 3
    assert store.files_marker("../v1") == ("not a version name",)


@pytest.fixture
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    """The process umask set to the parameter for the test (a trainer's shell, a service's UMask=)."""
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


@pytest.mark.parametrize("umask", [0o077, 0o002, 0o022], indirect=True)
def test_the_stores_folders_and_files_have_their_modes_whatever_the_umask(store: ModelStore, umask: int) -> None:
    """Before: the version folder took the umask (0700 under 077: unreadable by a consumer running as
    another user; 0775 under 002: group-writable, and a model file runs code when loaded)."""
    add(store, "v1")
    store.promote("v1")
    modes = {
        path.relative_to(store.root.parent).as_posix(): stat.S_IMODE(path.stat().st_mode)
        for path in [store.root, *store.root.rglob("*")]
        if path.name != ".lock"
    }
    assert modes == {
        "models": 0o755,
        "models/v1": 0o755,
        f"models/v1/{MODEL_FILE}": 0o644,
        f"models/v1/{CARD_FILE}": 0o644,
        f"models/{CURRENT_FILE}": 0o644,
        f"models/{HISTORY_FILE}": 0o644,
    }


def test_the_temp_folder_is_synced_before_it_is_renamed_into_place(
    store: ModelStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before: the files and the store folder were synced, not the temp folder's own entries, so a power
    cut after the rename could leave a version folder without its files. (What a test can see: which
    folder is synced when; the durability itself needs a power cut.)"""
    synced: list[tuple[str, bool]] = []
    real = store_module._fsync_folder

    def recording(folder: Path) -> None:
        synced.append((folder.name, (store.root / "v1").exists()))
        real(folder)

    monkeypatch.setattr(store_module, "_fsync_folder", recording)
    add(store, "v1")
    temp_syncs = [placed for name, placed in synced if name.startswith(".v1.") and name.endswith(".tmp")]
    assert temp_syncs == [False]  # once, before the rename made v1 appear
    assert synced[-1] == ("models", True)  # then the store folder, with v1 in it


def test_migrate_legacy_names_the_card_as_its_folder_when_the_cards_name_is_taken(store: ModelStore) -> None:
    """Before: the folder was legacy-<sha12> and its card still named the taken version, so a consumer
    refused it ("its card names version ...") on every start."""
    payload, card = _legacy_layout(store.root)
    taken = card["model_version"]
    store.add(*fake_model(taken, "2026-12-01T00:00:00.000Z"))  # another model under the legacy card's name
    version = store.migrate_legacy()
    assert version == "legacy-" + hashlib.sha256(payload).hexdigest()[:12]
    assert load_model(*store.paths(version)).version == version  # it loads as what its folder says
    assert store.card(version)["migrated_from_version"] == taken


def test_a_check_that_refuses_leaves_current_as_it_was(store: ModelStore) -> None:
    for version in ("v1", "v2", "v3"):
        add(store, version)
    store.promote("v1")
    store.promote("v2")
    checked: list[str] = []

    def refuse(version: str) -> None:
        checked.append(version)
        raise ModelIntegrityError(f"model {version} does not score its canary rows as recorded")

    with pytest.raises(ModelIntegrityError, match="model v3 does not score"):
        store.promote("v3", check=refuse)
    with pytest.raises(ModelIntegrityError, match="model v1 does not score"):
        store.rollback(check=refuse)
    assert checked == ["v3", "v1"]
    assert (store.current(), store.history()) == ("v2", ["v1", "v2"])

"""The consumer's model swap between batches, with a fake store and fake loads (no files, no broker)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from churnstream.consumer.models import ModelWatcher, follow_store
from churnstream.contract.events import Contract
from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing
from tests.helpers import telco_contract


@dataclass
class Model:
    version: str
    threshold: float = 0.5

    @property
    def contract(self) -> Contract:
        return telco_contract()

    def predict_proba(self, rows: Any) -> list[float]:
        return [0.5] * len(rows)

    def canary_problem(self) -> str | None:
        return None


class Store:
    def __init__(self, current: str | None, history: list[str] | None = None) -> None:
        self._current = current
        self.writes = 0
        self.broken: dict[str, Exception] = {}
        self.history = history if history is not None else [current] if current else []
        self.edits: dict[str, int] = {}  # version -> how often its files changed on disk

    def promote(self, version: str) -> None:
        self._current = version
        self.writes += 1  # an atomic rename: a new marker even for the same name
        self.history.append(version)

    def current_marker(self) -> tuple[int, int] | None:
        return (self.writes, 0)

    def current(self) -> str | None:
        return self._current

    def require_current(self) -> str:
        if self._current is None:
            raise ModelMissing("the model store has no current version")
        return self._current

    def paths(self, version: str) -> tuple[Path, Path]:
        if version == "ghost":
            raise ConfigError(f"no model version {version!r}")
        return Path(version) / "model.pkl", Path(version) / "model_card.json"

    def files_marker(self, version: str) -> tuple[object, ...]:
        return (version, self.edits.get(version, 0))

    def edit(self, version: str) -> None:
        """The version's files change on disk (repaired, replaced, made readable)."""
        self.edits[version] = self.edits.get(version, 0) + 1

    def fallbacks(self, current: str) -> list[str]:
        order: list[str] = []
        for version in reversed(self.history):
            if version != current and version not in order:
                order.append(version)
        return order


def loader(store: Store, loads: list[str]) -> Any:
    def load(model_path: Path, card_path: Path) -> Model:
        version = model_path.parent.name
        loads.append(version)
        if version in store.broken:
            raise store.broken[version]
        return Model(version)

    return load


def test_nothing_is_loaded_while_current_does_not_change() -> None:
    store, loads = Store("v1"), []
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads))
    for _ in range(100):
        assert watcher.check().version == "v1"
    assert loads == []


def test_a_promoted_version_serves_from_the_next_batch_and_is_reported() -> None:
    store, loads, swapped = Store("v1"), [], []
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads), on_swap=lambda m: swapped.append(m.version))
    store.promote("v2")
    assert watcher.check().version == "v2"
    assert watcher.check().version == "v2"
    assert loads == ["v2"]  # loaded once
    assert swapped == ["v2"]
    assert watcher.swaps == [("v1", "v2")]


@pytest.mark.parametrize(
    ("version", "failure"),
    [
        ("v2", ModelIntegrityError("model file v2/model.pkl has sha256 0000..., but its card says 1111...")),
        ("ghost", None),
    ],
)
def test_a_version_that_fails_verification_is_refused_and_the_current_keeps_serving(
    version: str, failure: Exception | None, caplog: pytest.LogCaptureFixture
) -> None:
    store, loads, refused = Store("v1"), [], []
    if failure is not None:
        store.broken[version] = failure
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads), on_refused=lambda v, r: refused.append(v))
    store.promote(version)
    with caplog.at_level(logging.WARNING):
        assert watcher.check().version == "v1"
        assert watcher.check().version == "v1"  # not retried while current stays the same
    assert refused == [version]
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert line.startswith(f"model {version} refused, v1 keeps serving: ")
    store.broken.clear()
    store.promote("v3")  # a later promotion is looked at again
    assert watcher.check().version == "v3"


def test_a_card_that_names_another_version_is_refused() -> None:
    store, refused = Store("v1"), []

    def load(model_path: Path, card_path: Path) -> Model:
        return Model("something-else")

    watcher = ModelWatcher(store, Model("v1"), load, on_refused=lambda v, r: refused.append(r))
    store.promote("v2")
    assert watcher.check().version == "v1"
    assert refused == ["its card names version something-else"]


def test_rolling_back_to_the_serving_version_loads_nothing() -> None:
    store, loads = Store("v1"), []
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads))
    store.promote("v1")
    assert watcher.check().version == "v1"
    assert loads == []


def test_a_promotion_made_while_the_consumer_was_loading_is_seen_at_the_first_check() -> None:
    store, loads = Store("v1"), []
    store.promote("v2")  # between reading current (v1) and creating the watcher
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads))
    assert watcher.check().version == "v2"


class Unreadable(Store):
    def __init__(self, current: str) -> None:
        super().__init__(current)
        self.failing = True

    def current_marker(self) -> tuple[int, int] | None:
        if self.failing:
            raise PermissionError(13, "Permission denied")
        return super().current_marker()


def test_a_store_that_cannot_be_read_is_one_warning_and_the_model_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store, loads = Unreadable("v1"), []
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads))
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            assert watcher.check().version == "v1"
    assert [r.getMessage() for r in caplog.records] == [
        "the model store cannot be read (PermissionError: [Errno 13] Permission denied); v1 keeps serving"
    ]
    store.failing = False
    store.promote("v2")
    assert watcher.check().version == "v2"


@pytest.mark.parametrize(
    "failure",
    [
        PermissionError(13, "Permission denied"),
        TypeError("'int' object is not iterable"),
        KeyError(110),
    ],
)
def test_any_failure_loading_a_promoted_version_is_a_refusal_and_the_model_keeps_serving(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    """Before: only PipelineError was caught; a PermissionError or a TypeError ended the consumer (exit 1)."""
    store, loads, refused = Store("v1"), [], []
    store.broken["v2"] = failure
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads), on_refused=lambda v, r: refused.append((v, r)))
    store.promote("v2")
    with caplog.at_level(logging.WARNING):
        assert watcher.check().version == "v1"
    reason = f"{type(failure).__name__}: {failure}"
    assert refused == [("v2", reason)]
    assert [r.getMessage() for r in caplog.records] == [f"model v2 refused, v1 keeps serving: {reason}"]


def test_a_refused_current_version_is_loaded_again_when_its_files_change_and_only_then() -> None:
    """Before: a refused version was never looked at again while it stayed current."""
    store, loads, fallback = Store("v1"), [], []
    store.broken["v2"] = ModelIntegrityError("model file v2/model.pkl has sha256 0000..., but its card says 1111...")
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads), on_fallback=fallback.append)
    store.promote("v2")
    for _ in range(50):
        assert watcher.check().version == "v1"
    assert loads == ["v2"] and fallback == ["v2"] and watcher.fallback_from == "v2"
    store.edit("v2")  # still broken: tried once more, refused once more
    assert [watcher.check().version for _ in range(5)] == ["v1"] * 5
    assert loads == ["v2", "v2"] and watcher.refused == ["v2", "v2"]
    del store.broken["v2"]
    store.edit("v2")  # repaired
    assert watcher.check().version == "v2"
    assert loads == ["v2", "v2", "v2"] and fallback == ["v2", "v2", None] and watcher.fallback_from is None


def test_rolling_back_to_the_serving_version_ends_the_fallback() -> None:
    store, loads, fallback = Store("v1"), [], []
    store.broken["v2"] = ModelIntegrityError("canaries off")
    watcher = ModelWatcher(store, Model("v1"), loader(store, loads), on_fallback=fallback.append)
    store.promote("v2")
    watcher.check()
    store.promote("v1")  # what churn-model rollback writes
    assert watcher.check().version == "v1"
    assert loads == ["v2"] and fallback == ["v2", None]


def test_at_start_the_current_version_serves_and_nothing_is_loaded_again() -> None:
    store, loads, fallback = Store("v2", ["v1", "v2"]), [], []
    watcher = follow_store(store, loader(store, loads), on_fallback=fallback.append)
    assert watcher.model.version == "v2"
    for _ in range(10):
        watcher.check()
    assert loads == ["v2"] and fallback == [] and watcher.refused == []


def test_at_start_a_current_version_that_does_not_load_falls_back_to_the_newest_earlier_one_that_does(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Before: the consumer stopped with exit 6, and so did every restart, until someone rolled back."""
    store, loads, refused, fallback = Store("v4", ["v1", "v2", "v3", "v2", "v4"]), [], [], []
    store.broken["v4"] = TypeError("'int' object is not iterable")
    store.broken["v2"] = ModelIntegrityError("model v2 was trained with scikit-learn 1.5.2")
    with caplog.at_level(logging.WARNING):
        watcher = follow_store(
            store, loader(store, loads), on_refused=lambda v, r: refused.append(v), on_fallback=fallback.append
        )
    assert watcher.model.version == "v3"
    assert loads == ["v4", "v2", "v3"]  # the history newest first, each version once
    assert refused == ["v4", "v2"] == watcher.refused and fallback == ["v4"] and watcher.fallback_from == "v4"
    assert [r.getMessage() for r in caplog.records] == [
        "model v2 (an earlier version of the history) refused too: model v2 was trained with scikit-learn 1.5.2",
        "model v4 (the store's current version) refused, serving v3 instead (the newest earlier version of its "
        "history that loads) until v4 loads or another version is promoted: TypeError: 'int' object is not iterable",
    ]
    for _ in range(10):
        assert watcher.check().version == "v3"  # not loaded again while its files stay as they were
    assert loads == ["v4", "v2", "v3"]
    del store.broken["v4"]
    store.edit("v4")
    assert watcher.check().version == "v4"
    assert fallback == ["v4", None]


def test_a_promotion_made_while_falling_back_at_start_is_seen_at_the_first_check() -> None:
    store, loads = Store("v2", ["v1", "v2"]), []
    store.broken["v2"] = ModelIntegrityError("canaries off")
    real = loader(store, loads)

    def load(model_path: Path, card_path: Path) -> Model:
        if model_path.parent.name == "v1":
            store.promote("v3")  # another writer, while this consumer loads its fallback
        return real(model_path, card_path)

    watcher = follow_store(store, load)
    assert watcher.model.version == "v1"
    assert watcher.check().version == "v3"


@pytest.mark.parametrize(
    ("current", "failure", "code"),
    [
        ("v2", ModelMissing("model file v2/model.pkl is missing"), 5),
        ("ghost", None, 5),  # the folder current names is gone
        ("v2", PermissionError(13, "Permission denied"), 6),
    ],
)
def test_at_start_no_version_that_loads_is_the_current_versions_error(
    current: str, failure: Exception | None, code: int
) -> None:
    store, loads = Store(current, ["v1", current]), []
    store.broken = {"v1": ModelIntegrityError("canaries off")}
    if failure is not None:
        store.broken[current] = failure
    with pytest.raises((ModelMissing, ModelIntegrityError)) as refused:
        follow_store(store, loader(store, loads))
    assert refused.value.exit_code == code
    message = str(refused.value)
    assert message.startswith(f"no version of the model store loads (tried {current}, v1); the current one: ")
    assert len(message.splitlines()) == 1


def test_at_start_a_store_without_a_current_version_is_model_missing() -> None:
    with pytest.raises(ModelMissing, match="no current version"):
        follow_store(Store(None), loader(Store(None), []))

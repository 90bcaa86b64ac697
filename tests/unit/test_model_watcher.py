"""The consumer's model swap between batches, with a fake store and fake loads (no files, no broker)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from churnstream.consumer.models import ModelWatcher
from churnstream.contract.events import Contract
from churnstream.errors import ConfigError, ModelIntegrityError
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
    def __init__(self, current: str) -> None:
        self._current = current
        self.writes = 0
        self.broken: dict[str, Exception] = {}

    def promote(self, version: str) -> None:
        self._current = version
        self.writes += 1  # an atomic rename: a new marker even for the same name

    def current_marker(self) -> tuple[int, int] | None:
        return (self.writes, 0)

    def current(self) -> str | None:
        return self._current

    def paths(self, version: str) -> tuple[Path, Path]:
        if version == "ghost":
            raise ConfigError(f"no model version {version!r}")
        return Path(version) / "model.pkl", Path(version) / "model_card.json"


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

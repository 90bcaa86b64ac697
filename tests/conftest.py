"""Fixtures every test may use: unique names per test, and the real data set.

The broker fixtures live in tests/integration/conftest.py: unit tests never start one.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from churnstream.files import sha256_file
from churnstream.ml.dataset import DATASET_SHA256
from churnstream.settings import DEFAULT_DATA_PATH


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-")[:40]


@pytest.fixture
def unique(request: pytest.FixtureRequest) -> Callable[[str], str]:
    """``unique("raw")`` -> a topic or group name no other test (or run) uses."""
    run = uuid.uuid4().hex[:8]

    def make(kind: str) -> str:
        return f"t-{_slug(request.node.name)}-{kind}-{run}"

    return make


@pytest.fixture(scope="session")
def real_data_path() -> Path:
    """The verified Telco CSV (fetched by the set-up command)."""
    if not DEFAULT_DATA_PATH.is_file() or sha256_file(DEFAULT_DATA_PATH) != DATASET_SHA256:
        pytest.fail(f"{DEFAULT_DATA_PATH} is missing or altered: run 'make data' (make test does)")
    return DEFAULT_DATA_PATH

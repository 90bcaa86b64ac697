"""A version's holdout: the test rows it was measured on (``<store>/<version>/holdout.json``).

Training writes it beside the card (churnstream.ml.train.describe): the test split's keys, labels
and published (calibrated) probabilities. Those rows were never used to fit the model nor to choose
its threshold, so ``churn-model report`` draws the model from them and ``churn-model compare`` judges
a model only on events whose key is one of them. Versions made before card format 4 have no holdout.

The file is checked against the card's ``holdout.sha256`` before it is read: the figures a report
or a comparison prints are those of the rows the card was measured on.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from churnstream.errors import ModelIntegrityError, ModelMissing
from churnstream.ml.store import HOLDOUT_FILE, ModelStore


@dataclass(frozen=True)
class Holdout:
    """The test rows of one version: ``keys[i]`` had label ``labels[i]`` (1 churned) and probability
    ``probabilities[i]``."""

    version: str
    keys: tuple[str, ...]
    labels: np.ndarray  # int, 0 or 1
    probabilities: np.ndarray  # float, in [0, 1]

    @property
    def rows(self) -> int:
        return len(self.keys)


def older_release(version: str, purpose: str) -> ModelMissing:
    """The one line for a version without a holdout file."""
    return ModelMissing(f"model {version} has no {HOLDOUT_FILE}: made by an older release: retrain it to {purpose}")


def load_holdout(store: ModelStore, version: str, purpose: str, card: dict[str, Any] | None = None) -> Holdout:
    """The version's holdout, checked against its card (``card``, else read from the store).

    ConfigError for a version the store does not know (store.paths); ModelMissing (``purpose``: what the
    caller wanted it for, in the hint) when it has no holdout file; ModelIntegrityError when the file is
    not what the card recorded, or not keys, labels and probabilities of one length.
    """
    _, card_path = store.paths(version)
    path = card_path.parent / HOLDOUT_FILE
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        raise older_release(version, purpose) from None
    except OSError as exc:
        raise ModelIntegrityError(f"{path} cannot be read: {exc.strerror or exc}") from None
    card = card if card is not None else store.card(version)
    recorded = card.get("holdout") if isinstance(card.get("holdout"), dict) else {}
    digest = hashlib.sha256(payload).hexdigest()
    if recorded.get("sha256") != digest:
        raise ModelIntegrityError(
            f"{path} has sha256 {digest[:16]}..., its card records {str(recorded.get('sha256'))[:16]}...: "
            "the holdout is not the one the model was measured on"
        )
    try:
        document = json.loads(payload)
    except ValueError as exc:
        raise ModelIntegrityError(f"{path} is not JSON ({exc})") from None
    return _parsed(document, version, path.name)


def _parsed(document: Any, version: str, name: str) -> Holdout:
    if not isinstance(document, dict):
        raise ModelIntegrityError(f"{version}'s {name} is not a JSON object")
    keys, labels, probabilities = (document.get(field) for field in ("keys", "labels", "probabilities"))
    problems = []
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        problems.append("keys is not a list of strings")
    if not isinstance(labels, list) or not all(type(label) is int and label in (0, 1) for label in labels):
        problems.append("labels is not a list of 0 and 1")
    if not isinstance(probabilities, list) or not all(_is_probability(p) for p in probabilities):
        problems.append("probabilities is not a list of numbers in [0, 1]")
    if not problems and not len(keys) == len(labels) == len(probabilities):
        problems.append(f"{len(keys)} keys, {len(labels)} labels, {len(probabilities)} probabilities")
    if problems:
        raise ModelIntegrityError(f"{version}'s {name} is malformed: {'; '.join(problems)}")
    return Holdout(
        version=version,
        keys=tuple(keys),
        labels=np.asarray(labels, dtype=int),
        probabilities=np.asarray(probabilities, dtype=float),
    )


def _is_probability(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and 0 <= value <= 1

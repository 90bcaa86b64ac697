"""Load the churn model safely and score batches with it.

A joblib file runs code when it is loaded, so :func:`load_model` checks the file's sha256
against ``model_card.json`` *before* unpickling, and refuses a model trained with another
scikit-learn version (loading across versions is unsupported by scikit-learn). Which files to
load is churnstream.ml.store's answer (``resolve_model(settings)``: MODEL_PATH, else the store's
current version).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn

from churnstream.contract.events import Contract, compile_contract
from churnstream.contract.schema import EventSchema, schema_from_document
from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing
from churnstream.files import sha256_file
from churnstream.ml.calibration import Calibration
from churnstream.ml.drift import distribution_problem
from churnstream.ml.evaluation import Bands
from churnstream.ml.explain import LINEAR, OCCLUSION, LinearExplainer, OcclusionExplainer, top_reasons
from churnstream.ml.features import estimator_frame
from churnstream.ml.linear import LinearModel
from churnstream.ml.store import CARD_FILE

logger = logging.getLogger(__name__)

RETRAIN_COMMAND = "python -m churnstream.train --promote"
MODEL_KIND_TRAINED = "trained"  # by churn-train: SchemaEncoder + LogisticRegression
MODEL_KIND_IMPORTED = "imported"  # by churn-model import: any estimator with predict_proba
MODEL_HINT = f"run 'make model' (or: {RETRAIN_COMMAND}) to train one"


@dataclass(frozen=True)
class ChurnModel:
    """A verified model with the contract it carries: the consumer validates events against its schema,
    publishes its (calibrated) probabilities with their risk band and reasons."""

    pipeline: Any
    card: dict[str, Any]
    schema: EventSchema
    linear: LinearModel | None = None  # the project's own model: scored from tuples (churnstream.ml.linear)
    calibration: Calibration | None = None  # the card's (churnstream.ml.calibration)
    bands: Bands | None = None  # the card's risk bands (churnstream.ml.evaluation)
    explainer: LinearExplainer | OcclusionExplainer | None = None  # the card's reasons (churnstream.ml.explain)
    # The last rows the linear model scored, and their parts: explain() of the same rows reuses them
    # instead of encoding the batch twice. A reference to the rows, so their identity stays theirs.
    _last: list[Any] = field(default_factory=lambda: [None, None], compare=False, repr=False)

    @property
    def version(self) -> str:
        return str(self.card["model_version"])

    @property
    def threshold(self) -> float:
        return float(self.card["threshold"])

    @property
    def contract(self) -> Contract:
        return compile_contract(self.schema)

    @property
    def churn_column(self) -> int:
        """Which column of the pipeline's predict_proba is churn (an imported estimator's classes decide)."""
        return churn_column_of(self.card)

    def predict_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """Churn probability for each row (feature tuples in the schema's order), in one call; calibrated
        when the card has a calibration."""
        raw = self.raw_proba(rows)
        return raw if self.calibration is None or not len(raw) else self.calibration(raw)

    def raw_proba(self, rows: Sequence[Sequence[Any]]) -> np.ndarray:
        """The estimator's own probability, before any calibration (what its canary rows record)."""
        if not rows:
            return np.empty(0, dtype=float)
        if self.linear is not None:
            parts = self.linear.parts(rows)
            self._last[:] = [rows, parts]
            return self.linear.predict_proba(rows, parts)
        return self.pipeline.predict_proba(estimator_frame(self.schema, rows, self.pipeline))[:, self.churn_column]

    def band_names(self, probabilities: np.ndarray) -> list[str] | None:
        """Each probability's risk band; None for a model whose card has none."""
        return None if self.bands is None else self.bands.bands_of(probabilities)

    def explain(self, rows: Sequence[Sequence[Any]], probabilities: np.ndarray) -> list[list[dict]] | None:
        """Up to three reasons per row (churnstream.ml.explain); None for a model whose card has no method."""
        explainer = self.explainer
        if explainer is None or not rows:
            return None if explainer is None else []
        if isinstance(explainer, LinearExplainer):
            last_rows, parts = self._last
            contributions = explainer.contributions(rows, parts if last_rows is rows else None)
        else:
            contributions = explainer.contributions(rows, probabilities)
        return top_reasons(contributions, rows, self.schema.feature_names)

    def canary_problem(self) -> str | None:
        """None when the card's canary rows score as recorded at training, else what went wrong.

        The consumer asks this when a whole batch failed to score: hostile rows fail alone, a broken
        model (a library gone, a corrupted object) fails its canaries too.
        """
        return canary_problem(self.pipeline, self.card, self.schema, self.linear)


def churn_column_of(card: dict[str, Any]) -> int:
    """Which column of predict_proba is churn: 1 for the project's models, the card's for an import (read_card
    has checked it is 0 or 1)."""
    return int(card.get("churn_column", 1))


CANARY_TOLERANCE = 1e-9  # batch size changes the sum order in the matrix product: ~1e-16 seen


def canary_problem(
    pipeline: Any, card: dict[str, Any], schema: EventSchema, linear: LinearModel | None = None
) -> str | None:
    """None when the pipeline (and its linear fast path, if any) scores the card's canary rows as
    recorded, else what went wrong."""
    canaries = card.get("canaries") or []
    if not canaries:
        return "the card has no canary rows"
    contract = compile_contract(schema)
    column = churn_column_of(card)
    try:
        rows = [contract.features_of(canary["features"]) for canary in canaries]
        scorers = [("the pipeline", lambda: pipeline.predict_proba(estimator_frame(schema, rows, pipeline))[:, column])]
        if linear is not None:
            scorers.append(("its linear fast path", lambda: linear.predict_proba(rows)))
        for what, score in scorers:
            scored = [float(p) for p in score()]
            for index, (canary, probability) in enumerate(zip(canaries, scored, strict=True)):
                if not abs(probability - float(canary["probability"])) <= CANARY_TOLERANCE:
                    return f"canary row {index} scored {probability!r} by {what}, recorded {canary['probability']!r}"
    except Exception as exc:  # any failure here is the answer: the model cannot score known-good rows
        return f"{type(exc).__name__}: {exc}"
    return None


def read_card(card_path: Path) -> dict[str, Any]:
    """The card, its keys present and of the types the checks and the consumer use: ModelMissing when
    absent, ModelIntegrityError for anything else (unreadable, not JSON, a key missing or mistyped)."""
    try:
        card = json.loads(card_path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelMissing(f"model card {card_path} is missing; {MODEL_HINT}") from None
    except (OSError, ValueError) as exc:
        raise ModelIntegrityError(f"model card {card_path} is unreadable ({exc}); {MODEL_HINT}") from None
    if not isinstance(card, dict):
        raise ModelIntegrityError(f"model card {card_path} is not a JSON object; {MODEL_HINT}")
    required = ("model_version", "model_sha256", "sklearn_version", "threshold", "features", "canaries")
    absent = [key for key in required if key not in card]
    if absent:
        raise ModelIntegrityError(f"model card {card_path} lacks {', '.join(absent)}; {MODEL_HINT}")
    threshold = card["threshold"]
    if not _is_number(threshold) or not 0 < threshold < 1:
        raise ModelIntegrityError(
            f"model card {card_path} has threshold {threshold!r}; a number between 0 and 1 (exclusive) is "
            f"required; {MODEL_HINT}"
        )
    problem = card_type_problem(card)
    if problem is not None:
        raise ModelIntegrityError(f"model card {card_path}: {problem}; {MODEL_HINT}")
    return card


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_text(value: object) -> bool:
    return isinstance(value, str) and value != ""


def card_type_problem(card: dict[str, Any]) -> str | None:
    """None when the keys the checks read have their types, else which one does not: a malformed card is
    refused in one line, never a TypeError in the middle of a check (or of a hot reload)."""
    for key in ("model_version", "model_sha256", "sklearn_version"):
        if not _is_text(card[key]):
            return f"{key} is {card[key]!r}, not a non-empty string"
    features = card["features"]
    if not isinstance(features, list) or not all(_is_text(name) for name in features):
        return f"features is {_short(features)}, not a list of names"
    canaries = card["canaries"]
    if not isinstance(canaries, list):
        return f"canaries is {_short(canaries)}, not a list"
    for index, canary in enumerate(canaries):
        if not isinstance(canary, dict) or not isinstance(canary.get("features"), dict):
            return f"canary row {index} is {_short(canary)}, not an object with its features as an object"
        probability = canary.get("probability")
        if not _is_number(probability) or not 0 <= probability <= 1:
            return f"canary row {index} has probability {probability!r}, not a number between 0 and 1"
    column = card.get("churn_column", 1)
    if type(column) is not int or column not in (0, 1):
        return f"churn_column is {_short(column)}, not 0 or 1"
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def retrain_command(card: dict[str, Any]) -> str:
    """The command that trains this card's model again, with its options (the card's training_options)."""
    options = card.get("training_options") if isinstance(card.get("training_options"), dict) else {}
    flags = [RETRAIN_COMMAND]
    if options.get("C") not in (None, 1.0):
        flags.append(f"--C {options['C']}")
    if options.get("class_weight"):
        flags.append(f"--class-weight {options['class_weight']}")
    if options.get("cost_ratio") is not None:
        flags.append(f"--cost-ratio {options['cost_ratio']}")
    if options.get("calibrate"):
        flags.append(f"--calibrate {options['calibrate']}")
    return " ".join(flags)


def card_schema(card: dict[str, Any], where: str) -> EventSchema:
    """The event schema a card embeds, checked against its sha256 and the card's features."""
    if "schema" not in card:
        raise ModelIntegrityError(
            f"model {where} was made by an older release of this project (card format {card.get('card_format', 1)}, "
            f"without the event schema a model now carries); train a new one: {MODEL_HINT}"
        )
    try:
        schema = schema_from_document(card["schema"], f"embedded in {where}")
    except ConfigError as exc:
        raise ModelIntegrityError(f"model {where}: {exc}") from None
    if card.get("schema_sha256") != schema.sha256:
        raise ModelIntegrityError(
            f"model {where}: its card's schema has sha256 {schema.sha256[:16]}..., the card says "
            f"{str(card.get('schema_sha256'))[:16]}...; the card was edited"
        )
    if list(card["features"]) != list(schema.feature_names):
        raise ModelIntegrityError(
            f"model {where}: its card lists features {card['features']}, its schema {list(schema.feature_names)}"
        )
    return schema


def verify_model(model_path: Path, card_path: Path) -> tuple[dict[str, Any], EventSchema]:
    """Check the model file against its card without unpickling it. Returns the card and its schema."""
    if not model_path.is_file():
        raise ModelMissing(f"model file {model_path} is missing; {MODEL_HINT}")
    card = read_card(card_path)
    actual = sha256_file(model_path)
    if actual != card["model_sha256"]:
        raise ModelIntegrityError(
            f"model file {model_path} has sha256 {actual[:16]}..., but its card says "
            f"{str(card['model_sha256'])[:16]}...; refusing to load it (a joblib file runs code "
            f"when loaded); {MODEL_HINT}"
        )
    if card["sklearn_version"] != sklearn.__version__:
        again = (
            f"export it again with scikit-learn {sklearn.__version__} and import it: churn-model import"
            if card.get("model_kind") == MODEL_KIND_IMPORTED
            else f"retrain it here: {retrain_command(card)} (or 'make model' when it is the current version)"
        )
        raise ModelIntegrityError(
            f"model {card['model_version']} ({model_path}) was made with scikit-learn {card['sklearn_version']} "
            f"but this environment has {sklearn.__version__}; loading across versions is unsupported, so {again}"
        )
    schema = card_schema(card, str(model_path))
    if "training_distribution" in card:  # cards before the store have none: drift is then not tracked
        problem = distribution_problem(card["training_distribution"])
        if problem is not None:
            raise ModelIntegrityError(f"model card {card_path}: {problem}; {MODEL_HINT}")
    return card, schema


def load_model(model_path: Path, card_path: Path | None = None) -> ChurnModel:
    """The verified model: ModelMissing (a file or the card absent) or ModelIntegrityError (anything else
    that stops it loading and scoring its canaries), never another exception."""
    card_path = card_path or model_path.parent / CARD_FILE
    try:
        card, schema = verify_model(model_path, card_path)
    except OSError as exc:  # a file that exists but cannot be read (permissions, I/O)
        raise ModelIntegrityError(
            f"model {model_path} cannot be read ({type(exc).__name__}: {exc}); {MODEL_HINT}"
        ) from None
    try:
        pipeline = joblib.load(model_path)
    except Exception as exc:  # an unloadable pickle raises anything (KeyError, UnpicklingError, ...): refused
        raise ModelIntegrityError(
            f"model file {model_path} cannot be loaded ({type(exc).__name__}: {exc}); {MODEL_HINT}"
        ) from None
    linear = LinearModel.of(pipeline)
    problem = canary_problem(pipeline, card, schema, linear)
    if problem is not None:
        raise ModelIntegrityError(
            f"model {model_path} does not score its canary rows as recorded ({problem}); {MODEL_HINT}"
        )
    logger.debug("loaded model %s (%s)", card["model_version"], model_path)
    model = ChurnModel(pipeline=pipeline, card=card, schema=schema, linear=linear)
    try:
        calibration = Calibration.from_card(card["calibration"]) if card.get("calibration") else None
        bands = Bands.from_card(card["risk_bands"]) if "risk_bands" in card else None
        explainer = _explainer(model, calibration)
    except ValueError as exc:
        raise ModelIntegrityError(f"model card {card_path}: {exc}; {MODEL_HINT}") from None
    return replace(model, calibration=calibration, bands=bands, explainer=explainer)


def _explainer(model: ChurnModel, calibration: Calibration | None) -> LinearExplainer | OcclusionExplainer | None:
    """The card's reasons method, built for this model (ValueError when the card's entry does not fit it)."""
    entry = model.card.get("reasons")
    method = entry.get("method") if isinstance(entry, dict) else None
    if method is None:
        return None
    if method == LINEAR:
        if model.linear is None:
            raise ValueError("reasons by the linear method need the project's own model")
        scale = calibration.logit_scale if calibration is not None else 1.0
        return LinearExplainer.of(model.linear, scale if scale is not None else 1.0)
    if method == OCCLUSION:
        baselines = entry.get("baselines")
        names = model.schema.feature_names
        if not isinstance(baselines, dict) or set(baselines) != set(names):
            raise ValueError("reasons by occlusion need one baseline per feature")

        def score(rows: Sequence[Sequence[Any]]) -> np.ndarray:  # the published (calibrated) probability
            raw = model.raw_proba(rows)
            return calibration(raw) if calibration is not None else raw

        return OcclusionExplainer(score=score, baselines=tuple(baselines[name] for name in names))
    raise ValueError(f"reasons method {method!r}: linear, occlusion or none")

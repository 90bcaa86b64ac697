"""The three wire formats as JSON Schema (draft 2020-12), built from the contract itself.

``make docs`` writes them to ``schemas/``; tests/unit/test_contract.py fails when the committed files
differ from what this module builds, and validates real outputs against them.
"""

from __future__ import annotations

from typing import Any

from churnstream.contract.events import EVENT_ID, EVENT_TS, MAX_ID_LENGTH
from churnstream.contract.outputs import (
    DEADLETTER_HEADERS,
    HEADER_HEADERS_DROPPED,
    HEADER_KEY_ABSENT,
    HEADER_MODEL_VERSION,
    HEADER_REASON,
    HEADER_SOURCE_LAST_OFFSET,
    HEADER_SOURCE_OFFSET,
    HEADER_SOURCE_PARTITION,
    HEADER_STAGE,
    MAX_REASON_CHARS,
    PREDICTION_FIELDS,
    PREDICTION_NO,
    PREDICTION_YES,
    Stage,
)
from churnstream.contract.schema import FEATURES, ID_COLUMN, Categorical, Numeric

DRAFT = "https://json-schema.org/draft/2020-12/schema"
BASE_ID = "https://github.com/telco-churn-stream/schemas/"
TIMESTAMP_PATTERN = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})?$"
_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH}


def _feature(feature: Categorical | Numeric) -> dict[str, Any]:
    if isinstance(feature, Categorical):
        return {"type": "string", "enum": list(feature.allowed)}
    kind = "integer" if feature.kind is int else "number"
    number: dict[str, Any] = {"type": kind, "minimum": feature.low, "maximum": feature.high}
    # The producer writes typed numbers; the consumer also takes CSV-style decimal strings.
    text = {"type": "string", "pattern": r"^\s*-?[0-9]+(\.[0-9]+)?\s*$"}
    options: list[dict[str, Any]] = [number, text]
    if feature.nullable:
        options += [{"type": "null"}, {"type": "string", "pattern": r"^\s*$"}]
    return {"anyOf": options}


def event_schema() -> dict[str, Any]:
    properties: dict[str, Any] = {ID_COLUMN: dict(_IDENTIFIER)}
    properties.update({feature.name: _feature(feature) for feature in FEATURES})
    properties[EVENT_TS] = {**_IDENTIFIER, "pattern": TIMESTAMP_PATTERN}
    properties[EVENT_ID] = dict(_IDENTIFIER)
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "event.schema.json",
        "title": "Churn event (value of a record on the raw topic; key: the customerID's UTF-8 bytes)",
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": True,
    }


def prediction_schema() -> dict[str, Any]:
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    types: dict[str, dict[str, Any]] = {
        "customerID": dict(_IDENTIFIER),
        "churn_probability": probability,
        "prediction": {"type": "string", "enum": [PREDICTION_NO, PREDICTION_YES]},
        "confidence_score": probability,
        "event_ts": {"type": "string", "pattern": TIMESTAMP_PATTERN},
        "processed_ts": {"type": "string", "pattern": TIMESTAMP_PATTERN},
        "event_id": dict(_IDENTIFIER),
        "model_version": {"type": "string", "minLength": 1},
        "source_partition": {"type": "integer", "minimum": 0},
        "source_offset": {"type": "integer", "minimum": 0},
    }
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "prediction.schema.json",
        "title": "Churn prediction (value of a record on the predictions topic; key: the customerID's UTF-8 bytes)",
        "type": "object",
        "properties": {name: types[name] for name in PREDICTION_FIELDS},
        "required": list(PREDICTION_FIELDS),
        "additionalProperties": False,
    }


def dead_letter_headers_schema() -> dict[str, Any]:
    """The ``dl.*`` headers as a JSON object of UTF-8 strings (the key and value are the original bytes)."""
    text = {"type": "string"}
    properties: dict[str, Any] = {name: dict(text) for name in DEADLETTER_HEADERS}
    properties[HEADER_STAGE] = {"type": "string", "enum": [stage.value for stage in Stage]}
    properties[HEADER_REASON] = {"type": "string", "maxLength": MAX_REASON_CHARS}
    properties[HEADER_SOURCE_PARTITION] = {"type": "string", "pattern": r"^[0-9]+$"}
    properties[HEADER_SOURCE_OFFSET] = {"type": "string", "pattern": r"^[0-9]+$"}
    properties[HEADER_MODEL_VERSION] = {"type": "string"}
    properties[HEADER_KEY_ABSENT] = {"type": "string", "const": "true"}
    # Only when they apply: a dead letter for a whole batch (its offsets dl.source_offset to this one),
    # and the count of the raw record's headers that did not fit (the dl.header.* copies kept are its first ones).
    properties[HEADER_SOURCE_LAST_OFFSET] = {"type": "string", "pattern": r"^[0-9]+$"}
    properties[HEADER_HEADERS_DROPPED] = {"type": "string", "pattern": r"^[1-9][0-9]*$"}
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "dead-letter-headers.schema.json",
        "title": "Dead-letter headers (record headers as name -> UTF-8 text; key and value are the original's)",
        "type": "object",
        "properties": properties,
        "required": list(DEADLETTER_HEADERS),
        "additionalProperties": True,
    }


SCHEMAS = {
    "event.schema.json": event_schema,
    "prediction.schema.json": prediction_schema,
    "dead-letter-headers.schema.json": dead_letter_headers_schema,
}

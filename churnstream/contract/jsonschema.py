"""The wire formats as JSON Schema (draft 2020-12), and the event schema as a reference page.

The event schema is not built here: it is a file (``schemas/event.schema.json`` for Telco, or the
user's own), the contract everything else comes from (contract.schema). What ``make docs`` writes:

* ``schemas/prediction.schema.json`` and ``schemas/dead-letter-headers.schema.json``, built from the
  output formats (contract.outputs) and the Telco schema's key field;
* ``docs/reference/event-schema.md``, :func:`schema_reference` of the Telco file (``churn-schema doc``
  writes the same page for any schema).

tests/unit/test_contract.py fails when a committed file differs from what this module builds, and
validates real outputs against them.
"""

from __future__ import annotations

from typing import Any

from churnstream.contract.events import DEFAULT_MAX_VALUE_BYTES, MAX_DEPTH, MAX_SAFE_INTEGER
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
    PREDICTION_FORMAT,
    PREDICTION_NO,
    PREDICTION_YES,
    REASON_FIELDS,
    Stage,
    prediction_fields,
)
from churnstream.contract.schema import (
    DRAFT,
    ENVELOPE_FIELDS,
    EVENT_TS_PATTERN,
    ID_ALPHABET,
    ID_PATTERN,
    KEY_KEYWORD,
    MAX_ID_LENGTH,
    EventSchema,
    Field,
)

BASE_ID = "https://github.com/telco-churn-stream/schemas/"
_IDENTIFIER = {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH, "pattern": ID_PATTERN}
# What the pipeline itself writes into processed_ts (and copies from event_ts): the envelope's time.
TIMESTAMP_PATTERN = EVENT_TS_PATTERN


def prediction_schema(events: EventSchema) -> dict[str, Any]:
    """The prediction of events of ``events``: its first field is their key field (x-key)."""
    probability = {"type": "number", "minimum": 0, "maximum": 1}
    key_field = events.key_field
    types: dict[str, dict[str, Any]] = {
        key_field: dict(_IDENTIFIER),
        "churn_probability": probability,
        "prediction": {"type": "string", "enum": [PREDICTION_NO, PREDICTION_YES]},
        "confidence_score": probability,
        "event_ts": {"type": "string", "pattern": TIMESTAMP_PATTERN},
        "processed_ts": {"type": "string", "pattern": TIMESTAMP_PATTERN},
        "event_id": dict(_IDENTIFIER),
        "model_version": {"type": "string", "minLength": 1},
        "source_partition": {"type": "integer", "minimum": 0},
        "source_offset": {"type": "integer", "minimum": 0},
        "risk_band": {
            "description": "the model card's band this probability falls in (its risk_bands); null for a model "
            "without bands",
            "type": ["string", "null"],
        },
        "reasons": {
            "description": "up to three features that raise this customer's risk most, largest first; null when "
            "the consumer runs with --reasons off or the model has no reasons method",
            "type": ["array", "null"],
            "maxItems": 3,
            "items": {
                "type": "object",
                "properties": {
                    "feature": {"type": "string", "enum": list(events.feature_names)},
                    "value": {"description": "the event's value of the feature (any of its types, or null)"},
                    "contribution": {"type": "number", "exclusiveMinimum": 0},
                },
                "required": list(REASON_FIELDS),
                "additionalProperties": False,
            },
        },
        "format_version": {
            "description": "which version of this format the record follows",
            "const": PREDICTION_FORMAT,
        },
    }
    return {
        "$schema": DRAFT,
        "$id": BASE_ID + "prediction.schema.json",
        "title": f"Churn prediction (value of a record on the predictions topic; key: the {key_field}'s UTF-8 bytes)",
        "type": "object",
        "properties": {name: types[name] for name in prediction_fields(key_field)},
        "required": list(prediction_fields(key_field)),
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


def _constraints(field: Field) -> str:
    parts: list[str] = []
    if field.categories is not None:
        parts.append("one of " + ", ".join(f"`{value}`" for value in field.categories))
    if field.minimum is not None or field.maximum is not None:
        low = "no minimum" if field.minimum is None else f"{field.minimum:g}"
        high = "no maximum" if field.maximum is None else f"{field.maximum:g}"
        parts.append(f"{low} to {high}")
    if field.min_length is not None or field.max_length is not None:
        longest = "any number of" if field.max_length is None else str(field.max_length)
        parts.append(f"{field.min_length or 0} to {longest} characters")
    if field.pattern is not None:
        parts.append(f"pattern `{field.pattern}`")
    return "; ".join(parts) or "-"


def _role(field: Field, schema: EventSchema) -> str:
    if field.name == schema.key_field:
        return f"key ({KEY_KEYWORD})"
    if field.name in ENVELOPE_FIELDS:
        return "envelope"
    return "feature"


def _cell(text: str) -> str:
    """Text for a Markdown table's cell: a | would end the cell."""
    return text.replace("|", "\\|").replace("\n", " ")


def schema_reference(schema: EventSchema, *, source_link: str | None = None) -> str:
    """A schema as a Markdown page: every field, its role, type and constraints, and the envelope's rules.
    ``source_link``: a relative link to the file, shown instead of the path it was read from."""
    source = f"[{source_link.rsplit('/', 1)[-1]}]({source_link})" if source_link else f"`{schema.source}`"
    lines = [
        f"# Event schema: {schema.title}",
        "",
        "<!-- Generated from the schema file by `churn-schema doc` (`make docs` for the Telco schema). "
        "Do not edit: change the schema file and regenerate. -->",
        "",
        f"The contract of an event, from {source}: the consumer's validator, the model's features and the "
        "producer's CSV parsing all come from it. sha256 of the schema (canonical JSON, as a model card "
        f"records it): `{schema.sha256}`.",
        "",
        str(schema.document.get("description") or ""),
        "",
        f"The record's key is the `{schema.key_field}` field's UTF-8 bytes; every prediction carries it as its "
        "first field. Extra fields are "
        + ("ignored." if schema.allows_extra_fields else "refused (`additionalProperties: false`)."),
        "",
        "| Field | Role | Type | Null | Required | Allowed | Meaning |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for field in schema.fields:
        lines.append(
            f"| `{field.name}` | {_role(field, schema)} | {field.kind} | {'yes' if field.allows_null else 'no'} | "
            f"{'yes' if field.required else 'no'} | {_cell(_constraints(field))} | {_cell(field.description or '-')} |"
        )
    lines += [
        "",
        "## Rules of the envelope",
        "",
        "What no keyword of the schema states, the pipeline enforces for every schema (a dead letter at the "
        "`decode` stage, or `validate` for the fields):",
        "",
        f"- the value is present (not a tombstone), not empty, at most {DEFAULT_MAX_VALUE_BYTES:,} bytes "
        "(fixed, not a setting), and one JSON object in UTF-8;",
        "- each key is given once, at every level (JSON parsers keep the last of two equal keys silently; which "
        "one counts would be ambiguous);",
        f"- nesting is at most {MAX_DEPTH} levels deep (an event is flat; extra context may nest a little);",
        "- numbers are JSON numbers (`12`, `70.35`), never strings; an integer field takes `12.0` (it is 12, as "
        f"JSON Schema says) and holds at most +-2^53 ({MAX_SAFE_INTEGER:,}, what a double holds exactly);",
        f"- `{schema.key_field}` and `event_id` are 1-{MAX_ID_LENGTH} characters of {ID_ALPHABET}: no spaces, "
        "no control characters, so two spellings of one id cannot be two customers;",
        "- `event_ts` is a real UTC date and time (the pattern, and `format: date-time`: 2026-02-30 is refused).",
        "",
        "Patterns are matched as JSON Schema (ECMA-262) says: anywhere in the string, anchors where written, "
        "`$` only at the very end (Python's `re` would also take it before a final newline, so each `$` is "
        "read as `\\Z`); write character classes out (`[0-9]`, not `\\d`). Syntax only Python has (`(?P<name>`, "
        "inline flags such as `(?i)`, `\\A`, `\\Z`, possessive quantifiers) is refused, and so is an `enum` "
        "value that fails its own property's `pattern` or lengths.",
    ]
    return "\n".join(lines) + "\n"


SCHEMAS = {
    "prediction.schema.json": prediction_schema,
    "dead-letter-headers.schema.json": lambda _events: dead_letter_headers_schema(),
}

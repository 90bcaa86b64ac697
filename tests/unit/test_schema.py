"""Schemas that are not Telco's: what the loader accepts and refuses, and how a schema's types drive the contract.

A made-up mobile-operator schema (integers, numbers, booleans, nullable fields, an optional one, a
pattern) stands for a telco's own; the bring-your-own integration test streams one through the broker.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest

from churnstream.contract.events import compile_contract
from churnstream.contract.schema import ENVELOPE_PROPERTIES, ID_PATTERN, load_schema, schema_from_document
from churnstream.errors import ConfigError, InvalidEvent

TS = "2026-11-27T08:00:00.000Z"


def mobile_document(**top: Any) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Mobile subscriber",
        "type": "object",
        "x-key": "msisdn_hash",
        "properties": {
            "msisdn_hash": {"type": "string", "maxLength": 64},
            "plan": {"type": "string", "enum": ["prepaid", "postpaid", "business"]},
            "region": {"type": ["string", "null"], "pattern": "^[A-Z]{2}-[0-9]{2}$"},
            "months_active": {"type": "integer", "minimum": 0, "maximum": 600},
            "data_gb": {"type": "number", "minimum": 0},
            "dropped_calls": {"type": ["integer", "null"], "minimum": 0},
            "roaming": {"type": "boolean"},
            "nps": {"type": "integer", "minimum": -100, "maximum": 100},
        },
        "required": ["msisdn_hash", "plan", "region", "months_active", "data_gb", "dropped_calls", "roaming"],
        **top,
    }


def mobile_event(**changes: Any) -> dict[str, Any]:
    base = {
        "msisdn_hash": "a1b2c3",
        "plan": "prepaid",
        "region": "DE-01",
        "months_active": 14,
        "data_gb": 3.5,
        "dropped_calls": None,
        "roaming": False,
        "nps": 10,
        "event_ts": TS,
        "event_id": "m-1",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not _ABSENT}


_ABSENT = object()


def test_a_schema_of_other_columns_and_types_compiles_with_the_envelope_added() -> None:
    schema = schema_from_document(mobile_document(), "mobile")
    assert schema.key_field == "msisdn_hash"
    assert schema.feature_names == ("plan", "region", "months_active", "data_gb", "dropped_calls", "roaming", "nps")
    assert schema.document["properties"]["event_ts"] == ENVELOPE_PROPERTIES["event_ts"]
    assert schema.document["properties"]["msisdn_hash"]["pattern"] == ID_PATTERN  # the id rule, added
    assert schema.document["required"][-3:] == ["msisdn_hash", "event_id", "event_ts"] or set(
        schema.document["required"]
    ) >= {"msisdn_hash", "event_id", "event_ts"}
    jsonschema.Draft202012Validator.check_schema(schema.document)


def test_a_schema_decodes_its_events_typed_and_refuses_with_reasons() -> None:
    contract = compile_contract(schema_from_document(mobile_document(), "mobile"))
    valid = contract.decode(orjson.dumps(mobile_event()))
    assert valid.key == "a1b2c3"
    assert valid.features == ("prepaid", "DE-01", 14, 3.5, None, False, 10)
    without_optional = contract.decode(orjson.dumps(mobile_event(nps=_ABSENT)))
    assert without_optional.features[-1] is None  # not required and absent: missing, like null
    for changes, reason in [
        ({"plan": "gold"}, "plan='gold' is not a known category; allowed: prepaid, postpaid, business"),
        ({"region": "de-01"}, "region='de-01' does not match the pattern ^[A-Z]{2}-[0-9]{2}$"),
        ({"months_active": 601}, "months_active=601 is out of range [0, 600]"),
        ({"roaming": 0}, "roaming is a number; true or false is required"),
        ({"data_gb": None}, "data_gb is null; a number is required"),
        ({"months_active": _ABSENT}, "missing required field(s): months_active"),
        ({"msisdn_hash": "x" * 65}, "msisdn_hash is 65 characters, over the limit of 64"),
    ]:
        with pytest.raises(InvalidEvent) as caught:
            contract.decode(orjson.dumps(mobile_event(**changes)))
        assert caught.value.stage == "validate" and reason in caught.value.reason, caught.value.reason


def test_optional_fields_keep_the_fast_path_and_agree_with_the_full_path() -> None:
    contract = compile_contract(schema_from_document(mobile_document(), "mobile"))
    for event in (mobile_event(), mobile_event(nps=_ABSENT), mobile_event(region=None, dropped_calls=3)):
        raw = orjson.dumps(event)
        fast = contract._plain_object(raw, contract._decoder.decode(raw))
        assert fast is not None and fast == contract.validate(json.loads(raw))


def test_closed_schemas_refuse_extra_fields_on_both_paths() -> None:
    contract = compile_contract(schema_from_document(mobile_document(additionalProperties=False), "mobile"))
    with pytest.raises(InvalidEvent, match="'campaign' is not a field of the schema"):
        contract.decode(orjson.dumps(mobile_event(campaign="x")))
    contract.decode(orjson.dumps(mobile_event()))


def test_csv_rows_are_typed_by_the_schema_and_empty_cells_follow_its_nulls() -> None:
    contract = compile_contract(schema_from_document(mobile_document(), "mobile"))
    row = {"msisdn_hash": "a1", "plan": "business", "region": "", "months_active": "3", "data_gb": "0.25",
           "dropped_calls": "", "roaming": "TRUE", "nps": ""}  # fmt: skip
    event = contract.event_from_row(row, event_id="r-1", event_ts=TS)
    assert contract.features_of(event) == ("business", None, 3, 0.25, None, True, None)
    for column, cell, reason in [
        ("months_active", "", "months_active is empty, and the schema does not allow null"),
        ("roaming", "maybe", "roaming='maybe' is not a boolean (true, false, 1 or 0)"),
        ("data_gb", "1e3", "data_gb='1e3' is not a plain decimal number"),
    ]:
        with pytest.raises(InvalidEvent) as caught:
            contract.event_from_row({**row, column: cell}, event_id="r-1", event_ts=TS)
        assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"x-key": None}, 'needs "x-key"'),
        ({"x-key": "plan"}, "the key field 'plan' cannot have an enum"),
        ({"x-key": "months_active"}, "the key field 'months_active' must be"),
        ({"oneOf": []}, "uses 'oneOf', outside the supported subset"),
        ({"type": "array"}, 'needs "type": "object"'),
        ({"required": ["nope"]}, "requires 'nope', which is not among its properties"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "format": "email"}}}, "format"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": ["string", "integer"]}}}, "has type"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "integer", "enum": [1, 2]}}}, "enum is"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "\\d+"}}}, "\\d"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "("}}}, "not a regular"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"$ref": "#/x"}}}, "uses '$ref'"),
        ({"properties": {"msisdn_hash": {"type": "string", "pattern": ".*"}, "a": {"type": "string"}}}, "own pattern"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "event_id": {"type": "string"}}}, "envelope field"),
        ({"properties": {"msisdn_hash": {"type": "string"}}}, "has no feature"),
        # A bound no double holds (legal JSON) crashed Contract() with OverflowError, a traceback and exit 1.
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "integer", "maximum": 10**400}}}, "double"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "number", "minimum": 1e400}}}, "double"),
        # Python-only syntax that another validator refuses or reads otherwise.
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "(?i)^ab"}}}, "(?i"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "(?P<x>a)"}}}, "(?P"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "^a\\Z"}}}, "\\Z"),
        ({"properties": {"msisdn_hash": {"type": "string"}, "a": {"type": "string", "pattern": "a*+"}}}, "possessive"),
        # JSON Schema checks pattern and lengths on an enum too; a value that fails them is refused at load.
        (
            {
                "properties": {
                    "msisdn_hash": {"type": "string"},
                    "a": {"type": "string", "enum": ["ok", "x"], "minLength": 2},
                }
            },
            "enum value 'x' fails",
        ),
    ],
)
def test_a_schema_outside_the_subset_is_refused_in_one_line(change: dict[str, Any], message: str) -> None:
    document = {**mobile_document(), **change}
    if "properties" in change:
        document["required"] = []
    with pytest.raises(ConfigError) as caught:
        schema_from_document(document, "mine.schema.json")
    assert str(caught.value).startswith("schema mine.schema.json: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_schema_file_that_is_missing_or_not_json_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_schema(tmp_path / "absent.json")
    (tmp_path / "bad.json").write_text('{"type": "object", "type": "array"}')
    with pytest.raises(ConfigError, match="given more than once"):
        load_schema(tmp_path / "bad.json")
    (tmp_path / "nan.json").write_text('{"type": "object", "minimum": NaN}')  # Python's json takes it
    with pytest.raises(ConfigError, match="NaN is not a JSON value"):
        load_schema(tmp_path / "nan.json")


def test_a_dollar_is_the_very_end_as_json_schema_reads_it_not_before_a_final_newline() -> None:
    """Before: Python's $ let "DE-07\\n" pass ^[A-Z]{2}-[0-9]{2}$ on both paths (an ECMA-262 validator
    refuses it), and the value reached the model as an unknown region."""
    contract = compile_contract(schema_from_document(mobile_document(), "mobile"))
    event = mobile_event(region="DE-07\n")
    with pytest.raises(InvalidEvent, match="does not match the pattern"):
        contract.decode(orjson.dumps(event))
    with pytest.raises(InvalidEvent, match="does not match the pattern"):
        contract.validate(event)
    # Python's jsonschema library matches with re too and takes it; JSON Schema says ECMA-262, and the
    # validators that follow it (ajv, the Java ones) refuse it, as the pipeline now does.
    contract.decode(orjson.dumps(mobile_event(region="DE-07")))


def test_a_csv_number_beyond_a_double_is_refused_not_sent_as_null() -> None:
    """Before: float("1" * 400) is inf, which data_gb (no maximum) let through, and orjson wrote it as
    null: the producer sent an event the consumer dead-letters."""
    contract = compile_contract(schema_from_document(mobile_document(), "mobile"))
    row = {"msisdn_hash": "a1", "plan": "business", "region": "", "months_active": "3", "data_gb": "1" * 400,
           "dropped_calls": "", "roaming": "TRUE", "nps": ""}  # fmt: skip
    with pytest.raises(InvalidEvent, match=r"data_gb=.* is beyond a double"):
        contract.event_from_row(row, event_id="r-1", event_ts=TS)
    with pytest.raises(InvalidEvent, match="out of range"):
        contract.validate(mobile_event(data_gb=float("inf")))


def test_the_sha256_names_the_contract_spelled_out_or_not_and_the_feature_order_counts() -> None:
    spelled = mobile_document()
    spelled["properties"] = {**spelled["properties"], **ENVELOPE_PROPERTIES}  # where the loader adds them
    assert schema_from_document(spelled, "a").sha256 == schema_from_document(mobile_document(), "b").sha256
    reordered = mobile_document()
    reordered["properties"] = dict(reversed(list(reordered["properties"].items())))
    other = schema_from_document(reordered, "c")
    assert other.feature_names == tuple(reversed(schema_from_document(spelled, "a").feature_names))
    assert other.sha256 != schema_from_document(spelled, "a").sha256  # the model's input order differs

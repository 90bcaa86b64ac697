"""The wire formats, pinned: field and header names spelled out once here, the JSON Schemas checked against
real outputs of the scoring code, and every encoder paired with its decoder.

This is the one test that types the format's names as literals (tests/unit/test_layout.py allows it):
if one changes, every downstream reader breaks, so changing it must be a deliberate edit here too.
"""

from __future__ import annotations

import json

import jsonschema
import orjson
import pytest

from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.events import encode_event
from churnstream.contract.jsonschema import SCHEMAS, dead_letter_headers_schema, prediction_schema
from churnstream.contract.outputs import (
    DEADLETTER_HEADERS,
    HEADER_KEY_ABSENT,
    HEADER_SOURCE_TIMESTAMP_TYPE,
    ORIGINAL_HEADER_PREFIX,
    PREDICTION_FIELDS,
    PREDICTION_FORMAT,
    REASON_FIELDS,
    DeadLetterInfo,
    MalformedOutput,
    Stage,
    decode_prediction,
    encode_prediction,
    keeps_original_bytes,
    prediction_fields,
)
from churnstream.harness import badinput
from tests.fakes import StubModel
from tests.helpers import ROOT, make_rows, telco_contract, telco_event

TS = "2026-12-01T10:00:00.000Z"


def test_the_prediction_fields_are_these() -> None:
    assert prediction_fields(telco_contract().key_field) == (
        "customerID",
        "churn_probability",
        "prediction",
        "confidence_score",
        "event_ts",
        "processed_ts",
        "event_id",
        "model_version",
        "source_partition",
        "source_offset",
        "risk_band",
        "reasons",
        "format_version",
    )
    assert PREDICTION_FORMAT == 2 and REASON_FIELDS == ("feature", "value", "contribution")


def test_the_dead_letter_headers_are_these() -> None:
    assert DEADLETTER_HEADERS == (
        "dl.stage",
        "dl.reason",
        "dl.error_class",
        "dl.source_topic",
        "dl.source_partition",
        "dl.source_offset",
        "dl.failed_ts",
        "dl.model_version",
        "dl.source_timestamp",
    )
    assert HEADER_KEY_ABSENT == "dl.key_absent"
    assert (HEADER_SOURCE_TIMESTAMP_TYPE, ORIGINAL_HEADER_PREFIX) == ("dl.source_timestamp_type", "dl.header.")
    assert [stage.value for stage in Stage] == ["decode", "validate", "score", "shadow"]


def test_a_prediction_round_trips_whatever_the_key_field_is_called() -> None:
    for key_field in ("customerID", "subscriber id"):
        value = encode_prediction(
            key_field, "7590-VHVEG", 0.75, True, event_ts=TS, processed_ts=TS, event_id="e-1", model_version="m",
            source_partition=3, source_offset=9,
        )  # fmt: skip
        assert list(orjson.loads(value)) == [key_field, *PREDICTION_FIELDS]
        prediction = decode_prediction(value)
        assert (prediction.key_field, prediction.key) == (key_field, "7590-VHVEG")
        assert (prediction.prediction, prediction.confidence_score, prediction.source) == ("Yes", 0.75, (3, 9))


@pytest.mark.parametrize("value", [None, b"not json", b"{}", b'{"customerID": 1}', b"[]"])
def test_a_malformed_prediction_is_reported_not_raised_as_something_else(value: bytes | None) -> None:
    with pytest.raises(MalformedOutput):
        decode_prediction(value)


def test_a_dead_letter_keeps_the_raw_records_headers_and_timestamp() -> None:
    """Before: the original headers and timestamp were dropped."""
    record = RawRecord("raw", 1, 7, b"k", b"not json", 1764583200123, (("trace-id", b"abc"), ("empty", None)), 1)
    (dead,) = score_batch([record], StubModel()).dead_letters
    info = DeadLetterInfo.from_headers(dead.headers)
    assert info.source_timestamp == 1764583200123
    assert info.original_headers == (("trace-id", b"abc"), ("empty", b""))
    assert ("dl.source_timestamp_type", b"LogAppendTime") in dead.headers
    assert (dead.key, dead.value) == (b"k", b"not json")


def test_dead_letter_headers_round_trip_and_need_their_source() -> None:
    record = RawRecord("raw", 2, 41, None, None)
    (dead,) = score_batch([record], StubModel()).dead_letters
    info = DeadLetterInfo.from_headers(dead.headers)
    assert (info.stage, info.source_topic, info.source, info.key_absent) == ("decode", "raw", (2, 41), True)
    assert keeps_original_bytes(None, None, info, dead.key, dead.value)
    with pytest.raises(MalformedOutput):
        DeadLetterInfo.from_headers([("dl.stage", b"decode")])


# --------------------------------------------------------------------- the JSON Schemas


def _event_validator() -> jsonschema.Draft202012Validator:
    """The published event schema, as any JSON Schema validator reads it, formats asserted (date-time)."""
    schema = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _batch() -> tuple[list[bytes], list[dict[str, str]], list[bytes]]:
    """Real outputs of the scoring code: valid events, malformed ones of every kind."""
    events = [encode_event(telco_event(row, f"e-{i}", TS)) for i, row in enumerate(make_rows(30))]
    bad = [item.value for item in badinput.catalogue("schema", TS)]
    records = [RawRecord("raw", 0, i, b"k", v) for i, v in enumerate(events + bad)]
    result = score_batch(records, StubModel(answer=lambda rows: [i / len(rows) for i in range(len(rows))]))
    assert result.scored == len(events) and len(result.dead_letters) == len(bad)
    headers = [{name: value.decode() for name, value in d.headers} for d in result.dead_letters]
    return [p.value for p in result.predictions], headers, events


def test_real_outputs_validate_against_the_published_schemas() -> None:
    predictions, headers, events = _batch()
    for value in predictions:
        jsonschema.validate(orjson.loads(value), prediction_schema(telco_contract().schema))
    for header in headers:
        jsonschema.validate(header, dead_letter_headers_schema())
    validator = _event_validator()
    for value in events:
        validator.validate(orjson.loads(value))


def test_a_broken_prediction_is_refused_by_its_schema() -> None:
    predictions, _, _ = _batch()
    broken = {**orjson.loads(predictions[0]), "prediction": "Maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, prediction_schema(telco_contract().schema))


# The envelope's rules: what no JSON Schema keyword can say, so the published schema accepts these
# objects (a parser keeps the last of two keys; nesting and size are not the schema's business) and
# the consumer alone refuses them, at the decode stage (docs/reference/event-schema.md lists them).
ENVELOPE_KINDS = {
    "duplicate-key",
    "duplicate-key-spaced",
    "duplicate-key-escaped",
    "duplicate-key-nested",
    f"nesting-{badinput.MAX_DEPTH + 1}-deep-extra-field",
    "nesting-1010-deep-extra-field",
}


def _not_json(text: str) -> object:
    raise ValueError(f"{text} is not JSON")  # Python's json takes NaN and Infinity; JSON does not


def _parsed(value: bytes | None) -> object:
    """The value as a JSON Schema validator receives it (stdlib json, strict), or None when it is no JSON."""
    if value is None:
        return None
    try:
        return json.loads(value.decode("utf-8"), parse_constant=_not_json)  # RFC 8259: JSON text is UTF-8
    except (ValueError, RecursionError):
        return None


def test_the_published_event_schema_refuses_exactly_what_the_consumer_refuses_in_the_catalogue() -> None:
    """Before: the published schema took any offset in event_ts, decimal strings for integers and numbers
    out of range, so an event it accepted could still be dead-lettered."""
    validator, contract = _event_validator(), telco_contract()
    for bad in badinput.catalogue("cat", TS):
        with pytest.raises(Exception) as refused:
            contract.decode(bad.value)
        assert refused.type.__name__ == "InvalidEvent" and refused.value.stage == bad.stage, bad.kind
        instance = _parsed(bad.value)
        if instance is None or not isinstance(instance, dict):
            continue  # not a JSON object: no schema instance to compare (the decode stage's business)
        if bad.kind in ENVELOPE_KINDS:
            assert bad.stage == Stage.DECODE, bad.kind
            continue
        assert not validator.is_valid(instance), f"{bad.kind}: the schema accepts what the consumer refuses"


_MUTATIONS = (
    None,
    True,
    False,
    0,
    1,
    -1,
    2,
    12,
    12.0,
    12.5,
    1e2,
    1200,
    1201,
    -0.0,
    70.35,
    10_000,
    10_000.5,
    1e9,
    "",
    "12",
    "Yes",
    "No",
    "Female",
    "DSL",
    "No internet service",
    "Month-to-month",
    "yes",
    " Yes",
    "Yes ",
    [],
    {},
    ["Yes"],
    {"a": 1},
    "0001-TEST",
    " 0001-TEST",
    "0001 TEST",
    "a" * 128,
    "a" * 129,
    "a\n",
    "\u00e9",
    "2026-11-27T08:00:00Z",
    "2026-11-27T08:00:00.123456789+00:00",
    "2026-11-27T08:00:00+01:00",
    "2026-02-29T00:00:00Z",
    "2024-02-29T00:00:00Z",
    "2026-11-27T24:00:00Z",
    "1969-12-31T23:59:59Z",
    "2099-12-31T23:59:59.999Z",
    "2100-01-01T00:00:00Z",
    "2026-11-27T08:00:00Z\n",
    "2026-11-27t08:00:00z",
)


def test_the_published_event_schema_and_the_consumer_agree_on_every_mutation() -> None:
    """Each field of a valid event set to each of a list of values, or removed: the schema accepts exactly
    the events the consumer accepts, and the consumer's two paths (fast and full) agree."""
    validator, contract = _event_validator(), telco_contract()
    base = telco_event(make_rows(1)[0], "m-1", TS)
    checked = disagreements = 0
    problems: list[str] = []
    for name in [*base, "extra"]:
        for value in (*_MUTATIONS, "missing"):
            event = dict(base)
            if value == "missing":
                event.pop(name, None)
            else:
                event[name] = value
            raw = orjson.dumps(event)
            accepted_by_schema = validator.is_valid(json.loads(raw))
            try:
                contract.decode(raw)
                accepted_by_consumer = True
            except Exception as exc:
                assert type(exc).__name__ == "InvalidEvent", (name, value, exc)
                accepted_by_consumer = False
            checked += 1
            if accepted_by_schema != accepted_by_consumer:
                disagreements += 1
                problems.append(f"{name}={value!r}: schema {accepted_by_schema}, consumer {accepted_by_consumer}")
    assert checked > 1000
    assert disagreements == 0, problems[:10]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_committed_schema_files_are_valid_json_schema(name: str) -> None:
    schema = json.loads((ROOT / "schemas" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_event_schema_file_is_valid_json_schema_and_the_contract_as_loaded() -> None:
    """schemas/event.schema.json is the source: it is valid JSON Schema, and already complete (the loader
    adds nothing to it: what is published is what is enforced)."""
    document = json.loads((ROOT / "schemas" / "event.schema.json").read_text())
    jsonschema.Draft202012Validator.check_schema(document)
    assert telco_contract().schema.document == document

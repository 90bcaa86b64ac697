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

from churnstream.cli.docs import stale_files
from churnstream.consumer.scoring import RawRecord, score_batch
from churnstream.contract.events import encode_event, row_to_event
from churnstream.contract.jsonschema import SCHEMAS, dead_letter_headers_schema, event_schema, prediction_schema
from churnstream.contract.outputs import (
    DEADLETTER_HEADERS,
    HEADER_KEY_ABSENT,
    HEADER_SOURCE_TIMESTAMP_TYPE,
    ORIGINAL_HEADER_PREFIX,
    PREDICTION_FIELDS,
    DeadLetterInfo,
    MalformedOutput,
    Stage,
    decode_prediction,
    encode_prediction,
    keeps_original_bytes,
)
from churnstream.harness import badinput
from tests.fakes import StubModel
from tests.helpers import ROOT, make_rows

TS = "2026-12-01T10:00:00.000Z"


def test_the_prediction_fields_are_these() -> None:
    assert PREDICTION_FIELDS == (
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
    )


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


def test_a_prediction_round_trips() -> None:
    value = encode_prediction(
        "7590-VHVEG", 0.75, True, event_ts=TS, processed_ts=TS, event_id="e-1", model_version="m",
        source_partition=3, source_offset=9,
    )  # fmt: skip
    assert list(orjson.loads(value)) == list(PREDICTION_FIELDS)
    prediction = decode_prediction(value)
    assert (prediction.customer_id, prediction.prediction, prediction.confidence_score) == ("7590-VHVEG", "Yes", 0.75)
    assert prediction.source == (3, 9)


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


def _batch() -> tuple[list[bytes], list[dict[str, str]], list[bytes]]:
    """Real outputs of the scoring code: valid events, malformed ones of every kind."""
    events = [encode_event(row_to_event(row, f"e-{i}", TS)) for i, row in enumerate(make_rows(30))]
    bad = [item.value for item in badinput.catalogue("schema", TS)]
    records = [RawRecord("raw", 0, i, b"k", v) for i, v in enumerate(events + bad)]
    result = score_batch(records, StubModel(answer=lambda rows: [i / len(rows) for i in range(len(rows))]))
    assert result.scored == len(events) and len(result.dead_letters) == len(bad)
    headers = [{name: value.decode() for name, value in d.headers} for d in result.dead_letters]
    return [p.value for p in result.predictions], headers, events


def test_real_outputs_validate_against_the_published_schemas() -> None:
    predictions, headers, events = _batch()
    for value in predictions:
        jsonschema.validate(orjson.loads(value), prediction_schema())
    for header in headers:
        jsonschema.validate(header, dead_letter_headers_schema())
    for value in events:
        jsonschema.validate(orjson.loads(value), event_schema())


def test_the_schemas_reject_what_the_contract_rejects() -> None:
    predictions, _, events = _batch()
    broken = {**orjson.loads(predictions[0]), "prediction": "Maybe"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, prediction_schema())
    unknown = {**orjson.loads(events[0]), "Contract": "Forever"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(unknown, event_schema())


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_the_committed_schema_files_are_valid_json_schema(name: str) -> None:
    schema = json.loads((ROOT / "schemas" / name).read_text())
    jsonschema.Draft202012Validator.check_schema(schema)


def test_the_committed_generated_files_are_current() -> None:
    """schemas/*.json, docs/reference/cli.md and KAFKA_README's exit codes are built from code: ``make docs``."""
    assert [str(p.relative_to(ROOT)) for p in stale_files()] == []

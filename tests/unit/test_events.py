from __future__ import annotations

from typing import Any

import orjson
import pytest

from churnstream.contract.events import (
    decode_value,
    encode_event,
    format_ts,
    parse_ts,
    row_to_event,
    utc_now_iso,
    validate_event,
)
from churnstream.contract.schema import FEATURE_NAMES
from churnstream.errors import InvalidEvent
from tests.helpers import SAMPLE_ROW


def event(**changes: Any) -> dict[str, Any]:
    base = row_to_event(SAMPLE_ROW, event_id="e-1", event_ts="2026-11-27T08:00:00.000Z")
    base.update(changes)
    return base


def test_row_to_event_types_the_fields_and_drops_the_label() -> None:
    result = event()
    assert result["SeniorCitizen"] == 0 and isinstance(result["SeniorCitizen"], int)
    assert result["tenure"] == 1 and isinstance(result["tenure"], int)
    assert result["MonthlyCharges"] == 29.85 and isinstance(result["MonthlyCharges"], float)
    assert result["TotalCharges"] == 29.85
    assert "Churn" not in result
    assert list(result) == ["customerID", *FEATURE_NAMES, "event_ts", "event_id"]


def test_blank_total_charges_becomes_null_as_in_the_real_data() -> None:
    result = row_to_event({**SAMPLE_ROW, "TotalCharges": " "}, event_id="e", event_ts=utc_now_iso())
    assert result["TotalCharges"] is None
    assert validate_event(orjson.loads(encode_event(result))).features["TotalCharges"] is None


def test_timestamps_are_iso_utc_with_milliseconds_and_z() -> None:
    text = utc_now_iso()
    assert text.endswith("Z") and len(text) == len("2026-11-27T08:00:00.000Z")
    assert format_ts(parse_ts(text)) == text


def test_a_round_trip_through_bytes_validates() -> None:
    valid = validate_event(decode_value(encode_event(event())))
    assert valid.customer_id == "0001-TEST" and valid.event_id == "e-1"
    assert valid.features["MonthlyCharges"] == 29.85


def test_numeric_strings_are_accepted_like_the_csv() -> None:
    valid = validate_event(event(tenure="12", MonthlyCharges="70.5", TotalCharges="", SeniorCitizen="1"))
    assert valid.features["tenure"] == 12
    assert valid.features["MonthlyCharges"] == 70.5
    assert valid.features["TotalCharges"] is None
    assert valid.features["SeniorCitizen"] == 1


def test_extra_fields_are_ignored() -> None:
    assert validate_event(event(campaign="winter")).features == validate_event(event()).features


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenure": -1}, "tenure=-1 is out of range"),
        ({"tenure": 1.5}, "tenure=1.5 is not a whole number"),
        ({"tenure": True}, "tenure is a boolean"),
        ({"tenure": None}, "tenure is null"),
        ({"SeniorCitizen": 2}, "SeniorCitizen=2 is out of range"),
        ({"MonthlyCharges": "abc"}, "MonthlyCharges='abc' is not a plain decimal number"),
        ({"MonthlyCharges": "nan"}, "is not a plain decimal number"),
        ({"MonthlyCharges": "Infinity"}, "is not a plain decimal number"),
        ({"MonthlyCharges": 1e12}, "is out of range"),
        ({"MonthlyCharges": [1]}, "MonthlyCharges is a list"),
        ({"Contract": "Forever"}, "Contract='Forever' is not a known category"),
        ({"Contract": None}, "Contract is null"),
        ({"gender": {"a": 1}}, "gender is a dict"),
        ({"customerID": ""}, "customerID is not a non-empty string"),
        ({"event_ts": "yesterday"}, "event_ts='yesterday' is not an ISO-8601 UTC time"),
        ({"event_id": 5}, "event_id is not a non-empty string"),
    ],
)
def test_invalid_fields_are_rejected_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event(**changes))
    assert caught.value.stage == "validate"
    assert reason in caught.value.reason


def test_missing_fields_are_listed() -> None:
    broken = event()
    del broken["tenure"], broken["Contract"]
    with pytest.raises(InvalidEvent, match="missing required field"):
        validate_event(broken)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "tombstone"),
        (b"", "empty"),
        (b"\xff\xfe{", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b'{"a": NaN}', "not valid JSON"),
        (b"[1, 2]", "JSON list"),
        (b"null", "JSON null"),
        (b"[" * 10_000 + b"]" * 10_000, "depth limit exceeded"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "over the limit"),
    ],
)
def test_undecodable_values_are_rejected_without_crashing(value: bytes | None, reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        decode_value(value)
    assert caught.value.stage == "decode"
    assert reason in caught.value.reason


def test_pathological_nesting_is_rejected_even_under_a_large_limit() -> None:
    with pytest.raises(InvalidEvent, match="depth limit exceeded"):
        decode_value(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, max_value_bytes=1_000_000)


# --------------------------------------------------------------------- what was accepted and should not be (issue 13)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenure": "1_2"}, "tenure='1_2' is not a plain decimal number"),
        ({"tenure": "\u0661\u0662"}, "is not a plain decimal number"),  # Arabic-Indic digits: int() took them
        ({"tenure": "\uff11\uff12"}, "is not a plain decimal number"),  # full-width digits
        ({"tenure": "1e1"}, "tenure='1e1' is not a plain decimal number"),
        ({"MonthlyCharges": "7e1"}, "MonthlyCharges='7e1' is not a plain decimal number"),
        ({"MonthlyCharges": "+70.5"}, "is not a plain decimal number"),
        ({"event_ts": "2026-11-27"}, "is not an ISO-8601 UTC time"),  # a bare date
        ({"event_ts": "2026-11-27T08:00:00+02:00"}, "is not an ISO-8601 UTC time"),  # not UTC
        ({"event_ts": "2026-11-27T08:00:00"}, "is not an ISO-8601 UTC time"),  # no zone at all
        ({"event_ts": "0001-01-01T00:00:00Z"}, "is in year 1, outside 1970-2099"),
        ({"event_ts": "2026-02-30T08:00:00Z"}, "is not a real date and time"),
    ],
)
def test_strings_that_only_look_like_numbers_or_utc_times_are_rejected(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidEvent) as caught:
        validate_event(event(**changes))
    assert caught.value.stage == "validate"
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    "changes",
    [
        {"tenure": "12", "MonthlyCharges": " 70.35 ", "TotalCharges": "845"},
        {"event_ts": "2026-11-27T08:00:00Z"},
        {"event_ts": "2026-11-27T08:00:00.123456+00:00"},
        {"event_ts": "1970-01-01T00:00:00.000Z"},
    ],
)
def test_plain_decimals_and_utc_times_are_accepted(changes: dict[str, Any]) -> None:
    validate_event(event(**changes))


def test_a_key_given_twice_is_a_dead_letter_not_the_last_value() -> None:
    valid = encode_event(event())
    twice = valid[:-1] + b',"tenure":70}'
    spaced = valid[:-1] + b',"tenure" :70}'
    for value in (twice, spaced):
        with pytest.raises(InvalidEvent) as caught:
            decode_value(value)
        assert caught.value.stage == "decode" and "'tenure' more than once" in caught.value.reason
    nested = valid[:-1] + b',"context":{"tenure":1,"note":"a \\":b"}}'  # nested keys and a quoted colon: fine
    assert decode_value(nested)["tenure"] == event()["tenure"]

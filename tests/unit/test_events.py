"""The compiled contract: CSV rows into events, bytes into validated events, and the reasons it gives.

The Telco schema (schemas/event.schema.json) throughout; tests/unit/test_schema.py loads other schemas.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from churnstream.contract.events import (
    MAX_DEPTH,
    ValidEvent,
    encode_event,
    format_ts,
    parse_object,
    parse_ts,
    utc_now_iso,
)
from churnstream.errors import InvalidEvent
from churnstream.ml.dataset import load_rows
from tests.helpers import SAMPLE_ROW, telco_contract, telco_event

TS = "2026-11-27T08:00:00.000Z"


def event(**changes: Any) -> dict[str, Any]:
    base = telco_event(SAMPLE_ROW, event_id="e-1", event_ts=TS)
    base.update(changes)
    return base


def decode(obj: dict[str, Any] | bytes) -> ValidEvent:
    return telco_contract().decode(obj if isinstance(obj, bytes) else orjson.dumps(obj))


def refusal(value: dict[str, Any] | bytes | None) -> InvalidEvent:
    with pytest.raises(InvalidEvent) as caught:
        telco_contract().decode(value if not isinstance(value, dict) else orjson.dumps(value))
    return caught.value


# --------------------------------------------------------------------- CSV rows into events (the producer)


def test_a_csv_row_becomes_a_typed_event_without_the_label() -> None:
    result = event()
    assert result["SeniorCitizen"] == 0 and isinstance(result["SeniorCitizen"], int)
    assert result["tenure"] == 1 and isinstance(result["tenure"], int)
    assert result["MonthlyCharges"] == 29.85 and isinstance(result["MonthlyCharges"], float)
    assert result["TotalCharges"] == 29.85
    assert "Churn" not in result
    assert list(result) == ["customerID", *telco_contract().feature_names, "event_ts", "event_id"]


def test_a_blank_total_charges_cell_becomes_null_as_the_schema_allows() -> None:
    result = telco_event({**SAMPLE_ROW, "TotalCharges": " "})
    assert result["TotalCharges"] is None
    assert decode(result).features[-1] is None


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenure": ""}, "tenure is empty, and the schema does not allow null"),
        ({"tenure": "1_2"}, "tenure='1_2' is not a plain whole number"),
        ({"tenure": "\u0661\u0662"}, "is not a plain whole number"),  # Arabic-Indic digits: int() takes them
        ({"tenure": "1e1"}, "is not a plain whole number"),
        ({"tenure": "1.5"}, "is not a plain whole number"),
        ({"tenure": "9" * 5000}, "is out of range [0, 1200]"),
        ({"MonthlyCharges": "7e1"}, "MonthlyCharges='7e1' is not a plain decimal number"),
        ({"MonthlyCharges": "+70.5"}, "is not a plain decimal number"),
        ({"Contract": "Forever"}, "Contract='Forever' is not a known category"),
        ({"customerID": " 0001-TEST"}, "outside the id alphabet"),
    ],
)
def test_a_csv_cell_that_does_not_fit_the_schema_is_refused_naming_its_column(
    changes: dict[str, str], reason: str
) -> None:
    with pytest.raises(InvalidEvent) as caught:
        telco_event({**SAMPLE_ROW, **changes})
    assert reason in caught.value.reason


def test_csv_numbers_are_plain_ascii_decimals_with_spaces_around_allowed() -> None:
    result = telco_event({**SAMPLE_ROW, "tenure": " 12 ", "MonthlyCharges": "70.35", "TotalCharges": "-0"})
    assert (result["tenure"], result["MonthlyCharges"], result["TotalCharges"]) == (12, 70.35, 0.0)


def test_a_whole_number_written_with_a_zero_fraction_is_that_integer_as_in_json_schema() -> None:
    """pandas writes an integer column that has a gap as floats (12.0); JSON Schema's integer takes 12.0."""
    assert telco_event({**SAMPLE_ROW, "tenure": "12.0"})["tenure"] == 12
    assert decode({**telco_event(SAMPLE_ROW), "tenure": 12.0}).features[4] == 12


def test_timestamps_are_iso_utc_with_milliseconds_and_z() -> None:
    text = utc_now_iso()
    assert text.endswith("Z") and len(text) == len("2026-11-27T08:00:00.000Z")
    assert format_ts(parse_ts(text)) == text


# --------------------------------------------------------------------- bytes into validated events (the consumer)


def test_a_round_trip_through_bytes_validates() -> None:
    valid = decode(encode_event(event()))
    assert (valid.key, valid.event_id, valid.event_ts) == ("0001-TEST", "e-1", TS)
    assert valid.features[telco_contract().feature_names.index("MonthlyCharges")] == 29.85
    assert valid.event_ms == parse_ts(TS).timestamp() * 1000


def test_extra_fields_are_ignored() -> None:
    assert decode(event(campaign="winter", context={"a": [1, 2]})) == decode(event())


def test_a_whole_number_written_as_12_0_is_an_integer_as_json_schema_says() -> None:
    assert decode(event(tenure=12.0)).features == decode(event(tenure=12)).features
    assert isinstance(decode(event(tenure=12.0)).features[4], int)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"tenure": -1}, "tenure=-1 is out of range [0, 1200]"),
        ({"tenure": 1.5}, "tenure=1.5 is not a whole number"),
        ({"tenure": True}, "tenure is a boolean; a whole number is required"),
        ({"tenure": None}, "tenure is null; a integer is required"),
        ({"tenure": "12"}, "tenure is a string; a whole number is required (numbers are JSON numbers: write 12"),
        ({"SeniorCitizen": 2}, "SeniorCitizen=2 is out of range [0, 1]"),
        ({"MonthlyCharges": "abc"}, "MonthlyCharges is a string; a number is required"),
        ({"MonthlyCharges": 1e12}, "is out of range [0, 10000]"),
        ({"MonthlyCharges": [1]}, "MonthlyCharges is an array"),
        ({"Contract": "Forever"}, "Contract='Forever' is not a known category"),
        ({"Contract": None}, "Contract is null"),
        ({"gender": {"a": 1}}, "gender is an object"),
        ({"customerID": ""}, "customerID is an empty string"),
        ({"event_ts": "yesterday"}, "event_ts='yesterday' is not an ISO-8601 UTC time"),
        ({"event_ts": "2026-11-27T08:00:00+02:00"}, "is not an ISO-8601 UTC time"),
        ({"event_ts": "0001-01-01T00:00:00Z"}, "is in year 1, outside 1970-2099"),
        ({"event_ts": "2026-02-30T08:00:00Z"}, "is not a real date and time"),
        ({"event_id": 5}, "event_id is a number; a non-empty string is required"),
    ],
)
def test_invalid_fields_are_refused_with_a_reason(changes: dict[str, Any], reason: str) -> None:
    refused = refusal(event(**changes))
    assert refused.stage == "validate"
    assert reason in refused.reason
    assert refused.event_id == changes.get("event_id", "e-1") or not isinstance(changes.get("event_id"), str)


def test_missing_fields_are_listed() -> None:
    broken = event()
    del broken["tenure"], broken["Contract"]
    assert refusal(broken).reason == "missing required field(s): tenure, Contract"


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
        (b"[" * 10_000 + b"]" * 10_000, "nested over 1024 levels deep"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', "over the limit"),
    ],
)
def test_undecodable_values_are_refused_at_decode(value: bytes | None, reason: str) -> None:
    refused = refusal(value)
    assert refused.stage == "decode"
    assert reason in refused.reason


def test_pathological_nesting_is_refused_even_under_a_large_limit() -> None:
    with pytest.raises(InvalidEvent, match="nested over 1024 levels deep"):
        telco_contract().decode(b'{"a":' * 100_000 + b"1" + b"}" * 100_000, max_value_bytes=1_000_000)


def test_a_key_given_twice_is_a_dead_letter_not_the_last_value() -> None:
    valid = encode_event(event())
    for value in (valid[:-1] + b',"tenure":70}', valid[:-1] + b',"tenure" :70}', valid[:-1] + b',"\\u0074enure":7}'):
        refused = refusal(value)
        assert refused.stage == "decode" and "'tenure' more than once" in refused.reason
    nested = valid[:-1] + b',"context":{"tenure":1,"note":"a \\":b"}}'  # nested keys and a quoted colon: fine
    assert decode(nested) == decode(event())


# --------------------------------------------------------------------- issue 19: ids, and reasons that tell


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (" 7590-VHVEG ", "' ' at position 0"),
        ("7590-VHVEG ", "' ' at position 10"),
        ("7590\x00VHVEG", "'\\x00' at position 4"),
        ("\x1b[31m7590\x1b[0m", "'\\x1b' at position 0"),
        ("7590\u200bVHVEG", "'\\u200b' at position 4"),
        ("7590-VHVEG\n", "'\\n' at position 10"),
        ("7590\x07VHVEG", "'\\x07' at position 4"),
    ],
)
def test_an_id_outside_the_alphabet_is_refused_saying_which_character(value: str, shown: str) -> None:
    """Before: " 7590-VHVEG " and "7590-VHVEG" were two customers, and NUL or ANSI escapes became keys."""
    for field in ("customerID", "event_id"):
        refused = refusal(event(**{field: value}))
        assert refused.stage == "validate"
        assert f"{field}=" in refused.reason and shown in refused.reason and "outside the id alphabet" in refused.reason


def test_a_5000_digit_number_says_it_is_out_of_range_not_unexpected() -> None:
    """Before: a tenure string of 5,000 digits was dead-lettered as "unexpected ValueError"."""
    as_number = encode_event(event()).replace(b'"tenure":1,', b'"tenure":' + b"9" * 5000 + b",")
    for raw in (encode_event(event(tenure="9" * 5000)), as_number):
        refused = refusal(raw)
        assert refused.stage == "validate" and "unexpected" not in refused.reason
        assert refused.reason.startswith("tenure is ") and len(refused.reason) < 200


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 1023])
def test_deep_nesting_in_an_extra_field_says_how_deep_not_recursion_error(depth: int) -> None:
    """Before: an extra field nested 1,000 to 1,023 levels deep was "unexpected RecursionError"."""
    for opener, closer in ((b'{"a":', b"}"), (b"[", b"]")):
        raw = encode_event(event())[:-1] + b',"context":' + opener * (depth - 1) + b"1" + closer * (depth - 1) + b"}"
        refused = refusal(raw)
        assert refused.stage == "decode"
        assert refused.reason == f"value is nested {depth} levels deep, over the limit of {MAX_DEPTH}"


def test_nesting_up_to_the_limit_is_accepted() -> None:
    raw = encode_event(event())[:-1] + b',"context":' + b"[" * (MAX_DEPTH - 1) + b"1" + b"]" * (MAX_DEPTH - 1) + b"}"
    assert decode(raw) == decode(event())
    assert parse_object(raw)["context"] is not None


# --------------------------------------------------------------------- the two paths agree


def test_the_real_data_takes_the_fast_path_and_both_paths_agree(real_data_path: Path) -> None:
    contract = telco_contract()
    for index, row in enumerate(load_rows(real_data_path)):
        raw = encode_event(contract.event_from_row(row, event_id=f"r-{index}", event_ts=TS))
        fast = contract._plain_object(raw, contract._decoder.decode(raw))
        assert fast is not None, row["customerID"]
        assert fast == contract.validate(parse_object(raw))


_MUTATIONS: list[Any] = [
    None, True, False, 0, 1, 2, -1, 0.0, 1.0, 1.5, -0.5, 72, 1200, 1201, 1e6, 1e7, 1e308, "", " ", "1", "1.0",
    "0", "nan", "inf", "Yes", "No", "Male", "DSL", "No internet service", "Two year", "Mailed check", [], {},
    ["Yes"], 10**18, -(2**53), 2**53 + 1, 12.0, "2026-11-27T08:00:00.000Z", "2026-13-01T00:00:00Z", "x" * 129,
    "\u00a0", "a b", "a\n",
]  # fmt: skip


def test_the_fast_path_never_accepts_what_the_full_path_refuses() -> None:
    """Mutate well-formed events field by field: the fast path either agrees with the full one or steps aside."""
    contract = telco_contract()
    generator = random.Random(2026)
    base = event()
    names = [*base, "extra"]
    accepted = refused = 0
    for _ in range(6000):
        obj = dict(base)
        for name in generator.sample(names, generator.choice([1, 1, 2, 3])):
            if generator.random() < 0.1:
                obj.pop(name, None)
            else:
                obj[name] = generator.choice(_MUTATIONS)
        raw = orjson.dumps(obj)
        try:
            fast = contract._plain_object(raw, contract._decoder.decode(raw))
        except Exception:  # msgspec refused it: the full path decides
            fast = None
        try:
            full = contract.validate(parse_object(raw))
        except InvalidEvent:
            assert fast is None, obj
            refused += 1
            continue
        assert fast is None or fast == full, obj
        assert contract.decode(raw) == full
        accepted += fast is not None
    assert accepted > 100 and refused > 100  # both paths were exercised

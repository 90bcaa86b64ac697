"""A catalogue of malformed events, for the harness (--inject-bad) and the hostile-input tests.

Each entry is one kind of damage a real stream carries: broken transport (empty, tombstone,
bytes that are not UTF-8 or not JSON, the wrong JSON shape, absurd nesting or size) or a
well-formed object that breaks the schema. Every one must end as exactly one dead letter.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from churnstream.contract.events import MAX_DEPTH, load_contract
from churnstream.contract.outputs import Stage
from churnstream.settings import DEFAULT_SCHEMA_PATH

_TEMPLATE_ROW = {
    "customerID": "9999-BAD",
    "gender": "Female",
    "SeniorCitizen": "0",
    "Partner": "Yes",
    "Dependents": "No",
    "tenure": "12",
    "PhoneService": "Yes",
    "MultipleLines": "No",
    "InternetService": "Fiber optic",
    "OnlineSecurity": "No",
    "OnlineBackup": "No",
    "DeviceProtection": "No",
    "TechSupport": "No",
    "StreamingTV": "Yes",
    "StreamingMovies": "Yes",
    "Contract": "Month-to-month",
    "PaperlessBilling": "Yes",
    "PaymentMethod": "Electronic check",
    "MonthlyCharges": "89.10",
    "TotalCharges": "1069.20",
}


@dataclass(frozen=True)
class BadEvent:
    kind: str
    stage: Stage  # the stage expected to reject it: decode or validate
    key: bytes | None
    value: bytes | None


def _event(event_id: str, event_ts: str) -> dict[str, Any]:
    """A valid Telco event (the catalogue damages a copy of it)."""
    return load_contract(DEFAULT_SCHEMA_PATH).event_from_row(_TEMPLATE_ROW, event_id=event_id, event_ts=event_ts)


def _changed(**changes: Any) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(event: dict[str, Any]) -> dict[str, Any]:
        event.update(changes)
        return event

    return apply


def _without(*names: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def apply(event: dict[str, Any]) -> dict[str, Any]:
        for name in names:
            event.pop(name, None)
        return event

    return apply


_SCHEMA_DAMAGE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "missing-customerID": _without("customerID"),
    "missing-tenure": _without("tenure"),
    "missing-event_id": _without("event_id"),
    "missing-event_ts": _without("event_ts"),
    "missing-all-features": lambda e: {"customerID": e["customerID"], "event_id": e["event_id"]},
    "tenure-not-a-number": _changed(tenure="twelve"),
    "tenure-negative": _changed(tenure=-3),
    "tenure-fractional": _changed(tenure=1.5),
    "tenure-boolean": _changed(tenure=True),
    "tenure-object": _changed(tenure={"months": 12}),
    "senior-citizen-2": _changed(SeniorCitizen=2),
    "monthly-charges-nan-string": _changed(MonthlyCharges="NaN"),
    "monthly-charges-infinity-string": _changed(MonthlyCharges="Infinity"),
    "monthly-charges-out-of-range": _changed(MonthlyCharges=1e9),
    "monthly-charges-boolean": _changed(MonthlyCharges=False),
    "total-charges-negative": _changed(TotalCharges=-10.0),
    "contract-unknown-category": _changed(Contract="Forever"),
    "internet-service-wrong-case": _changed(InternetService="fiber optic"),
    "gender-null": _changed(gender=None),
    "gender-object": _changed(gender={"value": "Female"}),
    "payment-method-list": _changed(PaymentMethod=["Mailed check"]),
    "customerID-empty": _changed(customerID=""),
    "customerID-number": _changed(customerID=12345),
    "customerID-too-long": _changed(customerID="X" * 500),
    "event_ts-not-a-timestamp": _changed(event_ts="yesterday"),
    "event_ts-bare-date": _changed(event_ts="2026-11-27"),
    "event_ts-not-utc": _changed(event_ts="2026-11-27T08:00:00+02:00"),
    "event_ts-year-1": _changed(event_ts="0001-01-01T00:00:00Z"),
    "tenure-underscore-digits": _changed(tenure="1_2"),
    "tenure-arabic-indic-digits": _changed(tenure="\u0661\u0662"),
    "tenure-fullwidth-digits": _changed(tenure="\uff11\uff12"),
    "tenure-exponent-string": _changed(tenure="1e1"),
    "event_id-null": _changed(event_id=None),
    # Numbers are JSON numbers (since 0.4: the published schema can then say exactly what is accepted).
    "tenure-decimal-string": _changed(tenure="12"),
    "tenure-5000-digit-string": _changed(tenure="9" * 5000),
    # Ids: the key becomes the prediction's key, so " 7590-VHVEG " must not be another customer.
    "customerID-surrounding-spaces": _changed(customerID=" 9999-BAD "),
    "customerID-control-character": _changed(customerID="9999\x07BAD"),
    "customerID-ansi-escape": _changed(customerID="\x1b[31m9999-BAD\x1b[0m"),
    "customerID-nul": _changed(customerID="9999\x00BAD"),
    "customerID-trailing-newline": _changed(customerID="9999-BAD\n"),
    "event_id-with-space": _changed(event_id="bad id"),
    "event_ts-february-30": _changed(event_ts="2026-02-30T08:00:00Z"),
    "event_ts-trailing-newline": _changed(event_ts="2026-11-27T08:00:00Z\n"),
    "event_ts-leap-second": _changed(event_ts="2026-12-31T23:59:60Z"),
}


def _transport_damage(valid: bytes) -> dict[str, bytes | None]:
    return {
        "empty-value": b"",
        "null-value-tombstone": None,
        "invalid-utf8": b'{"customerID": "\xff\xfe\xfa"}',
        "not-json": b"customerID=9999-BAD;tenure=12",
        "truncated-json": valid[: len(valid) // 2],
        "json-array": b"[" + valid + b"]",
        "json-string": orjson.dumps(valid.decode()),
        "json-number": b"42",
        "json-null": b"null",
        "json-nan-literal": valid.replace(b'"MonthlyCharges":89.1', b'"MonthlyCharges":NaN'),
        "json-infinity-literal": valid.replace(b'"MonthlyCharges":89.1', b'"MonthlyCharges":Infinity'),
        "utf16-encoded": valid.decode().encode("utf-16"),
        "nesting-100000-deep": b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
        "value-900kb": b'{"customerID":"9999-BAD","padding":"' + b"x" * 900_000 + b'"}',
        "duplicate-key": valid[:-1] + b',"tenure":70}',
        "duplicate-key-spaced": valid[:-1] + b',"tenure" :70}',
        "duplicate-key-escaped": valid[:-1] + b',"\\u0074enure":70}',
        "duplicate-key-nested": valid[:-1] + b',"context":{"a":1,"a":2}}',
        f"nesting-{MAX_DEPTH + 1}-deep-extra-field": valid[:-1]
        + b',"context":'
        + b"[" * MAX_DEPTH
        + b"1"
        + b"]" * MAX_DEPTH
        + b"}",
        "nesting-1010-deep-extra-field": valid[:-1] + b',"context":' + b'{"a":' * 1009 + b"1" + b"}" * 1009 + b"}",
    }


# Schema damage no Python value carries through orjson: numbers beyond a double, as JSON text.
_NUMBER_DAMAGE: dict[str, tuple[bytes, bytes]] = {
    "tenure-400-digit-number": (b'"tenure":12', b'"tenure":1' + b"0" * 400),
    "tenure-5000-digit-number": (b'"tenure":12', b'"tenure":' + b"9" * 5000),
    "monthly-charges-1e400": (b'"MonthlyCharges":89.1', b'"MonthlyCharges":1e400'),
}


def catalogue(event_id_prefix: str, event_ts: str) -> list[BadEvent]:
    """Every kind of malformed event we know, each with a unique event id where it has one."""
    items: list[BadEvent] = []
    valid = orjson.dumps(_event(f"{event_id_prefix}-transport", event_ts))
    for kind, value in _transport_damage(valid).items():
        items.append(BadEvent(kind, Stage.DECODE, b"9999-BAD", value))
    for index, (kind, damage) in enumerate(_SCHEMA_DAMAGE.items()):
        event = damage(_event(f"{event_id_prefix}-{index}", event_ts))
        items.append(BadEvent(kind, Stage.VALIDATE, b"9999-BAD", orjson.dumps(event)))
    for index, (kind, (old, new)) in enumerate(_NUMBER_DAMAGE.items(), start=len(_SCHEMA_DAMAGE)):
        value = orjson.dumps(_event(f"{event_id_prefix}-{index}", event_ts)).replace(old, new)
        items.append(BadEvent(kind, Stage.VALIDATE, b"9999-BAD", value))
    return items


def pick(count: int, event_id_prefix: str, event_ts: str) -> list[BadEvent]:
    """``count`` malformed events cycling through the kinds, so a small count is still varied."""
    kinds = catalogue(event_id_prefix, event_ts)
    # Interleave transport and schema damage so even count=4 covers both families.
    transport = [k for k in kinds if k.stage == Stage.DECODE]
    schema = [k for k in kinds if k.stage == Stage.VALIDATE]
    mixed = [item for pair in zip(transport, schema, strict=False) for item in pair]
    mixed += transport[len(schema) :] + schema[len(transport) :]
    return [mixed[i % len(mixed)] for i in range(count)]

"""The event contract, compiled: bytes -> a validated event, and a CSV row -> an event. Pure, no Kafka.

:func:`compile_contract` turns an :class:`~churnstream.contract.schema.EventSchema` into a
:class:`Contract` once; the consumer then decodes every record with it, in one of two paths:

* the **fast path**: msgspec decodes and validates the bytes in one C pass into a struct compiled
  from the schema (types, enums, ranges, lengths, patterns), and one byte count confirms what
  msgspec does not (no key given twice: see :meth:`Contract._plain_object`). Nearly every event a
  producer of ours or a well-behaved one writes takes it;
* the **full path**: anything else (a duplicate key, an extra or nested field, a number written
  12.0 for an integer, any refusal) is parsed with orjson and checked field by field in Python,
  which decides and explains: a reason a person can act on, at the stage it failed (``decode``:
  the bytes are not one JSON object by the envelope's rules; ``validate``: the object breaks the
  schema).

The two paths accept exactly the same events and build equal :class:`ValidEvent` s
(tests/unit/test_contract.py checks it on the real data and on mutated events). The envelope's
rules, beyond what the schema file can state: the value is present, at most ``max_value_bytes``
long, one JSON object, each key given once at every level, nested at most :data:`MAX_DEPTH` levels;
an integer field holds at most +-2**53 (what a double, and so pandas, holds exactly).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, Optional

import msgspec
import orjson
from msgspec.structs import astuple

from churnstream.contract.outputs import Stage
from churnstream.contract.schema import (
    BOOLEAN,
    EVENT_ID,
    EVENT_TS,
    EVENT_TS_PATTERN,
    EVENT_TS_RULE,
    EVENT_TS_YEARS,
    ID_ALPHABET,
    ID_CHARACTERS,
    INTEGER,
    NUMBER,
    STRING,
    EventSchema,
    Field,
    load_schema,
)
from churnstream.errors import InvalidEvent

__all__ = [
    "DEFAULT_MAX_VALUE_BYTES",
    "EVENT_ID",
    "EVENT_TS",
    "MAX_DEPTH",
    "Contract",
    "ValidEvent",
    "compile_contract",
    "encode_event",
    "format_ts",
    "load_contract",
    "parse_ts",
    "utc_now_iso",
]

# Far above a real event (about 600 bytes) and far below the broker's 1 MB message limit,
# so an oversized value is rejected by rule, and the dead letter that carries it still fits.
DEFAULT_MAX_VALUE_BYTES = 64 * 1024
# An event is flat; context a producer adds may nest a little. Deeper is hostile (and Python's own
# parsers recurse): refused at decode, with the depth in the reason.
MAX_DEPTH = 64
MAX_SAFE_INTEGER = 2**53  # a double holds every integer up to here exactly; pandas and numpy read them as such

_EVENT_TS = re.compile(EVENT_TS_PATTERN, re.ASCII)
# A key's closing quote and its colon, with the whitespace JSON allows between them.
_KEY_COLON = re.compile(rb'"[ \t\r\n]*:')
_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[{}\[\],]')
_WHOLE_TEXT = re.compile(r"-?[0-9]+", re.ASCII)
_WHOLE_CELL = re.compile(r"-?[0-9]+(\.0+)?", re.ASCII)  # pandas writes an integer column with a gap as 12.0
_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)
_TRUE_TEXTS, _FALSE_TEXTS = frozenset({"true", "1"}), frozenset({"false", "0"})
_ID_TEXT = "".join(sorted(ID_CHARACTERS))


# --------------------------------------------------------------------------- times


def utc_now_iso() -> str:
    return format_ts(datetime.now(UTC))


def format_ts(moment: datetime) -> str:
    """ISO-8601 UTC with milliseconds and a ``Z``: ``2026-11-27T08:15:45.123Z``."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def parse_ts(text: str) -> datetime:
    """Parse an ISO-8601 timestamp; naive times are taken as UTC."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ts_to_epoch_ms(text: str) -> float:
    return parse_ts(text).timestamp() * 1000.0


def event_time_ms(text: str) -> float | str:
    """The event time in ms since the epoch when ``text`` is one the pipeline accepts (EVENT_TS_RULE),
    else the reason it is not (a str). One parse serves the check and the latency metric."""
    match = _EVENT_TS.fullmatch(text)
    if match is None:
        year = text[:4]
        if re.fullmatch(r"[0-9]{4}-.*", text, re.ASCII | re.DOTALL) and not (
            EVENT_TS_YEARS[0] <= int(year) <= EVENT_TS_YEARS[1]
        ):
            return f"{EVENT_TS}={text[:40]!r} is in year {int(year)}, outside {EVENT_TS_YEARS[0]}-{EVENT_TS_YEARS[1]}"
        return f"{EVENT_TS}={text[:40]!r} is not {EVENT_TS_RULE}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return f"{EVENT_TS}={text[:40]!r} is not a real date and time"
    return moment.timestamp() * 1000.0


def event_ts_problem(text: str) -> str | None:
    """None when ``text`` is an event time the pipeline accepts (EVENT_TS_RULE), else why not."""
    parsed = event_time_ms(text)
    return parsed if isinstance(parsed, str) else None


def encode_event(event: Mapping[str, Any]) -> bytes:
    return orjson.dumps(event)


# --------------------------------------------------------------------------- the validated event


class ValidEvent(NamedTuple):
    """An event the contract accepted: its key (the ``x-key`` field), envelope, and the features in
    the schema's order, typed (str, int, float, bool; None where null or absent). A named tuple: one
    is built per event on the hot path, and a frozen dataclass costs twice as much to build."""

    key: str
    event_id: str
    event_ts: str
    features: tuple[Any, ...]
    event_ms: float = 0.0  # event_ts in ms since the epoch (for the latency metric)


def _reject(reason: str) -> InvalidEvent:
    return InvalidEvent(Stage.VALIDATE, reason)


def _json_kind(value: Any) -> str:
    """What JSON calls a value's type, with an article, for a reason."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float | _HugeNumber):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _shown(value: Any, limit: int = 40) -> str:
    """A value as a reason quotes it: never more than ``limit`` characters of it."""
    if isinstance(value, str):
        return repr(value[:limit]) + ("..." if len(value) > limit else "")
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


class _HugeNumber:
    """A JSON number no double holds (orjson refuses it; the full path keeps it to say which field)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"a {len(self.text.lstrip('-'))}-character number"


# --------------------------------------------------------------------------- one field's checks


Check = Callable[[Any], Any]  # value -> the typed value, or InvalidEvent(validate)


def _bounds(field: Field) -> tuple[float, float]:
    low = field.minimum if field.minimum is not None else -math.inf
    high = field.maximum if field.maximum is not None else math.inf
    if field.kind == INTEGER:
        low = max(math.ceil(low), -MAX_SAFE_INTEGER) if math.isfinite(low) else -MAX_SAFE_INTEGER
        high = min(math.floor(high), MAX_SAFE_INTEGER) if math.isfinite(high) else MAX_SAFE_INTEGER
    return low, high


def _range_text(low: float, high: float) -> str:
    return f"[{low:g}, {high:g}]"


def _number_check(field: Field) -> Check:
    name, whole = field.name, field.kind == INTEGER
    low, high = _bounds(field)
    required = "a whole number" if whole else "a number"

    def check(value: Any) -> Any:
        kind = value.__class__
        if kind is bool or not (kind is int or kind is float):
            if isinstance(value, _HugeNumber):
                raise _reject(f"{name} is {value!r}, beyond a double; out of range {_range_text(low, high)}")
            hint = ""
            if isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value.strip()):
                hint = f" (numbers are JSON numbers: write {_shown(value.strip(), 20)[1:-1]}, not {_shown(value, 20)})"
            raise _reject(f"{name} is {_json_kind(value)}; {required} is required{hint}")
        if whole and kind is float and not value.is_integer():
            raise _reject(f"{name}={value!r} is not a whole number")
        if not low <= value <= high or (kind is float and math.isinf(value)):
            raise _reject(f"{name}={_shown(value)} is out of range {_range_text(low, high)}")
        return int(value) if whole else float(value)

    return check


def _boolean_check(field: Field) -> Check:
    name = field.name

    def check(value: Any) -> Any:
        if value.__class__ is not bool:
            raise _reject(f"{name} is {_json_kind(value)}; true or false is required")
        return value

    return check


def _string_check(field: Field) -> Check:
    name, enum = field.name, field.categories
    allowed = frozenset(enum) if enum is not None else None
    pattern = re.compile(field.python_pattern) if field.python_pattern is not None else None

    def check(value: Any) -> Any:
        if value.__class__ is not str:
            raise _reject(f"{name} is {_json_kind(value)}; a string is required")
        if allowed is not None:
            if value not in allowed:
                assert enum is not None
                raise _reject(f"{name}={_shown(value, 60)} is not a known category; allowed: " + ", ".join(enum))
            return value
        if field.max_length is not None and len(value) > field.max_length:
            raise _reject(f"{name} is {len(value)} characters, over the limit of {field.max_length}")
        if field.min_length is not None and len(value) < field.min_length:
            raise _reject(f"{name} is {len(value)} characters, under the minimum of {field.min_length}")
        if pattern is not None and pattern.search(value) is None:
            raise _reject(f"{name}={_shown(value)} does not match the pattern {field.pattern}")
        return value

    return check


def _field_check(field: Field) -> Check:
    inner = (
        _string_check(field)
        if field.kind not in (INTEGER, NUMBER, BOOLEAN)
        else _boolean_check(field)
        if field.kind == BOOLEAN
        else _number_check(field)
    )
    if not field.allows_null:
        name = field.name

        def not_null(value: Any) -> Any:
            if value is None:
                kind = "a string" if field.kind not in (INTEGER, NUMBER, BOOLEAN) else f"a {field.kind}"
                raise _reject(f"{name} is null; {kind} is required")
            return inner(value)

        return not_null
    return lambda value: None if value is None else inner(value)


def _identifier(obj: Mapping[str, Any], field: Field) -> str:
    """The key and ``event_id``: a non-empty string of the id alphabet, within the field's lengths."""
    name = field.name
    if name not in obj:
        raise _reject(f"{name} is missing")
    value = obj[name]
    if value.__class__ is not str or not value:
        kind = "an empty string" if value == "" else _json_kind(value)
        raise _reject(f"{name} is {kind}; a non-empty string is required")
    limit = field.max_length or 0
    if len(value) > limit:
        raise _reject(f"{name} is {len(value)} characters, over the limit of {limit}")
    outside = value.strip(_ID_TEXT)
    if outside:
        position = value.index(outside[0])
        raise _reject(
            f"{name}={_shown(value)} has {outside[0]!r} at position {position}, outside the id alphabet ({ID_ALPHABET})"
        )
    if field.min_length is not None and len(value) < field.min_length:
        raise _reject(f"{name} is {len(value)} characters, under the minimum of {field.min_length}")
    return value


# --------------------------------------------------------------------------- the envelope's parse


def _duplicate_key(value: bytes) -> str | None:
    """The first key an object of ``value`` (valid JSON) gives twice, at any level; None when none is.

    Iterative over tokens (no recursion, whatever the depth); a key is compared decoded, so "a" and
    "\\u0061" are the same key, as every JSON parser takes them.
    """
    stack: list[set[str] | None] = []  # a set of keys per open object, None per open array
    expect_key = False
    for match in _TOKENS.finditer(value):
        first = match.group()[:1]
        if first == b"{":
            stack.append(set())
            expect_key = True
        elif first == b"[":
            stack.append(None)
            expect_key = False
        elif first in (b"}", b"]"):
            stack.pop()
            expect_key = False
        elif first == b",":
            expect_key = bool(stack) and stack[-1] is not None
        elif expect_key:  # a string where a key stands
            keys = stack[-1]
            assert keys is not None
            key = orjson.loads(match.group())
            if key in keys:
                return str(key)
            keys.add(key)
            expect_key = False
    return None


def _depth_and_keys(obj: Any) -> tuple[int, int]:
    """How deep ``obj`` nests (an object of scalars is 1) and how many keys its objects hold in all."""
    depth, keys = 0, 0
    pending: list[tuple[Any, int]] = [(obj, 1)]
    while pending:
        node, level = pending.pop()
        if isinstance(node, dict):
            depth, keys = max(depth, level), keys + len(node)
            pending.extend((child, level + 1) for child in node.values() if isinstance(child, dict | list))
        elif isinstance(node, list):
            depth = max(depth, level)
            pending.extend((child, level + 1) for child in node if isinstance(child, dict | list))
    return depth, keys


def _refuse_constant(text: str) -> Any:
    raise ValueError(f"{text} is not JSON")


def _parse_keeping_huge_numbers(value: bytes) -> Any:
    """The stdlib's parser, for the one case orjson refuses and JSON allows: a number no double holds.
    Such numbers come back as :class:`_HugeNumber`, so the validator can say which field holds one."""

    def number(text: str) -> Any:
        parsed = float(text)
        return _HugeNumber(text) if math.isinf(parsed) else (int(text) if _WHOLE_TEXT.fullmatch(text) else parsed)

    def whole(text: str) -> Any:
        return _HugeNumber(text) if len(text.lstrip("-")) > 300 else number(text)

    return json.loads(value, parse_int=whole, parse_float=number, parse_constant=_refuse_constant)


def parse_object(value: bytes | None, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> dict[str, Any]:
    """Bytes -> one JSON object by the envelope's rules, or InvalidEvent(stage="decode") saying why not."""
    if value is None:
        raise InvalidEvent(Stage.DECODE, "value is null (a tombstone); a JSON object is required")
    if len(value) == 0:
        raise InvalidEvent(Stage.DECODE, "value is empty; a JSON object is required")
    if len(value) > max_value_bytes:
        raise InvalidEvent(Stage.DECODE, f"value is {len(value)} bytes, over the limit of {max_value_bytes}")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        message = str(exc)
        if "depth limit" in message:
            raise InvalidEvent(
                Stage.DECODE, f"value is nested over 1024 levels deep, the limit is {MAX_DEPTH}"
            ) from None
        if "infinity" not in message:
            raise InvalidEvent(Stage.DECODE, f"value is not valid JSON: {exc}") from None
        try:
            obj = _parse_keeping_huge_numbers(value)
        except (ValueError, RecursionError) as second:
            raise InvalidEvent(Stage.DECODE, f"value is not valid JSON: {second}") from None
    if not isinstance(obj, dict):
        kind = "null" if obj is None else type(obj).__name__
        raise InvalidEvent(Stage.DECODE, f"value is JSON {kind}; a JSON object is required")
    depth, keys = _depth_and_keys(obj)
    if depth > MAX_DEPTH:
        raise InvalidEvent(Stage.DECODE, f"value is nested {depth} levels deep, over the limit of {MAX_DEPTH}")
    # Each key is one match of "<spaces>: (a string that holds one adds a match): as many matches as
    # keys means no key was given twice; otherwise the tokens decide.
    if len(_KEY_COLON.findall(value)) != keys:
        repeated = _duplicate_key(value)
        if repeated is not None:
            raise InvalidEvent(
                Stage.DECODE, f"value has the key {repeated[:60]!r} more than once; which one counts is ambiguous"
            )
    return obj


# --------------------------------------------------------------------------- the compiled contract


def _msgspec_type(field: Field, *, for_key: bool = False) -> Any:
    """The msgspec type that accepts what :func:`_field_check` accepts, or less (never more)."""
    if field.kind == BOOLEAN:
        kind: Any = bool
    elif field.kind in (INTEGER, NUMBER):
        low, high = _bounds(field)
        meta = {**({"ge": low} if math.isfinite(low) else {}), **({"le": high} if math.isfinite(high) else {})}
        kind = Annotated[int if field.kind == INTEGER else float, msgspec.Meta(**meta)]
    elif field.categories is not None:
        kind = Literal[field.categories]
    elif for_key:  # the id alphabet is checked after decoding (str.strip, faster than a pattern here)
        kind = Annotated[str, msgspec.Meta(min_length=field.min_length or 1, max_length=field.max_length)]
    else:
        meta = {
            **({"min_length": field.min_length} if field.min_length is not None else {}),
            **({"max_length": field.max_length} if field.max_length is not None else {}),
            **({"pattern": field.python_pattern} if field.python_pattern is not None else {}),
        }
        kind = Annotated[str, msgspec.Meta(**meta)] if meta else str
    return Optional[kind] if field.allows_null else kind  # noqa: UP045 - a runtime type built for msgspec


class Contract:
    """One schema, compiled: :meth:`decode` for the consumer, :meth:`event_from_row` for the producer."""

    def __init__(self, schema: EventSchema) -> None:
        self.schema = schema
        self.key_field = schema.key_field
        features = schema.features
        self.feature_names: tuple[str, ...] = tuple(f.name for f in features)
        self._features = features
        self._key = schema.field(schema.key_field)
        self._event_id = schema.field(EVENT_ID)
        self._checks = tuple((f.name, f.required, _field_check(f)) for f in features)
        self._required_features = tuple(f.name for f in features if f.required)
        # The struct: features first (astuple()[:n] are the features), then key, event_id, event_ts.
        # Python names f0.. with the JSON names as renames: any property name works.
        names = [*self.feature_names, schema.key_field, EVENT_ID, EVENT_TS]
        optional = {f.name for f in features if not f.required}
        struct_fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
        for index, field in enumerate((*features, self._key, self._event_id)):
            kind = _msgspec_type(field, for_key=field.name in (schema.key_field, EVENT_ID))
            if field.name in optional:
                struct_fields.append((f"f{index}", kind | msgspec.UnsetType, msgspec.UNSET))
            else:
                struct_fields.append((f"f{index}", kind))
        struct_fields.append((f"f{len(names) - 1}", Annotated[str, msgspec.Meta(pattern=EVENT_TS_PATTERN)]))
        struct_fields.sort(key=len)  # fields with a default after those without (msgspec requires it)
        order = [int(entry[0][1:]) for entry in struct_fields]
        self._positions = tuple(order.index(index) for index in range(len(names)))
        # Unknown fields refused: the fast path takes flat objects of the schema's fields only (an event
        # with extra fields is the full path's, which ignores them when the schema allows them).
        self._struct = msgspec.defstruct(
            "Event",
            struct_fields,
            rename={f"f{index}": name for index, name in enumerate(names)},
            forbid_unknown_fields=True,
            gc=False,
        )
        self._decoder = msgspec.json.Decoder(self._struct)
        self._optional = bool(optional)
        self._fields_in_struct = len(names)
        self._plain = self._positions == tuple(range(len(names))) and not self._optional
        # Fields whose value is always a string when present (the key, the envelope, non-null strings),
        # and the places of those that may or may not be (nullable or optional strings): _plain_object.
        always = [f for f in (*features, self._key, self._event_id) if f.kind == STRING and not f.allows_null]
        self._string_fields = len([f for f in always if f.required]) + 1  # + event_ts
        self._maybe_strings = tuple(
            index for index, f in enumerate(features) if f.kind == STRING and (f.allows_null or not f.required)
        )

    # ------------------------------------------------------------------ the consumer's decode

    def decode(self, value: bytes | None, max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES) -> ValidEvent:
        """Bytes -> ValidEvent, or InvalidEvent saying why not (stage ``decode`` or ``validate``)."""
        if value is not None and 0 < len(value) <= max_value_bytes:
            try:
                event = self._decoder.decode(value)
            except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
                pass  # the full path decides, and says why
            else:
                valid = self._plain_object(value, event)
                if valid is not None:
                    return valid
        obj = parse_object(value, max_value_bytes)
        try:
            return self.validate(obj)
        except InvalidEvent as exc:
            event_id = obj.get(EVENT_ID)
            exc.event_id = event_id if isinstance(event_id, str) else None  # an invalid event's id may be anything
            raise

    def _plain_object(self, value: bytes, event: Any) -> ValidEvent | None:
        """The fast path's answer, when the bytes hold each of the schema's fields once and nothing else.

        msgspec has accepted one flat JSON object of the schema's fields (unknown ones refused), each
        value of its type; but it keeps the last of two equal keys. In such an object a quote byte is
        a key's (two each), a string value's (two each), or an escaped one inside a string: nothing
        else holds byte 0x22, not even UTF-8's multibyte characters. So the quotes number exactly
        2 x (keys present + string values) only when no key is given twice (a second one adds at least
        its own two) and no string holds an escaped quote. One ``bytes.count``, no parse; anything
        else goes to the full path.
        """
        values = astuple(event)
        present = self._fields_in_struct
        if self._optional:
            values = tuple(values[position] for position in self._positions)
            present -= sum(1 for item in values if item is msgspec.UNSET)
            values = tuple(None if item is msgspec.UNSET else item for item in values)
        elif not self._plain:
            values = tuple(values[position] for position in self._positions)
        strings = self._string_fields
        for index in self._maybe_strings:
            strings += values[index].__class__ is str
        if value.count(b'"') != 2 * (present + strings):
            return None
        count = len(self.feature_names)
        key, event_id, event_ts = values[count], values[count + 1], values[count + 2]
        if key.strip(_ID_TEXT) or event_id.strip(_ID_TEXT):
            return None
        try:
            event_ms = datetime.fromisoformat(event_ts).timestamp() * 1000.0
        except ValueError:
            return None
        return ValidEvent(key, event_id, event_ts, values[:count], event_ms)

    # ------------------------------------------------------------------ the full path

    def validate(self, obj: Mapping[str, Any]) -> ValidEvent:
        """A decoded object -> ValidEvent, or InvalidEvent(stage="validate") naming the first problem.

        The order: the key, ``event_id``, ``event_ts``, then the features that are missing (all of
        them listed), then each feature in the schema's order. Extra fields are ignored when the
        schema allows them (``additionalProperties``); unknown category values are refused, because
        the model would silently score a customer it has never seen as if it had.
        """
        key = _identifier(obj, self._key)
        event_id = _identifier(obj, self._event_id)
        if EVENT_TS not in obj:
            raise _reject(f"{EVENT_TS} is missing")
        event_ts = obj[EVENT_TS]
        if event_ts.__class__ is not str:
            raise _reject(f"{EVENT_TS} is {_json_kind(event_ts)}; {EVENT_TS_RULE} is required")
        event_ms = event_time_ms(event_ts)
        if isinstance(event_ms, str):
            raise _reject(event_ms)
        missing = [name for name in self._required_features if name not in obj]
        if missing:
            raise _reject("missing required field(s): " + ", ".join(missing))
        if not self.schema.allows_extra_fields:
            known = {f.name for f in self.schema.fields}
            extra = [name for name in obj if name not in known]
            if extra:
                raise _reject(f"{extra[0][:60]!r} is not a field of the schema (additionalProperties is false)")
        features = tuple(check(obj[name]) if name in obj else None for name, _, check in self._checks)
        return ValidEvent(key, event_id, event_ts, features, event_ms)

    def features_of(self, event: Mapping[str, Any]) -> tuple[Any, ...]:
        """A feature mapping (a card's canary row, a test's) in the schema's order (absent -> None)."""
        return tuple(event.get(name) for name in self.feature_names)

    # ------------------------------------------------------------------ the producer's CSV rows

    def event_from_row(self, row: Mapping[str, str | None], event_id: str, event_ts: str) -> dict[str, Any]:
        """A CSV row (strings) -> an event of this schema, or InvalidEvent naming the column.

        Types come from the schema: whole numbers and decimals as plain ASCII (``12``, ``-70.35``; a
        whole number may end in ``.0``, as pandas writes an integer column with gaps; not ``1e3``,
        ``1_2`` nor other scripts' digits), booleans as true/false or 1/0. An empty cell
        (or only spaces) is null where the schema allows null; else the field is left out where the
        schema does not require it; else an empty string for a string; else a refusal. The event
        then passes the same checks the consumer makes.
        """
        event: dict[str, Any] = {}
        for field in self.schema.fields:
            if field.name == EVENT_ID:
                event[EVENT_ID] = event_id
            elif field.name == EVENT_TS:
                event[EVENT_TS] = event_ts
            elif field.name in row:
                cell = row[field.name]
                if not field.required and not field.allows_null and not (cell or "").strip():
                    continue
                event[field.name] = _cell(field, cell)
            elif field.required:
                raise _reject(f"column {field.name} is missing")
        self.validate(event)
        return event


def _cell(field: Field, cell: str | None) -> Any:
    text = (cell or "").strip()
    if not text:
        if field.allows_null:
            return None
        if field.kind not in (INTEGER, NUMBER, BOOLEAN):
            return cell or ""
        raise _reject(f"{field.name} is empty, and the schema does not allow null")
    if field.kind == INTEGER:
        if not _WHOLE_CELL.fullmatch(text):
            raise _reject(f"{field.name}={_shown(text)} is not a plain whole number")
        whole = text.split(".", 1)[0]
        if len(whole.lstrip("-")) > 16:
            raise _reject(f"{field.name}={_shown(text)} is out of range {_range_text(*_bounds(field))}")
        return int(whole)
    if field.kind == NUMBER:
        if not _DECIMAL_TEXT.fullmatch(text):
            raise _reject(f"{field.name}={_shown(text)} is not a plain decimal number")
        number = float(text)
        if math.isinf(number):
            bounds = _range_text(*_bounds(field))
            raise _reject(f"{field.name}={_shown(text)} is beyond a double; out of range {bounds}")
        return number
    if field.kind == BOOLEAN:
        lowered = text.lower()
        if lowered in _TRUE_TEXTS or lowered in _FALSE_TEXTS:
            return lowered in _TRUE_TEXTS
        raise _reject(f"{field.name}={_shown(text)} is not a boolean (true, false, 1 or 0)")
    return cell


_COMPILED: dict[str, Contract] = {}


def compile_contract(schema: EventSchema) -> Contract:
    """The schema's compiled contract, once per schema (by its sha256) in a process."""
    contract = _COMPILED.get(schema.sha256)
    if contract is None:
        contract = _COMPILED[schema.sha256] = Contract(schema)
    return contract


_LOADED: dict[tuple[str, int, int], Contract] = {}


def load_contract(path: Path) -> Contract:
    """Read a schema file and compile it (ConfigError, exit 3, when it is outside the subset); read again
    only when the file changed (its size or modification time)."""
    try:
        stat = path.stat()
    except OSError:
        return compile_contract(load_schema(path))  # load_schema says why, in one line
    marker = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    contract = _LOADED.get(marker)
    if contract is None:
        contract = _LOADED[marker] = compile_contract(load_schema(path))
    return contract

"""The event contract as data: a JSON Schema file, read once into an :class:`EventSchema`.

The file is a documented subset of JSON Schema draft 2020-12 (docs/reference/event-schema.md says
which keywords, and why). ``schemas/event.schema.json`` is the Telco contract, the default; a telco
brings its own file (``--schema``, ``EVENT_SCHEMA``) and nothing in the package changes. From the
schema come the consumer's validator (contract.events), the model's features (every property but
the key and the envelope, in the file's order), the producer's CSV parsing and the docs.

Two things are the pipeline's own, whatever the file says (the *envelope*):

* ``event_id`` and ``event_ts``: every event carries them; a file may leave them out (they are
  added) or spell them exactly as :data:`ENVELOPE_PROPERTIES` does, nothing else;
* the key field (``x-key``): a required, non-null string in the id alphabet (:data:`ID_PATTERN`),
  so that " 7590-VHVEG " and "7590-VHVEG" can never be two customers. It is the record's key and
  the prediction's id field.

Rules no JSON Schema keyword can state (a key given twice, nesting depth, the value's size) are the
envelope's too: contract.events enforces them and the reference lists them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnstream.errors import ConfigError

DRAFT = "https://json-schema.org/draft/2020-12/schema"
KEY_KEYWORD = "x-key"
EVENT_ID = "event_id"
EVENT_TS = "event_ts"
ENVELOPE_FIELDS = (EVENT_ID, EVENT_TS)

MAX_ID_LENGTH = 128
ID_ALPHABET = "A-Z a-z 0-9 . _ : @ + / # = -"
ID_CHARACTERS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@+/#=-")
# "$(?!\n)": in ECMA-262 "$" ends the text; in Python's re (msgspec's and the jsonschema library's) it
# also matches before a final newline, which an id must not end with.
ID_PATTERN = r"^[A-Za-z0-9._:@+/#=-]+$(?!\n)"
# ISO-8601 UTC with a time, as the producer writes it (2026-11-27T08:15:45.123Z); "+00:00" for Z is
# accepted. Explicit classes, never \d: JSON Schema's patterns are ECMA-262, where \d is ASCII only,
# but Python's re (this validator's, and the jsonschema library's) lets \d match any script's digits.
EVENT_TS_YEARS = (1970, 2099)
EVENT_TS_PATTERN = (
    r"^(19[7-9][0-9]|20[0-9][0-9])-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
    r"T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?(Z|\+00:00)$(?!\n)"
)
EVENT_TS_RULE = "an ISO-8601 UTC time, YYYY-MM-DDTHH:MM:SS[.fraction]Z (or +00:00), between 1970 and 2099"

_ID_PROPERTY: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_ID_LENGTH,
    "pattern": ID_PATTERN,
}
ENVELOPE_PROPERTIES: dict[str, dict[str, Any]] = {
    EVENT_TS: {
        "description": f"When the event happened: {EVENT_TS_RULE} (the pipeline's envelope).",
        "type": "string",
        "format": "date-time",
        "pattern": EVENT_TS_PATTERN,
    },
    EVENT_ID: {
        "description": f"A unique id of this event, 1-{MAX_ID_LENGTH} characters of {ID_ALPHABET} "
        "(the pipeline's envelope).",
        **_ID_PROPERTY,
    },
}

# The subset: what each keyword may hold. Anything else is refused in one line, so a schema never
# says more than the validator checks.
STRING, INTEGER, NUMBER, BOOLEAN, NULL = "string", "integer", "number", "boolean", "null"
KINDS = (STRING, INTEGER, NUMBER, BOOLEAN)
TOP_KEYWORDS = frozenset(
    {
        "$schema",
        "$id",
        "$comment",
        "title",
        "description",
        "type",
        "properties",
        "required",
        "additionalProperties",
        KEY_KEYWORD,
        "examples",
    }
)
PROPERTY_KEYWORDS = frozenset(
    {
        "type",
        "enum",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "pattern",
        "format",
        "title",
        "description",
        "$comment",
        "examples",
    }
)
MAX_CATEGORIES = 1000


@dataclass(frozen=True)
class Field:
    """One property of the event, as the validator and the model see it."""

    name: str
    kind: str  # string, integer, number or boolean
    nullable: bool = False
    required: bool = True
    enum: tuple[Any, ...] | None = None  # allowed values (None allowed only when listed)
    minimum: float | None = None
    maximum: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    description: str = ""

    @property
    def python_pattern(self) -> str | None:
        """``pattern`` as Python's ``re`` must read it to match what JSON Schema's (ECMA-262) matches."""
        return None if self.pattern is None else ecma_to_python(self.pattern)

    @property
    def categorical(self) -> bool:
        """A string feature: the model one-hot encodes it (over ``enum`` when the schema lists one)."""
        return self.kind == STRING

    @property
    def numeric(self) -> bool:
        return self.kind in (INTEGER, NUMBER, BOOLEAN)

    @property
    def allows_null(self) -> bool:
        return self.nullable and (self.enum is None or None in self.enum)

    @property
    def may_be_missing(self) -> bool:
        """The model can see no value here: null is allowed, or the field is optional and left out."""
        return self.allows_null or not self.required

    @property
    def categories(self) -> tuple[str, ...] | None:
        """A string feature's known values, null left out; None when the schema does not list them."""
        if self.enum is None:
            return None
        return tuple(value for value in self.enum if value is not None)


@dataclass(frozen=True)
class EventSchema:
    """A schema file, checked and completed with the envelope. ``document`` is what a model card
    embeds and what ``schemas/`` publishes; ``sha256`` names it."""

    document: dict[str, Any]
    key_field: str
    fields: tuple[Field, ...]  # every property, in the file's order (envelope fields last if added)
    source: str  # where it was read from, for messages
    sha256: str

    @property
    def title(self) -> str:
        return str(self.document.get("title") or self.source)

    @property
    def features(self) -> tuple[Field, ...]:
        """What the model reads: every property but the key and the envelope, in the file's order."""
        return tuple(f for f in self.fields if f.name != self.key_field and f.name not in ENVELOPE_FIELDS)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def field(self, name: str) -> Field:
        for candidate in self.fields:
            if candidate.name == name:
                return candidate
        raise KeyError(name)

    @property
    def allows_extra_fields(self) -> bool:
        return self.document.get("additionalProperties", True) is not False


def canonical_bytes(document: Mapping[str, Any]) -> bytes:
    """What ``sha256`` is taken of: the schema as canonical JSON (sorted keys, no spaces), then the order
    of its properties, which sorted keys lose and the model's feature order is."""
    canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    order = json.dumps(list(document.get("properties") or {}), ensure_ascii=False)
    return f"{canonical}\n{order}".encode()


def schema_sha256(document: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(document)).hexdigest()


def _refuse(source: str, what: str) -> ConfigError:
    return ConfigError(f"schema {source}: {what}")


def load_schema(path: Path) -> EventSchema:
    """Read and check a schema file. ConfigError (exit 3), in one line, for anything outside the subset."""
    if not path.is_file():
        raise ConfigError(
            f"schema file {path} does not exist (--schema or EVENT_SCHEMA; the Telco one is schemas/event.schema.json)"
        )
    try:
        document = json.loads(
            path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys, parse_constant=_not_json
        )
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"schema file {path} cannot be read: {exc}") from None
    except ValueError as exc:
        raise ConfigError(f"schema file {path} is not valid JSON: {exc}") from None
    return schema_from_document(document, str(path))


def _not_json(constant: str) -> Any:
    raise ValueError(f"{constant} is not a JSON value")


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [key for key, _ in pairs]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        raise ValueError(f"the key {repeated[0]!r} is given more than once")
    return dict(pairs)


def schema_from_document(document: Any, source: str) -> EventSchema:
    """Check a parsed schema against the subset and complete it with the envelope."""
    if not isinstance(document, dict):
        raise _refuse(source, "is not a JSON object")
    unknown = sorted(set(document) - TOP_KEYWORDS)
    if unknown:
        raise _refuse(
            source, f"uses {unknown[0]!r}, outside the supported subset (top level: {', '.join(sorted(TOP_KEYWORDS))})"
        )
    if document.get("$schema", DRAFT) != DRAFT:
        raise _refuse(source, f"$schema is {document['$schema']!r}; this validator implements {DRAFT}")
    if document.get("type") != "object":
        raise _refuse(source, 'needs "type": "object" (an event is a JSON object)')
    if document.get("additionalProperties", True) not in (True, False):
        raise _refuse(source, "additionalProperties must be true or false (a schema for extra fields is not supported)")
    properties = document.get("properties")
    if not isinstance(properties, dict) or not properties:
        raise _refuse(source, "needs a non-empty properties object")
    required = document.get("required", [])
    if not isinstance(required, list) or not all(isinstance(name, str) for name in required):
        raise _refuse(source, "required must be a list of property names")
    missing = [name for name in required if name not in properties and name not in ENVELOPE_FIELDS]
    if missing:
        raise _refuse(source, f"requires {missing[0]!r}, which is not among its properties")
    key_field = document.get(KEY_KEYWORD)
    if not isinstance(key_field, str) or key_field not in properties:
        raise _refuse(
            source,
            f'needs "{KEY_KEYWORD}": the name of the property that is the record key and the '
            "prediction's id (for Telco: customerID)",
        )
    if key_field in ENVELOPE_FIELDS:
        raise _refuse(source, f"{KEY_KEYWORD} cannot be the envelope field {key_field!r}")

    completed = {name: dict(spec) if isinstance(spec, dict) else spec for name, spec in properties.items()}
    for name, envelope in ENVELOPE_PROPERTIES.items():
        if name not in completed:
            completed[name] = dict(envelope)
        elif _without_notes(completed[name]) != _without_notes(envelope):
            raise _refuse(
                source,
                f"{name} is the pipeline's envelope field; leave it out of the file or define it "
                f"exactly as the envelope does: {json.dumps(_without_notes(envelope))}",
            )
    completed[key_field] = _key_property(source, key_field, completed[key_field])
    required_names = list(dict.fromkeys([*required, key_field, *ENVELOPE_FIELDS]))
    fields = tuple(_field(source, name, spec, name in required_names) for name, spec in completed.items())
    normalized = {
        **{k: v for k, v in document.items() if k not in ("properties", "required")},
        "$schema": DRAFT,
        "properties": completed,
        "required": required_names,
    }
    features = [f for f in fields if f.name != key_field and f.name not in ENVELOPE_FIELDS]
    if not features:
        raise _refuse(source, "has no feature: every property is the key or the envelope")
    return EventSchema(normalized, key_field, fields, source, schema_sha256(normalized))


def _without_notes(spec: Any) -> Any:
    if not isinstance(spec, dict):
        return spec
    return {k: v for k, v in spec.items() if k not in ("description", "title", "$comment", "examples")}


def _key_property(source: str, name: str, spec: Any) -> dict[str, Any]:
    """The key: a required, non-null string in the id alphabet, 1-128 characters (at most)."""
    if not isinstance(spec, dict) or spec.get("type") != STRING:
        raise _refuse(source, f'the key field {name!r} must be {{"type": "string"}} (not null: it is the record key)')
    if "enum" in spec:
        raise _refuse(source, f"the key field {name!r} cannot have an enum")
    if spec.get("pattern", ID_PATTERN) != ID_PATTERN:
        raise _refuse(
            source,
            f"the key field {name!r} has its own pattern; keys follow the pipeline's id rule "
            f"({ID_ALPHABET}, pattern {ID_PATTERN}): remove its pattern",
        )
    low, high = spec.get("minLength", 1), spec.get("maxLength", MAX_ID_LENGTH)
    if not _whole(low) or not _whole(high) or not 1 <= low <= high <= MAX_ID_LENGTH:
        raise _refuse(source, f"the key field {name!r} needs 1 <= minLength <= maxLength <= {MAX_ID_LENGTH}")
    return {**spec, "minLength": low, "maxLength": high, "pattern": ID_PATTERN}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A number a double holds: a bound of 10**400 (legal JSON) or 1e400 (read as inf) is none."""
    try:
        return _number(value) and math.isfinite(float(value))
    except OverflowError:
        return False


def _field(source: str, name: str, spec: Any, required: bool) -> Field:
    where = f"property {name!r}"
    if not isinstance(spec, dict):
        raise _refuse(source, f"{where} is not an object")
    unknown = sorted(set(spec) - PROPERTY_KEYWORDS)
    if unknown:
        raise _refuse(
            source,
            f"{where} uses {unknown[0]!r}, outside the supported subset ({', '.join(sorted(PROPERTY_KEYWORDS))})",
        )
    declared = spec.get("type")
    types = [declared] if isinstance(declared, str) else declared
    if not isinstance(types, list) or not types or not all(isinstance(t, str) for t in types):
        raise _refuse(source, f'{where} needs a "type": one of {", ".join(KINDS)}, optionally with "null"')
    kinds = [t for t in types if t != NULL]
    if len(kinds) != 1 or kinds[0] not in KINDS or len(set(types)) != len(types):
        raise _refuse(
            source,
            f"{where} has type {declared!r}; the subset takes one of {', '.join(KINDS)}, "
            'optionally with "null" (["number", "null"])',
        )
    kind, nullable = kinds[0], NULL in types
    enum = spec.get("enum")
    if enum is not None:
        if kind != STRING:
            raise _refuse(source, f"{where}: enum is supported for strings only")
        if not isinstance(enum, list) or not enum or not all(isinstance(v, str) or v is None for v in enum):
            raise _refuse(source, f"{where}: enum must be a non-empty list of strings (and null, if allowed)")
        if len(set(enum)) != len(enum):
            raise _refuse(source, f"{where}: enum lists a value twice")
        if None in enum and not nullable:
            raise _refuse(source, f'{where}: enum lists null but its type does not allow "null"')
        if len(enum) > MAX_CATEGORIES:
            raise _refuse(source, f"{where}: enum has {len(enum)} values, over the limit of {MAX_CATEGORIES}")
    for keyword in ("minimum", "maximum"):
        if keyword in spec and (kind not in (INTEGER, NUMBER) or not _finite(spec[keyword])):
            raise _refuse(
                source,
                f"{where}: {keyword} needs a number a double holds (within +-1.8e308), "
                "on an integer or number property",
            )
    for keyword in ("minLength", "maxLength"):
        if keyword in spec and (kind != STRING or not _whole(spec[keyword]) or spec[keyword] < 0):
            raise _refuse(source, f"{where}: {keyword} needs a whole number >= 0, on a string property")
    pattern = spec.get("pattern")
    if pattern is not None:
        if kind != STRING or not isinstance(pattern, str):
            raise _refuse(source, f"{where}: pattern needs a string, on a string property")
        try:
            re.compile(ecma_to_python(pattern))
        except (ValueError, re.error) as exc:
            what = f"{where}: pattern {pattern!r} is not a regular expression of JSON Schema"
            raise _refuse(source, f"{what} ({exc})") from None
        if re.search(r"\\[dDwWsSbB]", pattern):
            raise _refuse(
                source,
                f"{where}: pattern {pattern!r} uses \\d, \\w, \\s or \\b, which mean other "
                "things in JSON Schema (ASCII) and in Python (any script); write the classes out: [0-9]",
            )
    if enum is not None and ({"pattern", "minLength", "maxLength"} & spec.keys()):
        # JSON Schema applies every keyword; the validator checks enum alone, which is the same only
        # when each listed value passes the others (a value that does not could never be valid).
        spare = {**spec, "enum": None, "type": STRING}
        lone = _field(source, name, spare, required)
        for value in enum:
            if value is not None and not _string_ok(lone, value):
                raise _refuse(source, f"{where}: enum value {value!r} fails the property's own pattern or lengths")
    if spec.get("format") not in (None, "date-time") or ("format" in spec and name != EVENT_TS):
        raise _refuse(source, f"{where}: format is only for the envelope's {EVENT_TS}")
    if _number(spec.get("minimum")) and _number(spec.get("maximum")) and spec["minimum"] > spec["maximum"]:
        raise _refuse(source, f"{where}: minimum is above maximum")
    return Field(
        name=name,
        kind=kind,
        nullable=nullable,
        required=required,
        enum=tuple(enum) if enum is not None else None,
        minimum=spec.get("minimum"),
        maximum=spec.get("maximum"),
        min_length=spec.get("minLength"),
        max_length=spec.get("maxLength"),
        pattern=pattern,
        description=str(spec.get("description") or ""),
    )


def _string_ok(field: Field, value: str) -> bool:
    if field.min_length is not None and len(value) < field.min_length:
        return False
    if field.max_length is not None and len(value) > field.max_length:
        return False
    pattern = field.python_pattern
    return pattern is None or re.search(pattern, value) is not None


# Python's re syntax that ECMA-262 (JSON Schema's patterns) does not have, or reads otherwise.
_PYTHON_ONLY_GROUPS = ("(?P", "(?#", "(?(", "(?>")
_PORTABLE_GROUPS = ("(?:", "(?=", "(?!", "(?<=", "(?<!")


def ecma_to_python(pattern: str) -> str:
    """A JSON Schema ``pattern`` as Python's ``re`` reads it the same way, or ValueError for syntax only
    Python has. ECMA's ``$`` (no multiline) matches at the very end; Python's also before a final
    newline, so ``"DE-07\\n"`` would pass ``^[A-Z]{2}-[0-9]{2}$``: each ``$`` becomes ``\\Z``."""
    out: list[str] = []
    index, size, in_class = 0, len(pattern), False
    while index < size:
        char = pattern[index]
        if char == "\\":
            escaped = pattern[index : index + 2]
            if not in_class and escaped in ("\\A", "\\Z"):
                raise ValueError(f"{escaped} is Python's; JSON Schema writes ^ and $")
            out.append(escaped)
            index += 2
            continue
        if in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            out.append(char)
            index += 1
            if pattern[index : index + 1] == "^":
                out.append("^")
                index += 1
            if pattern[index : index + 1] == "]":  # Python reads []...] as a class holding ]
                raise ValueError("a class that opens with ] means other things in JSON Schema and Python")
            continue
        elif char == "$":
            out.append("\\Z")
            index += 1
            continue
        elif char == "(" and pattern.startswith("(?", index):
            if pattern.startswith(_PYTHON_ONLY_GROUPS, index) or not pattern.startswith(_PORTABLE_GROUPS, index):
                raise ValueError(
                    f"{pattern[index : index + 3]}... is read otherwise, or not at all, by one of JSON Schema and "
                    "Python: use (...), (?:...), (?=...), (?!...), (?<=...) or (?<!...)"
                )
        elif char in "*+?}" and pattern[index + 1 : index + 2] == "+":
            raise ValueError(f"{char}+ (a possessive quantifier) is Python syntax")
        out.append(char)
        index += 1
    return "".join(out)

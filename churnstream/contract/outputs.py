"""What the pipeline writes to Kafka: the one home of every output field and header name.

Three formats leave the consumer and replay, and every reader (the harness, replay, the
benchmarks, the tests, the JSON Schemas in ``schemas/``) goes through the functions here:

* a **prediction** (``telco-churn-predictions``): key = the event's key (its schema's ``x-key``
  field, customerID for Telco) as UTF-8 bytes, value = a JSON object built by
  :func:`encode_prediction` and read back by :func:`decode_prediction`;
* a **dead letter** (``telco-deadletter``): the original record's key and value bytes untouched,
  and ``dl.*`` headers built by :func:`dead_letter_headers`, read back by :func:`DeadLetterInfo.from_headers`;
* a **replay** of a dead letter (back on the raw topic) with ``replay.*`` headers, and its ledger entry.

The modes, guarantees and dead-letter stages are enums here too, so no module types them as strings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from churnstream.contract.wire import BATCH_OVERHEAD_BYTES, header_key, header_key_bytes, header_size, record_size


class Mode(StrEnum):
    """How the producer sends, and how the consumer stops."""

    STREAMING = "streaming"
    BATCH = "batch"


class Guarantee(StrEnum):
    """The consumer's processing guarantee."""

    EXACTLY_ONCE = "exactly-once"
    AT_LEAST_ONCE = "at-least-once"


class Stage(StrEnum):
    """Where an event failed, in the order an event meets them."""

    DECODE = "decode"  # the bytes are not a JSON object
    VALIDATE = "validate"  # the object breaks the event contract
    SCORE = "score"  # the model could not score it
    # The shadow (challenger) model could not score a batch the main model scored: the event also
    # has its prediction. Not a failure of the event: the accounting and replay leave these out.
    SHADOW = "shadow"


class MalformedOutput(ValueError):
    """An output record that does not follow its format (a reader counts it, never crashes)."""


# --------------------------------------------------------------------------- predictions

PREDICTION_YES = "Yes"
PREDICTION_NO = "No"

# The prediction's JSON keys after its first one, in the order they are written (docs,
# schemas/prediction.schema.json). The first key is the event schema's key field (its "x-key":
# customerID for Telco), holding the event's key: readers take its name from there.
PREDICTION_FIELDS = (
    "churn_probability",
    "prediction",
    "confidence_score",
    "event_ts",
    "processed_ts",
    "event_id",
    "model_version",
    "source_partition",
    "source_offset",
    # Since format 2 (0.4): what a retention team acts on, and the format's version. New fields only ever
    # come at the end, so a reader of an older format reads on (PREDICTION_FORMAT says which one it is).
    "risk_band",
    "reasons",
    "format_version",
)
PREDICTION_FORMAT = 2  # 1: up to source_offset (0.3); 2: risk_band, reasons and format_version added
# A reason's keys: a feature raising this customer's risk, its value in the event, and by how much (log-odds).
REASON_FIELDS = ("feature", "value", "contribution")


def prediction_fields(key_field: str) -> tuple[str, ...]:
    """Every key of a prediction of events keyed by ``key_field``, in the order they are written."""
    return (key_field, *PREDICTION_FIELDS)


@dataclass(frozen=True, slots=True)
class Prediction:
    """A prediction as read back from the predictions topic."""

    key_field: str  # the event schema's x-key (customerID for Telco)
    key: str
    churn_probability: float
    prediction: str
    confidence_score: float
    event_ts: str
    processed_ts: str
    event_id: str
    model_version: str
    source_partition: int
    source_offset: int
    risk_band: str | None = None  # None: a model without bands, or a prediction of format 1
    reasons: tuple[dict[str, Any], ...] | None = None  # None: reasons off, a model without them, or format 1
    format_version: int = 1

    @property
    def source(self) -> tuple[int, int]:
        """The raw record it scored: (partition, offset) on the raw topic."""
        return (self.source_partition, self.source_offset)


def confidence(probability: float, is_churn: bool) -> float:
    """The probability of the class the prediction names: p for "Yes", 1 - p for "No"."""
    return probability if is_churn else 1.0 - probability


def encode_prediction(
    key_field: str,
    key: str,
    probability: float,
    is_churn: bool,
    *,
    event_ts: str,
    processed_ts: str,
    event_id: str,
    model_version: str,
    source_partition: int,
    source_offset: int,
    risk_band: str | None = None,
    reasons: list[dict[str, Any]] | None = None,
) -> bytes:
    """The prediction's value bytes. On the hot path: one dict and one ``orjson.dumps`` per event."""
    return orjson.dumps(
        {
            key_field: key,
            "churn_probability": probability,
            "prediction": PREDICTION_YES if is_churn else PREDICTION_NO,
            "confidence_score": probability if is_churn else 1.0 - probability,
            "event_ts": event_ts,
            "processed_ts": processed_ts,
            "event_id": event_id,
            "model_version": model_version,
            "source_partition": source_partition,
            "source_offset": source_offset,
            "risk_band": risk_band,
            "reasons": reasons,
            "format_version": PREDICTION_FORMAT,
        }
    )


def decode_prediction(value: bytes | None) -> Prediction:
    """A prediction's value bytes -> :class:`Prediction`, or MalformedOutput saying what is wrong.
    The key field is the object's first key (the writer puts it first, whatever the schema calls it)."""
    if value is None:
        raise MalformedOutput("a prediction with a null value")
    try:
        body = orjson.loads(value)
        if not isinstance(body, dict) or not body:
            raise MalformedOutput("a prediction that is not a non-empty JSON object")
        key_field = next(iter(body))
        return Prediction(
            key_field=key_field,
            key=str(body[key_field]),
            churn_probability=float(body["churn_probability"]),
            prediction=str(body["prediction"]),
            confidence_score=float(body["confidence_score"]),
            event_ts=str(body["event_ts"]),
            processed_ts=str(body["processed_ts"]),
            event_id=str(body["event_id"]),
            model_version=str(body["model_version"]),
            source_partition=int(body["source_partition"]),
            source_offset=int(body["source_offset"]),
            risk_band=None if body.get("risk_band") is None else str(body["risk_band"]),
            reasons=None if body.get("reasons") is None else tuple(body["reasons"]),
            format_version=int(body.get("format_version", 1)),
        )
    except orjson.JSONDecodeError as exc:
        raise MalformedOutput(f"a prediction that is not JSON: {exc}") from None
    except MalformedOutput:
        raise
    except KeyError as exc:
        raise MalformedOutput(f"a prediction without {exc}") from None
    except (TypeError, ValueError) as exc:
        raise MalformedOutput(f"a prediction with a field of the wrong type: {exc}") from None


# --------------------------------------------------------------------------- dead letters

HEADER_STAGE = "dl.stage"
HEADER_REASON = "dl.reason"
HEADER_ERROR_CLASS = "dl.error_class"
HEADER_SOURCE_TOPIC = "dl.source_topic"
HEADER_SOURCE_PARTITION = "dl.source_partition"
HEADER_SOURCE_OFFSET = "dl.source_offset"
HEADER_FAILED_TS = "dl.failed_ts"
HEADER_MODEL_VERSION = "dl.model_version"
HEADER_SOURCE_TIMESTAMP = "dl.source_timestamp"  # the raw record's timestamp, ms since the epoch
DEADLETTER_HEADERS = (
    HEADER_STAGE,
    HEADER_REASON,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_FAILED_TS,
    HEADER_MODEL_VERSION,
    HEADER_SOURCE_TIMESTAMP,
)
# Only when they apply:
HEADER_SOURCE_TIMESTAMP_TYPE = "dl.source_timestamp_type"  # CreateTime or LogAppendTime
HEADER_KEY_ABSENT = "dl.key_absent"  # the raw record had neither key nor value (see dead_letter_headers)
# A dead letter for a whole batch the client could not read (a codec it lacks): its offsets run from
# dl.source_offset to this one, every one of them accounted for by this dead letter.
HEADER_SOURCE_LAST_OFFSET = "dl.source_last_offset"
# How many of the raw record's headers (its last ones) did not fit in the dead letter.
HEADER_HEADERS_DROPPED = "dl.headers_dropped"
ORIGINAL_HEADER_PREFIX = "dl.header."  # each header of the raw record, renamed "dl.header.<name>"
_PREFIX_BYTES = ORIGINAL_HEADER_PREFIX.encode()
# What a dead letter may add to the raw record it carries. The consumer sizes the dead-letter topic
# and its own produce requests for the raw topic's limit plus this (kafka.topics.check_deadletter_room,
# consumer.run.producer_options), so a dead letter no larger than its record plus this always fits.
DEADLETTER_HEADROOM_BYTES = 64 * 1024
TIMESTAMP_TYPES = {0: "CreateTime", 1: "LogAppendTime"}
# A batch holds at most this many offsets apart (Kafka's offset delta is an int32); a reader refuses more.
MAX_BATCH_OFFSETS = 2**31 - 1
# A reason is for a person; an exception text can quote a whole value. Keep headers small.
MAX_REASON_CHARS = 500

Headers = list[tuple[str, bytes]]


def cap_reason(reason: str) -> str:
    return reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."


def clip(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and a marker that it was cut, and from how many."""
    return text if len(text) <= limit else f"{text[:limit]}...[cut from {len(text)} chars]"


def dead_letter_room(key: bytes | None, value: bytes | None, headers: Sequence[tuple[str, bytes | None]]) -> int:
    """The most a dead letter of this record may take (key, value and headers, as the record format
    counts them): the record's own size plus DEADLETTER_HEADROOM_BYTES, less a batch's framing."""
    return record_size(key, value, headers) + DEADLETTER_HEADROOM_BYTES - BATCH_OVERHEAD_BYTES


def original_header_name(name: str) -> str:
    """``dl.header.<name>``, built from the name's bytes, so a key that is not UTF-8 keeps them."""
    return header_key(_PREFIX_BYTES + header_key_bytes(name))


def dead_letter_headers(
    *,
    stage: Stage | str,
    reason: str,
    error_class: str,
    source_topic: str,
    source_partition: int,
    source_offset: int,
    failed_ts: str,
    model_version: str,
    source_timestamp: int = -1,
    source_timestamp_type: int | None = None,
    source_headers: Sequence[tuple[str, bytes | None]] | None = (),
    key_absent: bool = False,
    source_last_offset: int | None = None,
    room: int | None = None,
) -> Headers:
    """The ``dl.*`` headers that say where a dead letter came from and why it failed, and the raw
    record's own headers and timestamp, so the dead letter keeps everything the record had.

    ``key_absent``: kafka-python cannot send a record with neither key nor value, so such a dead
    letter goes out with an empty key and this marker; readers (replay) read its key as null.
    ``source_last_offset``: the dead letter stands for a whole batch, these offsets included.
    ``room``: the bytes all these headers may take (see :func:`dead_letter_room`). Each copied header
    grows by its prefix, so a record of many headers would outgrow any limit: the raw record's
    headers are kept in order while they fit, and ``dl.headers_dropped`` says how many did not.
    """
    headers = [
        (HEADER_STAGE, str(stage).encode()),
        (HEADER_REASON, cap_reason(reason).encode("utf-8", "replace")),
        (HEADER_ERROR_CLASS, error_class.encode()),
        (HEADER_SOURCE_TOPIC, source_topic.encode()),
        (HEADER_SOURCE_PARTITION, str(source_partition).encode()),
        (HEADER_SOURCE_OFFSET, str(source_offset).encode()),
        (HEADER_FAILED_TS, failed_ts.encode()),
        (HEADER_MODEL_VERSION, model_version.encode()),
        (HEADER_SOURCE_TIMESTAMP, str(source_timestamp).encode()),
    ]
    if source_timestamp_type in TIMESTAMP_TYPES:
        headers.append((HEADER_SOURCE_TIMESTAMP_TYPE, TIMESTAMP_TYPES[source_timestamp_type].encode()))
    if key_absent:
        headers.append((HEADER_KEY_ABSENT, b"true"))
    if source_last_offset is not None:
        headers.append((HEADER_SOURCE_LAST_OFFSET, str(source_last_offset).encode()))
    originals = source_headers or ()
    # Room for the dropped count's header (its name and up to 10 digits) stays free while copying.
    free = None if room is None else room - sum(header_size(name, v) for name, v in headers) - 32
    kept = 0
    for name, value in originals:
        copied = (original_header_name(name), value or b"")
        if free is not None:
            free -= header_size(*copied)
            if free < 0:
                break
        headers.append(copied)
        kept += 1
    if kept < len(originals):
        headers.append((HEADER_HEADERS_DROPPED, str(len(originals) - kept).encode()))
    return headers


def header_text(headers: Sequence[tuple[str, bytes | None]] | None, name: str) -> str | None:
    """The first header called ``name``, as text (None when absent)."""
    for key, value in headers or ():
        if key == name:
            return None if value is None else value.decode("utf-8", "replace")
    return None


@dataclass(frozen=True, slots=True)
class DeadLetterInfo:
    """What a dead letter's headers say (the record's key and value are the original's)."""

    stage: str
    reason: str
    error_class: str
    source_topic: str
    source_partition: int
    source_offset: int
    failed_ts: str
    model_version: str
    key_absent: bool = False
    source_timestamp: int = -1
    original_headers: tuple[tuple[str, bytes], ...] = ()
    source_last_offset: int | None = None  # a dead letter for a whole batch: its last offset
    headers_dropped: int = 0  # the raw record's headers that did not fit

    @property
    def source(self) -> tuple[int, int]:
        return (self.source_partition, self.source_offset)

    @property
    def sources(self) -> list[tuple[int, int]]:
        """Every raw record this dead letter stands for: one, or each offset of a batch."""
        last = self.source_offset if self.source_last_offset is None else self.source_last_offset
        return [(self.source_partition, offset) for offset in range(self.source_offset, last + 1)]

    @classmethod
    def from_headers(cls, headers: Sequence[tuple[str, bytes | None]] | None) -> DeadLetterInfo:
        """Read the ``dl.*`` headers; MalformedOutput when the source coordinates are missing."""
        partition = header_text(headers, HEADER_SOURCE_PARTITION)
        offset = header_text(headers, HEADER_SOURCE_OFFSET)
        if partition is None or offset is None:
            raise MalformedOutput("a dead letter without dl.source_partition or dl.source_offset")
        last = header_text(headers, HEADER_SOURCE_LAST_OFFSET)
        try:
            source_partition, source_offset = int(partition), int(offset)
            source_last_offset = None if last is None else int(last)
            dropped = int(header_text(headers, HEADER_HEADERS_DROPPED) or 0)
        except ValueError:
            raise MalformedOutput(f"a dead letter whose source is {partition!r}:{offset!r}..{last!r}") from None
        if source_last_offset is not None and not 0 <= source_last_offset - source_offset <= MAX_BATCH_OFFSETS:
            raise MalformedOutput(f"a dead letter for offsets {source_offset} to {source_last_offset}")
        return cls(
            stage=header_text(headers, HEADER_STAGE) or "",
            reason=header_text(headers, HEADER_REASON) or "",
            error_class=header_text(headers, HEADER_ERROR_CLASS) or "",
            source_topic=header_text(headers, HEADER_SOURCE_TOPIC) or "",
            source_partition=source_partition,
            source_offset=source_offset,
            failed_ts=header_text(headers, HEADER_FAILED_TS) or "",
            model_version=header_text(headers, HEADER_MODEL_VERSION) or "",
            key_absent=header_text(headers, HEADER_KEY_ABSENT) == "true",
            source_timestamp=int(header_text(headers, HEADER_SOURCE_TIMESTAMP) or -1),
            original_headers=tuple(
                (header_key(header_key_bytes(name)[len(_PREFIX_BYTES) :]), value or b"")
                for name, value in headers or ()
                if name.startswith(ORIGINAL_HEADER_PREFIX)
            ),
            source_last_offset=source_last_offset,
            headers_dropped=dropped,
        )


def keeps_original_bytes(
    raw_key: bytes | None, raw_value: bytes | None, info: DeadLetterInfo, key: bytes | None, value: bytes | None
) -> bool:
    """The dead letter's key and value are the raw record's, byte for byte (None stays None).

    kafka-python cannot send a record with neither key nor value, so such a dead letter goes out
    with an empty key and ``dl.key_absent=true``: that counts as equal.
    """
    if info.key_absent:
        return raw_key is None and raw_value is None and key == b"" and value is None
    return key == raw_key and value == raw_value


# --------------------------------------------------------------------------- replay

REPLAY_HEADER_OF = "replay.of"  # the dead letter it re-sends, as its ledger key
REPLAY_HEADER_REASON = "replay.reason"  # why that dead letter had failed
LEDGER_SUFFIX = ".replayed"  # the ledger topic is "<dead-letter topic>.replayed"


def replay_headers(ledger_key: bytes, reason: str) -> Headers:
    return [(REPLAY_HEADER_OF, ledger_key), (REPLAY_HEADER_REASON, reason.encode("utf-8", "replace"))]


def encode_ledger_entry(replayed_ts: str, stage: str | None) -> bytes:
    return orjson.dumps({"replayed_ts": replayed_ts, "stage": stage})


def decode_json_object(value: bytes) -> dict[str, Any]:
    """A JSON object from bytes, or MalformedOutput."""
    try:
        body = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        raise MalformedOutput(f"not JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MalformedOutput("not a JSON object")
    return body

"""Score one poll batch: raw records in, prediction payloads and dead letters out. No Kafka here.

The consumer hands over whatever one ``poll()`` returned. Each record is decoded and validated on
its own, the valid ones are scored with ONE ``predict_proba`` call (a call costs milliseconds
whatever the number of rows, so per-record scoring is ~100x slower), and every record ends in
exactly one outcome: a prediction or a dead letter that carries its original bytes and the reason.
If the model call raises, the batch is bisected to find the rows that make it fail, so one
poisonous event never takes its neighbours to the dead-letter topic with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import orjson

from churnstream.errors import InvalidEvent
from churnstream.events import (
    DEFAULT_MAX_VALUE_BYTES,
    EVENT_ID,
    EVENT_TS,
    MAX_ID_LENGTH,
    STAGE_DECODE,
    STAGE_SCORE,
    STAGE_VALIDATE,
    ValidEvent,
    decode_value,
    parse_ts,
    utc_now_iso,
    validate_event,
)
from churnstream.schema import FEATURES, ID_COLUMN, Categorical, Numeric

logger = logging.getLogger(__name__)

# Dead-letter header names: a contract with whoever reads the dead-letter topic (KAFKA_README.md, "Consumer").
HEADER_STAGE = "dl.stage"
HEADER_REASON = "dl.reason"
HEADER_ERROR_CLASS = "dl.error_class"
HEADER_SOURCE_TOPIC = "dl.source_topic"
HEADER_SOURCE_PARTITION = "dl.source_partition"
HEADER_SOURCE_OFFSET = "dl.source_offset"
HEADER_FAILED_TS = "dl.failed_ts"
HEADER_MODEL_VERSION = "dl.model_version"
HEADER_KEY_ABSENT = "dl.key_absent"  # only on a record that had neither key nor value
DEADLETTER_HEADERS = (
    HEADER_STAGE,
    HEADER_REASON,
    HEADER_ERROR_CLASS,
    HEADER_SOURCE_TOPIC,
    HEADER_SOURCE_PARTITION,
    HEADER_SOURCE_OFFSET,
    HEADER_FAILED_TS,
    HEADER_MODEL_VERSION,
)
# A reason is for a person; an exception text can quote a whole value. Keep headers small.
MAX_REASON_CHARS = 500

PREDICTION_YES = "Yes"
PREDICTION_NO = "No"


class SourceRecord(Protocol):
    """What scoring needs from a consumed record. kafka-python's ConsumerRecord fits as it is."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


class RawRecord(NamedTuple):
    """A consumed record without Kafka: for tests, benchmarks and replay tools."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None


class Scorer(Protocol):
    """What scoring needs from the model (churnstream.model.ChurnModel, or a stub in tests)."""

    @property
    def version(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    def predict_proba(self, rows: Sequence[dict[str, Any]]) -> Any: ...


class Prediction(NamedTuple):
    """One output for the predictions topic: key = customerID bytes, value = JSON bytes."""

    key: bytes
    value: bytes
    partition: int  # source partition and offset, so the sink can tell what it covers
    offset: int


class DeadLetter(NamedTuple):
    """One output for the dead-letter topic: the original key and value, and headers saying why."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    stage: str
    reason: str
    partition: int
    offset: int


@dataclass(slots=True)
class StageTimes:
    """Seconds spent per stage, accumulated over batches (the benchmark reports them)."""

    decode: float = 0.0
    validate: float = 0.0
    predict: float = 0.0  # includes building the DataFrame: ChurnModel.predict_proba does both
    encode: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"decode": self.decode, "validate": self.validate, "predict": self.predict, "encode": self.encode}


@dataclass(slots=True)
class BatchResult:
    predictions: list[Prediction] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    probability_sum: float = 0.0
    churned: int = 0  # predictions that say "Yes"

    @property
    def scored(self) -> int:
        return len(self.predictions)

    @property
    def consumed(self) -> int:
        return len(self.predictions) + len(self.dead_letters)


def _class_name(exc: BaseException) -> str:
    kind = type(exc)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def error_class(exc: BaseException) -> str:
    """The class that explains a failure best: for an InvalidEvent, the error it was raised from.

    ``decode_value`` raises ``InvalidEvent(...) from None``: the orjson error is still on
    ``__context__`` (suppressed for display only), and "orjson.JSONDecodeError" tells an operator
    more than "InvalidEvent" does.
    """
    if isinstance(exc, InvalidEvent):
        cause = exc.__cause__ or exc.__context__
        return _class_name(cause) if cause is not None else _class_name(exc)
    return _class_name(exc)


def make_dead_letter(
    record: SourceRecord, stage: str, reason: str, error_class_name: str, model_version: str
) -> DeadLetter:
    """A dead letter for ``record``: original key and value bytes untouched, the why in headers."""
    reason = reason if len(reason) <= MAX_REASON_CHARS else reason[: MAX_REASON_CHARS - 3] + "..."
    headers = [
        (HEADER_STAGE, stage.encode()),
        (HEADER_REASON, reason.encode("utf-8", "replace")),
        (HEADER_ERROR_CLASS, error_class_name.encode()),
        (HEADER_SOURCE_TOPIC, record.topic.encode()),
        (HEADER_SOURCE_PARTITION, str(record.partition).encode()),
        (HEADER_SOURCE_OFFSET, str(record.offset).encode()),
        (HEADER_FAILED_TS, utc_now_iso().encode()),
        (HEADER_MODEL_VERSION, model_version.encode()),
    ]
    key = record.key
    if key is None and record.value is None:
        # kafka-python refuses to send a record with neither key nor value (other clients can
        # write one): send an empty key and say in a header that the original had none.
        key = b""
        headers.append((HEADER_KEY_ABSENT, b"true"))
    return DeadLetter(key, record.value, headers, stage, reason, record.partition, record.offset)


def _unexpected(stage: str, exc: Exception) -> str:
    doing = "decoding" if stage == STAGE_DECODE else "validating"
    return f"unexpected {type(exc).__name__} while {doing}: {exc}"


def _check_probabilities(raw: Any, expected: int) -> list[float]:
    """The model's answer as Python floats, or ValueError if it is not one number per row."""
    values = raw.tolist() if hasattr(raw, "tolist") else list(raw)
    if len(values) != expected:
        raise ValueError(f"the model returned {len(values)} probabilities for {expected} rows")
    return values


def _not_a_probability(value: Any) -> str | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"the model returned {value!r}, not a number"
    if not math.isfinite(value) or not 0.0 <= value <= 1.0:
        return f"the model returned {value!r}, not a probability in [0, 1]"
    return None


_FAST_CATEGORICAL: tuple[tuple[str, frozenset[str]], ...] = tuple(
    (f.name, frozenset(f.allowed)) for f in FEATURES if isinstance(f, Categorical)
)
_FAST_NUMERIC: tuple[tuple[str, bool, float, float, bool], ...] = tuple(
    (f.name, f.kind is int, f.low, f.high, f.nullable) for f in FEATURES if isinstance(f, Numeric)
)


def _plain_identifier(value: Any) -> bool:
    return value.__class__ is str and 0 < len(value) <= MAX_ID_LENGTH and not value.isspace()


def fast_validate(obj: dict[str, Any]) -> ValidEvent | None:
    """``validate_event`` for the common, already well-typed event, in about a third of the time.

    Accepts only what ``validate_event`` certainly accepts, and builds an equal ValidEvent;
    anything else (numeric strings, blanks, missing fields, wrong types, out of range) returns
    None and the full validator decides and explains. ``tests/test_scoring.py`` checks the
    equivalence on the real data and on thousands of mutated events. Why: after ``send()``,
    ``validate_event``'s general path was our largest cost (13-20 us per event on this machine).
    """
    customer_id = obj.get(ID_COLUMN)
    event_id = obj.get(EVENT_ID)
    event_ts = obj.get(EVENT_TS)
    if not (_plain_identifier(customer_id) and _plain_identifier(event_id) and _plain_identifier(event_ts)):
        return None
    features: dict[str, Any] = {}
    try:
        for name, allowed in _FAST_CATEGORICAL:
            value = obj[name]
            if value.__class__ is not str or value not in allowed:
                return None
            features[name] = value
        for name, is_int, low, high, nullable in _FAST_NUMERIC:
            value = obj[name]
            kind = value.__class__
            if kind is int:  # bool is not int here: its class is bool
                if not low <= value <= high:
                    return None
                features[name] = value if is_int else float(value)
            elif kind is float:
                if not low <= value <= high:  # also False for NaN
                    return None
                if is_int:
                    if not value.is_integer():
                        return None
                    value = int(value)
                features[name] = value
            elif value is None and nullable:
                features[name] = None
            else:
                return None
        parse_ts(event_ts)
    except (KeyError, ValueError):
        return None
    return ValidEvent(customer_id, event_id, event_ts, features)


def predict_isolating_failures(
    model: Scorer, rows: Sequence[dict[str, Any]]
) -> tuple[list[float | None], dict[int, Exception]]:
    """Probabilities for ``rows`` in one call; if the call raises, bisect to the rows that fail.

    Returns one entry per row (None where the row could not be scored) and the exception per
    failed row index. Bisecting costs about 2*log2(n) calls per poisonous row, and is only ever
    taken when the single call failed, so the hot path stays at one call per batch.
    """
    if not rows:
        return [], {}
    try:
        return list(_check_probabilities(model.predict_proba(rows), len(rows))), {}
    except Exception as exc:  # routed: the failing rows become score-stage dead letters
        if len(rows) == 1:
            return [None], {0: exc}
        middle = len(rows) // 2
        left, left_failed = predict_isolating_failures(model, rows[:middle])
        right, right_failed = predict_isolating_failures(model, rows[middle:])
        failed = {**left_failed, **{index + middle: error for index, error in right_failed.items()}}
        if not failed:
            logger.warning(
                "the model failed on a batch of %d rows (%s: %s) but scored both halves; no row is to blame",
                len(rows),
                type(exc).__name__,
                exc,
            )
        return left + right, failed


def score_batch(
    records: Sequence[SourceRecord],
    model: Scorer,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    times: StageTimes | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> BatchResult:
    """Turn one poll batch into predictions and dead letters: exactly one outcome per record."""
    result = BatchResult()
    version = model.version
    dead_letters = result.dead_letters

    started = clock()
    decoded: list[tuple[SourceRecord, dict[str, Any]]] = []
    for record in records:
        try:
            decoded.append((record, decode_value(record.value, max_value_bytes)))
        except InvalidEvent as exc:
            dead_letters.append(make_dead_letter(record, exc.stage, exc.reason, error_class(exc), version))
        except Exception as exc:  # routed: a decoder bug must cost one event, not the batch
            dead_letters.append(
                make_dead_letter(record, STAGE_DECODE, _unexpected(STAGE_DECODE, exc), error_class(exc), version)
            )
    decoded_at = clock()

    valid_records: list[SourceRecord] = []
    events: list[ValidEvent] = []
    for record, obj in decoded:
        try:
            event = fast_validate(obj) or validate_event(obj)
        except InvalidEvent as exc:
            dead_letters.append(make_dead_letter(record, exc.stage, exc.reason, error_class(exc), version))
            continue
        except Exception as exc:  # routed: a validator bug must cost one event, not the batch
            dead_letters.append(
                make_dead_letter(record, STAGE_VALIDATE, _unexpected(STAGE_VALIDATE, exc), error_class(exc), version)
            )
            continue
        valid_records.append(record)
        events.append(event)
    validated_at = clock()

    probabilities, failures = predict_isolating_failures(model, [event.features for event in events])
    if failures:
        logger.warning(
            "the model failed on %d of %d events in this batch; they go to the dead-letter topic",
            len(failures),
            len(events),
        )
    predicted_at = clock()

    threshold = model.threshold
    processed_ts = utc_now_iso()
    predictions = result.predictions
    probability_sum = 0.0
    churned = 0
    dumps = orjson.dumps
    for index, (record, event, probability) in enumerate(zip(valid_records, events, probabilities, strict=True)):
        if probability is None:
            exc = failures[index]
            reason = f"the model could not score this event: {type(exc).__name__}: {exc}"
            dead_letters.append(make_dead_letter(record, STAGE_SCORE, reason, error_class(exc), version))
            continue
        problem = _not_a_probability(probability)
        if problem is not None:
            dead_letters.append(make_dead_letter(record, STAGE_SCORE, problem, "ValueError", version))
            continue
        is_churn = probability >= threshold
        payload = {
            "customerID": event.customer_id,
            "churn_probability": probability,
            "prediction": PREDICTION_YES if is_churn else PREDICTION_NO,
            "confidence_score": probability if is_churn else 1.0 - probability,
            "event_ts": event.event_ts,
            "processed_ts": processed_ts,
            "event_id": event.event_id,
            "model_version": version,
            "source_partition": record.partition,
            "source_offset": record.offset,
        }
        predictions.append(Prediction(event.customer_id.encode(), dumps(payload), record.partition, record.offset))
        probability_sum += probability
        churned += is_churn
    result.probability_sum = probability_sum
    result.churned = churned

    if times is not None:
        encoded_at = clock()
        times.decode += decoded_at - started
        times.validate += validated_at - decoded_at
        times.predict += predicted_at - validated_at
        times.encode += encoded_at - predicted_at
    return result

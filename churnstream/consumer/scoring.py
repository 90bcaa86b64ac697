"""Score one poll batch: raw records in, prediction payloads and dead letters out. No Kafka here.

The consumer hands over whatever one ``poll()`` returned. Each record is decoded and validated on
its own, in one pass, against the serving model's own contract (the event schema its card
carries: contract.events), the valid ones are scored with ONE ``predict_proba`` call (a call has a
fixed cost whatever the number of rows, so per-record scoring is ~100x slower), and every record
ends in exactly one outcome: a prediction or a dead letter that carries its original bytes and the
reason.
If the model call raises, the batch is bisected to find the rows that make it fail, so one
poisonous event never takes its neighbours to the dead-letter topic with it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from typing import Any, NamedTuple, Protocol

import numpy as np

from churnstream.contract.events import DEFAULT_MAX_VALUE_BYTES, Contract, ValidEvent, utc_now_iso
from churnstream.contract.outputs import Stage, cap_reason, dead_letter_headers, dead_letter_room, encode_prediction
from churnstream.contract.wire import UndecodableBatch, bytes_size, odd_header_keys
from churnstream.errors import InvalidEvent, ModelBroken

logger = logging.getLogger(__name__)


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
    @property
    def headers(self) -> Sequence[tuple[str, bytes | None]] | None: ...
    @property
    def timestamp(self) -> int: ...
    @property
    def timestamp_type(self) -> int | None: ...


class RawRecord(NamedTuple):
    """A consumed record without Kafka: for tests, benchmarks and the harness's accounting."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp: int = 0  # ms since the epoch, as Kafka records it
    headers: tuple[tuple[str, bytes | None], ...] = ()
    timestamp_type: int | None = 0  # 0: the producer's CreateTime, 1: the broker's LogAppendTime

    @property
    def source(self) -> tuple[int, int]:
        """(partition, offset): what a prediction or dead letter names as its source."""
        return (self.partition, self.offset)


class Scorer(Protocol):
    """What scoring needs from the model (churnstream.ml.model.ChurnModel, or a stub in tests)."""

    @property
    def version(self) -> str: ...
    @property
    def threshold(self) -> float: ...
    @property
    def contract(self) -> Contract: ...  # the event schema the model was made for, compiled
    def predict_proba(self, rows: Sequence[tuple[Any, ...]]) -> Any: ...
    def canary_problem(self) -> str | None: ...


class PredictionOut(NamedTuple):
    """One output for the predictions topic: key = the event's key bytes, value = JSON bytes
    (contract.outputs.encode_prediction)."""

    key: bytes
    value: bytes
    partition: int  # source partition and offset, so the sink can tell what it covers
    offset: int


class DeadLetterOut(NamedTuple):
    """One output for the dead-letter topic: the original key and value, and headers saying why
    (contract.outputs.dead_letter_headers)."""

    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    stage: str
    reason: str
    partition: int
    offset: int
    event_id: str | None = None  # when the event got far enough to have one (for the log line)


@dataclass(slots=True)
class StageTimes:
    """Seconds spent per stage, accumulated over batches (the benchmark reports them)."""

    decode: float = 0.0  # bytes -> validated event: parse and validation are one pass (contract.events)
    predict: float = 0.0  # the model's input and its call: ChurnModel.predict_proba does both
    encode: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {"decode": self.decode, "predict": self.predict, "encode": self.encode}

    def add(self, other: StageTimes) -> None:
        self.decode += other.decode
        self.predict += other.predict
        self.encode += other.encode


@dataclass(slots=True)
class BatchResult:
    predictions: list[PredictionOut] = field(default_factory=list)
    dead_letters: list[DeadLetterOut] = field(default_factory=list)
    probability_sum: float = 0.0
    churned: int = 0  # predictions that say "Yes"
    event_ms: list[float] = field(default_factory=list)  # each prediction's event_ts, for the latency metric
    model_version: str = ""  # the one version that scored every prediction of this batch
    # Each prediction's features (tuples in the model's schema order) and probability: the drift monitor reads them.
    scored_features: list[tuple[Any, ...]] = field(default_factory=list)
    probabilities: list[float] = field(default_factory=list)
    # With a shadow model: its outputs for the same events, or (if it failed) dead letters with
    # stage "shadow". Extra records, outside the one-outcome-per-event accounting.
    shadow_predictions: list[PredictionOut] = field(default_factory=list)
    shadow_dead_letters: list[DeadLetterOut] = field(default_factory=list)

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

    ``contract.events.parse_object`` raises ``InvalidEvent(...) from None``: the orjson error is still on
    ``__context__`` (suppressed for display only), and "orjson.JSONDecodeError" tells an operator
    more than "InvalidEvent" does.
    """
    if isinstance(exc, InvalidEvent):
        cause = exc.__cause__ or exc.__context__
        return _class_name(cause) if cause is not None else _class_name(exc)
    return _class_name(exc)


def make_dead_letter(
    record: SourceRecord, stage: str, reason: str, error_class_name: str, model_version: str, *, event_id: Any = None
) -> DeadLetterOut:
    """A dead letter for ``record``: original key and value bytes untouched, the why in headers.

    It never takes more than its record plus DEADLETTER_HEADROOM_BYTES (``dead_letter_room``), which
    the dead-letter topic and the producer are sized for: of the record's own headers, as many are
    copied as fit. For a batch the client could not read, it names the batch's offsets.
    """
    key, value, source_headers = record.key, record.value, record.headers or ()
    # kafka-python refuses to send a record with neither key nor value (other clients can write
    # one): send an empty key and say in a header that the original had none.
    key_absent = key is None and value is None
    key_out = b"" if key_absent else key
    batch = value if isinstance(value, UndecodableBatch) else None
    offset = record.offset if batch is None else batch.first_offset
    room = dead_letter_room(key, value, source_headers) - bytes_size(key_out) - bytes_size(value) - 5
    headers = dead_letter_headers(
        stage=stage,
        reason=reason,
        error_class=error_class_name,
        source_topic=record.topic,
        source_partition=record.partition,
        source_offset=offset,
        source_timestamp=record.timestamp,
        source_timestamp_type=record.timestamp_type,
        source_headers=source_headers,
        failed_ts=utc_now_iso(),
        model_version=model_version,
        key_absent=key_absent,
        source_last_offset=None if batch is None else batch.last_offset,
        room=room,
    )
    return DeadLetterOut(
        key_out,
        value if batch is None else bytes(batch),  # plain bytes: kafka-python's producer takes no subclass
        headers,
        str(stage),
        cap_reason(reason),
        record.partition,
        offset,
        event_id if isinstance(event_id, str) else None,  # an invalid event's id may be anything
    )


def unreadable(record: SourceRecord, model_version: str) -> DeadLetterOut | None:
    """A dead letter for a record the Kafka client could not read as the format promises (see
    kafka.records): a batch it could not decompress, or a header key that is not UTF-8."""
    value = record.value
    if isinstance(value, UndecodableBatch):
        error = value.error
        reason = (
            f"a {value.codec}-compressed batch of offsets {value.first_offset} to {value.last_offset} could not be "
            f"decompressed ({type(error).__name__}: {error}); the value is the compressed records"
        )
        return make_dead_letter(record, Stage.DECODE, reason, _class_name(error), model_version)
    odd = odd_header_keys(record.headers)
    if odd:
        shown = ", ".join(name.raw[:32].hex(" ") for name in odd[:3])
        reason = f"{len(odd)} header key(s) are not UTF-8 (bytes {shown}); they are kept as bytes"
        return make_dead_letter(record, Stage.DECODE, reason, "UnicodeDecodeError", model_version)
    return None


def _unexpected(exc: Exception) -> str:
    return f"unexpected {type(exc).__name__} while decoding: {exc}"


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


def predict_isolating_failures(
    model: Scorer, rows: Sequence[dict[str, Any]]
) -> tuple[list[float | None], dict[int, Exception]]:
    """Probabilities for ``rows`` in one call; if the call raises, find the rows that make it fail.

    Returns one entry per row (None where the row could not be scored) and the exception per
    failed row index. When the batch's call fails, the model's canary rows (known-good rows from
    training) decide who is at fault: if they fail too, the model is broken and ModelBroken stops
    the consumer before anything of the batch is sent, instead of dead-lettering the whole stream;
    if they score, the batch is bisected to the hostile rows (about 2*log2(n) calls per bad row).
    The hot path stays at one call per batch.
    """
    if not rows:
        return [], {}
    try:
        return list(_check_probabilities(model.predict_proba(rows), len(rows))), {}
    except Exception as exc:  # routed: a broken model stops the consumer, hostile rows become dead letters
        problem = model.canary_problem()
        if problem is not None:
            raise ModelBroken(
                f"model {model.version} failed on a whole batch of {len(rows)} events ({type(exc).__name__}: "
                f"{exc}) and on its canary rows ({problem}): the model is broken; nothing of this batch was "
                "committed, and its events stay on the raw topic for a fixed model"
            ) from exc
        return _bisect(model, rows, exc)


def _bisect(
    model: Scorer, rows: Sequence[dict[str, Any]], exc: Exception
) -> tuple[list[float | None], dict[int, Exception]]:
    if len(rows) == 1:
        return [None], {0: exc}
    middle = len(rows) // 2
    left, left_failed = _score_or_bisect(model, rows[:middle])
    right, right_failed = _score_or_bisect(model, rows[middle:])
    failed = {**left_failed, **{index + middle: error for index, error in right_failed.items()}}
    if not failed:
        logger.warning(
            "the model failed on a batch of %d rows (%s: %s) but scored both halves; no row is to blame",
            len(rows),
            type(exc).__name__,
            exc,
        )
    return left + right, failed


def _score_or_bisect(model: Scorer, rows: Sequence[dict[str, Any]]) -> tuple[list[float | None], dict[int, Exception]]:
    try:
        return list(_check_probabilities(model.predict_proba(rows), len(rows))), {}
    except Exception as exc:  # routed: the failing rows become score-stage dead letters
        return _bisect(model, rows, exc)


def _prediction_outs(
    records: Sequence[SourceRecord],
    events: Sequence[ValidEvent],
    probabilities: Sequence[float],
    *,
    threshold: float,
    key_field: str,
    version: str,
    processed_ts: str,
    bands: Sequence[str | None] | None,
    reasons: Sequence[list[dict[str, Any]]] | None,
) -> list[PredictionOut]:
    """The scored events' output records, keyed by their key (the schema's x-key field). One loop, the
    hot path's last: one dict and one orjson.dumps per event."""
    count = len(events)
    return [
        PredictionOut(
            event.key.encode(),
            encode_prediction(
                key_field,
                event.key,
                probability,
                probability >= threshold,
                event_ts=event.event_ts,
                processed_ts=processed_ts,
                event_id=event.event_id,
                model_version=version,
                source_partition=record.partition,
                source_offset=record.offset,
                risk_band=band,
                reasons=why,
            ),
            record.partition,
            record.offset,
        )
        for record, event, probability, band, why in zip(
            records, events, probabilities, bands or repeat(None, count), reasons or repeat(None, count), strict=True
        )
    ]


def _all_probabilities(values: Sequence[float | None]) -> bool:
    """True when every value is a number in [0, 1] (the model's usual answer): one numpy check, no loop."""
    try:
        array = np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return False
    return bool(array.size == 0 or (np.isfinite(array).all() and array.min() >= 0.0 and array.max() <= 1.0))


def _sort_out_failures(
    records: Sequence[SourceRecord],
    events: Sequence[ValidEvent],
    probabilities: Sequence[float | None],
    failures: dict[int, Exception],
    dead_letters: list[DeadLetterOut],
    *,
    version: str,
) -> tuple[list[SourceRecord], list[ValidEvent], list[float]]:
    """The rare path: the rows the model failed on, or answered with no probability, become score-stage
    dead letters; the others are returned to be published."""
    kept: tuple[list[SourceRecord], list[ValidEvent], list[float]] = ([], [], [])
    for index, (record, event, probability) in enumerate(zip(records, events, probabilities, strict=True)):
        if probability is None:
            exc = failures[index]
            reason = f"the model could not score this event: {type(exc).__name__}: {exc}"
            dead_letters.append(
                make_dead_letter(record, Stage.SCORE, reason, error_class(exc), version, event_id=event.event_id)
            )
            continue
        problem = _not_a_probability(probability)
        if problem is not None:
            dead_letters.append(
                make_dead_letter(record, Stage.SCORE, problem, "ValueError", version, event_id=event.event_id)
            )
            continue
        kept[0].append(record)
        kept[1].append(event)
        kept[2].append(probability)
    return kept


def _bands(model: Scorer, probabilities: np.ndarray) -> list[str] | None:
    """Each probability's risk band, by the model's card (None for a model without bands)."""
    band_names = getattr(model, "band_names", None)
    return band_names(probabilities) if band_names is not None and probabilities.size else None


def _reasons(model: Scorer, rows: Sequence[tuple[Any, ...]], probabilities: np.ndarray) -> list[list[dict]] | None:
    """The model's reasons for the scored rows, or None for all of them when it has none or they fail: reasons
    are an aid, never a reason to lose a prediction."""
    explain = getattr(model, "explain", None)
    if explain is None or not rows:
        return None
    try:
        return explain(rows, probabilities)
    except Exception as exc:  # routed: a failing explainer costs the batch its reasons, not its predictions
        logger.warning("the reasons of model %s failed on this batch (%s: %s); its predictions carry reasons: null",
                       model.version, type(exc).__name__, exc)  # fmt: skip
        return None


def score_shadow(
    result: BatchResult,
    shadow: Scorer,
    scored: Sequence[tuple[SourceRecord, ValidEvent]],
    processed_ts: str,
    contract: Contract,
) -> None:
    """The shadow model's outputs for the events the main model scored (under ``contract``), in one
    call, with their risk bands (reasons: null, to keep a challenger's cost down). If the call fails,
    does not return one probability per event, or the shadow was made for another event schema than
    the main model's, every one of them gets a shadow-stage dead letter instead (original bytes, the
    reason): the main outputs stand, as scored."""
    version = shadow.version
    try:
        if shadow.contract.schema.sha256 != contract.schema.sha256:
            raise ValueError(
                f"the shadow model {version} was made for another event schema ({shadow.contract.schema.sha256[:12]}) "
                f"than the serving model ({contract.schema.sha256[:12]}): it cannot score these events"
            )
        raw = _check_probabilities(shadow.predict_proba(result.scored_features), len(scored))
        problems = [_not_a_probability(value) for value in raw]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise ValueError(problem)
    except Exception as exc:  # routed: a challenger's failure must never touch the published outputs
        reason = f"the shadow model {version} failed on this batch: {type(exc).__name__}: {exc}"
        logger.warning("%s; %d shadow dead letters, the main outputs are unaffected", reason, len(scored))
        result.shadow_dead_letters.extend(
            make_dead_letter(record, Stage.SHADOW, reason, error_class(exc), version, event_id=event.event_id)
            for record, event in scored
        )
        return
    records, events = [record for record, _ in scored], [event for _, event in scored]
    result.shadow_predictions.extend(
        _prediction_outs(
            records,
            events,
            raw,
            threshold=shadow.threshold,
            key_field=contract.key_field,
            version=version,
            processed_ts=processed_ts,
            bands=_bands(shadow, np.asarray(raw, dtype=float)),
            reasons=None,
        )
    )


def _unreadable_dead_letter(record: SourceRecord, version: str, dead_letters: list[DeadLetterOut]) -> bool:
    """Appends the dead letter of a record the client could not read, else False. Called for records
    with headers or a batch's stand-in only (score_batch checks that inline: most records have neither)."""
    dead = unreadable(record, version)
    if dead is None:
        return False
    dead_letters.append(dead)
    return True


def score_batch(
    records: Sequence[SourceRecord],
    model: Scorer,
    *,
    max_value_bytes: int = DEFAULT_MAX_VALUE_BYTES,
    times: StageTimes | None = None,
    clock: Callable[[], float] = time.perf_counter,
    shadow: Scorer | None = None,
    with_reasons: bool = True,
) -> BatchResult:
    """Turn one poll batch into predictions and dead letters: exactly one outcome per record.

    Each prediction carries its risk band and, ``with_reasons``, the features that raise its risk most
    (the model's own methods, per batch: churnstream.ml.evaluation, churnstream.ml.explain). With
    ``shadow``, the events the model scored are scored again by the shadow model, in one more call,
    into ``shadow_predictions``; a shadow failure costs the shadow outputs only.
    """
    version = model.version
    contract = model.contract
    decode = contract.decode
    result = BatchResult(model_version=version)
    dead_letters = result.dead_letters

    started = clock()
    valid_records: list[SourceRecord] = []
    events: list[ValidEvent] = []
    for record in records:
        if (record.headers or record.value.__class__ is UndecodableBatch) and _unreadable_dead_letter(
            record, version, dead_letters
        ):
            continue
        try:
            event = decode(record.value, max_value_bytes)
        except InvalidEvent as exc:
            dead_letters.append(
                make_dead_letter(record, exc.stage, exc.reason, error_class(exc), version, event_id=exc.event_id)
            )
            continue
        except Exception as exc:  # routed: a decoder bug must cost one event, not the batch
            dead_letters.append(make_dead_letter(record, Stage.DECODE, _unexpected(exc), error_class(exc), version))
            continue
        valid_records.append(record)
        events.append(event)
    validated_at = clock()

    rows = [event.features for event in events]
    probabilities, failures = predict_isolating_failures(model, rows)
    if failures:
        logger.warning(
            "the model failed on %d of %d events in this batch; they go to the dead-letter topic",
            len(failures),
            len(events),
        )
    if not failures and _all_probabilities(probabilities):
        scored_records, scored_events, scored_probabilities = valid_records, events, probabilities
    else:
        scored_records, scored_events, scored_probabilities = _sort_out_failures(
            valid_records, events, probabilities, failures, dead_letters, version=version
        )
    predicted_at = clock()

    result.scored_features = rows if scored_events is events else [event.features for event in scored_events]
    result.probabilities = scored_probabilities
    result.event_ms = [event.event_ms for event in scored_events]
    probability_array = np.asarray(scored_probabilities, dtype=float)
    bands = _bands(model, probability_array)
    reasons = _reasons(model, result.scored_features, probability_array) if with_reasons else None
    threshold = model.threshold
    result.probability_sum = float(probability_array.sum())
    result.churned = int((probability_array >= threshold).sum())
    processed_ts = utc_now_iso()
    result.predictions = _prediction_outs(
        scored_records,
        scored_events,
        scored_probabilities,
        threshold=threshold,
        key_field=contract.key_field,
        version=version,
        processed_ts=processed_ts,
        bands=bands,
        reasons=reasons,
    )
    if shadow is not None and scored_events:
        score_shadow(result, shadow, list(zip(scored_records, scored_events, strict=True)), processed_ts, contract)

    if times is not None:
        encoded_at = clock()
        times.decode += validated_at - started
        times.predict += predicted_at - validated_at
        times.encode += encoded_at - predicted_at
    return result

"""Batch scoring without a broker: one outcome per record, dead letters that keep the bytes."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from churnstream.consumer.scoring import BatchResult, RawRecord, StageTimes, predict_isolating_failures, score_batch
from churnstream.contract.events import DEFAULT_MAX_VALUE_BYTES, encode_event, parse_ts
from churnstream.contract.outputs import (
    DEADLETTER_HEADERS,
    MAX_REASON_CHARS,
    PREDICTION_NO,
    PREDICTION_YES,
    DeadLetterInfo,
    decode_prediction,
    prediction_fields,
)
from churnstream.errors import EXIT_MODEL_BROKEN, ModelBroken
from churnstream.ml.dataset import load_rows
from churnstream.ml.features import features_frame
from churnstream.ml.model import ChurnModel, load_model
from tests.fakes import StubModel
from tests.helpers import SAMPLE_ROW, current_model_path, telco_contract, telco_event

TOPIC = "raw-topic"
TS = "2026-11-27T08:00:00.000Z"


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    return load_model(current_model_path())


@pytest.fixture(scope="module")
def real_rows(real_data_path: Path) -> list[dict[str, str]]:
    return load_rows(real_data_path)


def event_bytes(index: int = 0, **changes: Any) -> bytes:
    row = {**SAMPLE_ROW, "customerID": f"{index:04d}-TEST"}
    event = telco_event(row, event_id=f"e-{index}", event_ts=TS)
    event.update(changes)
    return encode_event(event)


def record(value: bytes | None, offset: int = 0, partition: int = 0, key: bytes | None = b"k") -> RawRecord:
    return RawRecord(TOPIC, partition, offset, key, value)


def headers_of(result: BatchResult, index: int = 0) -> DeadLetterInfo:
    return DeadLetterInfo.from_headers(result.dead_letters[index].headers)


def single_dead_letter(value: bytes | None, model: Any = None, key: bytes | None = b"k") -> DeadLetterInfo:
    result = score_batch([record(value, offset=7, partition=3, key=key)], model or StubModel())
    assert result.scored == 0 and len(result.dead_letters) == 1
    dead = result.dead_letters[0]
    assert dead.value == value and dead.key == key  # the original bytes, untouched
    return headers_of(result)


# --------------------------------------------------------------------- every kind of bad input

BAD_DECODE = {
    "tombstone": None,
    "empty": b"",
    "not json": b"customerID=7590-VHVEG",
    "truncated json": event_bytes()[:-5],
    "invalid utf-8 bytes": b"\xff\xfe\xfd",
    "invalid utf-8 inside a json string": b'{"customerID": "\xff"}',
    "json array": b"[1, 2, 3]",
    "json string": b'"hello"',
    "json number": b"42",
    "json null": b"null",
    "json true": b"true",
    "deeply nested arrays": b"[" * 5000 + b"]" * 5000,
    "deeply nested objects": b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "oversized": b'{"pad": "' + b"x" * DEFAULT_MAX_VALUE_BYTES + b'"}',
}


@pytest.mark.parametrize("value", BAD_DECODE.values(), ids=BAD_DECODE.keys())
def test_undecodable_values_are_dead_lettered_at_decode_with_their_bytes(value: bytes | None) -> None:
    headers = single_dead_letter(value)
    assert headers.stage == "decode"
    assert headers.reason


BAD_VALIDATE = {
    "missing feature": {"tenure": None, "__drop__": "tenure"},
    "missing customerID": {"__drop__": "customerID"},
    "blank customerID": {"customerID": "   "},
    "customerID too long": {"customerID": "x" * 129},
    "customerID not a string": {"customerID": 17},
    "missing event_id": {"__drop__": "event_id"},
    "bad event_ts": {"event_ts": "yesterday"},
    "SeniorCitizen 2": {"SeniorCitizen": 2},
    "SeniorCitizen yes": {"SeniorCitizen": "yes"},
    "SeniorCitizen boolean": {"SeniorCitizen": True},
    "tenure negative": {"tenure": -1},
    "tenure fractional": {"tenure": 1.5},
    "tenure a list": {"tenure": [1]},
    "MonthlyCharges NaN string": {"MonthlyCharges": "NaN"},
    "MonthlyCharges inf string": {"MonthlyCharges": "inf"},
    "MonthlyCharges huge": {"MonthlyCharges": 1e12},
    "MonthlyCharges null": {"MonthlyCharges": None},
    "MonthlyCharges blank": {"MonthlyCharges": " "},
    "TotalCharges not a number": {"TotalCharges": "n/a"},
    "unknown category": {"Contract": "Three year"},
    "category wrong case": {"gender": "female"},
    "category null": {"PaymentMethod": None},
    "category a number": {"Partner": 1},
    "category an object": {"Partner": {"value": "Yes"}},
}


@pytest.mark.parametrize("changes", BAD_VALIDATE.values(), ids=BAD_VALIDATE.keys())
def test_invalid_events_are_dead_lettered_at_validate_with_a_reason(changes: dict[str, Any]) -> None:
    event = orjson.loads(event_bytes())
    drop = changes.pop("__drop__", None)
    event.update(changes)
    if drop:
        del event[drop]
    value = orjson.dumps(event)
    headers = single_dead_letter(value)
    assert headers.stage == "validate"
    assert headers.error_class in {"churnstream.errors.InvalidEvent", "ValueError"}
    reason = headers.reason
    named = drop or next(iter(changes))
    assert named in reason  # the reason names the field at fault


def test_the_headers_say_where_it_came_from_and_why() -> None:
    headers = single_dead_letter(b"not json", model=StubModel(version="v-42"), key=b"7590-VHVEG")
    names = [name for name, _ in score_batch([record(b"x")], StubModel()).dead_letters[0].headers]
    assert names[: len(DEADLETTER_HEADERS)] == list(DEADLETTER_HEADERS)
    assert headers.stage == "decode"
    assert headers.reason.startswith("value is not valid JSON")
    assert headers.error_class == "orjson.JSONDecodeError"
    assert headers.source_topic == TOPIC
    assert (headers.source_partition, headers.source_offset) == (3, 7)
    assert headers.model_version == "v-42"
    assert parse_ts(headers.failed_ts).tzinfo is not None and headers.failed_ts.endswith("Z")


def test_a_tombstone_stays_a_tombstone_and_a_null_key_stays_null() -> None:
    result = score_batch([record(None, key=b"7590-VHVEG"), record(b"[]", key=None, offset=1)], StubModel())
    assert [(d.key, d.value) for d in result.dead_letters] == [(b"7590-VHVEG", None), (None, b"[]")]


def test_a_record_without_key_or_value_is_marked_because_kafka_python_cannot_send_it() -> None:
    result = score_batch([record(None, key=None)], StubModel())
    dead = result.dead_letters[0]
    assert (dead.key, dead.value) == (b"", None)
    assert DeadLetterInfo.from_headers(dead.headers).key_absent


def test_an_oversized_value_keeps_every_byte() -> None:
    big = b'{"customerID": "' + b"y" * (900 * 1024) + b'"}'
    result = score_batch([record(big)], StubModel())
    assert result.dead_letters[0].value == big
    assert "over the limit" in headers_of(result).reason


def test_long_reasons_are_capped() -> None:
    event = orjson.loads(event_bytes())
    event["Contract"] = "z" * 5000
    headers = single_dead_letter(orjson.dumps(event))
    assert len(headers.reason) <= MAX_REASON_CHARS


# --------------------------------------------------------------------- what is accepted


def test_typed_events_with_null_total_charges_12_0_and_extra_fields_are_scored() -> None:
    values = [
        event_bytes(0, TotalCharges=None),
        event_bytes(1, tenure=12.0),
        event_bytes(2, extra_field="ignored", nested={"also": ["ignored"]}),
    ]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], StubModel())
    assert result.dead_letters == []
    assert result.scored == len(values)


def test_numbers_written_as_strings_are_dead_letters_that_say_how_to_write_them() -> None:
    """Since 0.4 numbers are JSON numbers (the published schema can then state exactly what is accepted):
    the CSV's strings are the producer's to type (contract.events.Contract.event_from_row)."""
    values = [event_bytes(0, tenure="12"), event_bytes(1, TotalCharges=" "), event_bytes(2, MonthlyCharges="70.50")]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], StubModel())
    assert result.scored == 0
    reasons = [d.reason for d in result.dead_letters]
    assert reasons[0] == "tenure is a string; a whole number is required (numbers are JSON numbers: write 12, not '12')"
    assert reasons[1] == "TotalCharges is a string; a number is required"
    assert "write 70.50, not '70.50'" in reasons[2]


# --------------------------------------------------------------------- one outcome each


def test_a_mixed_batch_gives_every_record_exactly_one_outcome(model: ChurnModel) -> None:
    good = [event_bytes(i, tenure=i % 72) for i in range(40)]
    bad = [*BAD_DECODE.values(), event_bytes(99, Contract="Weekly"), event_bytes(98, SeniorCitizen=3)]
    values = good + bad
    random.Random(4).shuffle(values)
    records = [record(v, offset=100 + i, partition=i % 3, key=b"key-%d" % i) for i, v in enumerate(values)]
    stub = StubModel()
    result = score_batch(records, stub)

    assert result.scored == len(good) and len(result.dead_letters) == len(bad)
    outcomes = [(p.partition, p.offset) for p in result.predictions]
    outcomes += [(d.partition, d.offset) for d in result.dead_letters]
    assert sorted(outcomes) == sorted((r.partition, r.offset) for r in records)
    by_position = {(r.partition, r.offset): r for r in records}
    for dead in result.dead_letters:
        original = by_position[(dead.partition, dead.offset)]
        assert (dead.key, dead.value) == (original.key, original.value)
    assert stub.calls == [len(good)]  # ONE model call for the whole batch


def test_predictions_carry_every_field(model: ChurnModel) -> None:
    records = [record(event_bytes(i), offset=50 + i, partition=2) for i in range(3)]
    result = score_batch(records, model)
    for index, prediction in enumerate(result.predictions):
        assert list(orjson.loads(prediction.value)) == list(prediction_fields("customerID"))
        payload = decode_prediction(prediction.value)
        assert prediction.key == f"{index:04d}-TEST".encode() == payload.key.encode()
        assert payload.event_id == f"e-{index}" and payload.event_ts == TS
        assert payload.model_version == model.version
        assert payload.source == (2, 50 + index)
        assert 0.0 <= payload.churn_probability <= 1.0
        assert payload.prediction in {PREDICTION_YES, PREDICTION_NO}
        assert payload.processed_ts.endswith("Z") and parse_ts(payload.processed_ts)


def test_probabilities_equal_the_model_offline_on_real_data(model: ChurnModel, real_rows: list[dict[str, str]]) -> None:
    rows = real_rows[:1500]
    values = [encode_event(telco_event(row, event_id=f"r-{i}", event_ts=TS)) for i, row in enumerate(rows)]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], model)
    assert result.scored == len(rows)
    offline_rows = [telco_contract().decode(v).features for v in values]
    offline = model.pipeline.predict_proba(features_frame(model.schema, offline_rows))[:, 1]
    online = [decode_prediction(p.value).churn_probability for p in result.predictions]
    assert online == model.predict_proba(offline_rows).tolist()  # bit for bit: orjson writes floats at full precision
    # The pipeline's own predict_proba sums the one-hot matrix in another order (churnstream.ml.linear).
    assert max(abs(a - b) for a, b in zip(online, offline.tolist(), strict=True)) <= 1e-12
    assert result.probability_sum == pytest.approx(float(offline.sum()))
    assert result.churned == int((offline >= model.threshold).sum())


@pytest.mark.parametrize(
    ("probability", "prediction", "confidence"),
    [
        (0.0, "No", 1.0),
        (0.25, "No", 0.75),
        (0.4999, "No", 0.5001),
        (0.5, "Yes", 0.5),
        (0.8, "Yes", 0.8),
        (1.0, "Yes", 1.0),
    ],
)
def test_threshold_and_confidence(probability: float, prediction: str, confidence: float) -> None:
    stub = StubModel(answer=lambda rows: [probability] * len(rows), threshold=0.5)
    payload = decode_prediction(score_batch([record(event_bytes())], stub).predictions[0].value)
    assert payload.churn_probability == probability
    assert payload.prediction == prediction
    assert payload.confidence_score == pytest.approx(confidence)


def test_the_model_cards_threshold_is_used() -> None:
    stub = StubModel(answer=lambda rows: [0.3] * len(rows), threshold=0.25)
    assert decode_prediction(score_batch([record(event_bytes())], stub).predictions[0].value).prediction == "Yes"


# --------------------------------------------------------------------- score-stage fallback


def test_one_row_that_breaks_the_model_is_dead_lettered_alone() -> None:
    stub = StubModel(fails_on=lambda row: row["tenure"] == 13)
    values = [event_bytes(i, tenure=i) for i in range(64)]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], stub)
    assert result.scored == 63
    assert [d.offset for d in result.dead_letters] == [13]
    headers = headers_of(result)
    assert headers.stage == "score"
    assert headers.error_class == "ValueError"
    assert "cannot score tenure=13" in headers.reason
    assert result.dead_letters[0].value == values[13]
    assert len(stub.calls) <= 1 + 2 * 7  # one call, then a bisection: about 2*log2(n) more


def test_hostile_rows_that_all_fail_are_dead_lettered_while_the_canaries_score() -> None:
    """Every row fails, but the model scores its canary rows: the rows are to blame, not the model."""
    stub = StubModel(fails_on=lambda row: True)
    result = score_batch([record(event_bytes(i), offset=i) for i in range(5)], stub)
    assert result.scored == 0
    assert [d.stage for d in result.dead_letters] == ["score"] * 5
    assert stub.canary_checks == 1


def test_a_broken_model_stops_the_batch_before_anything_is_sent() -> None:
    """Before: a model that raised for every row made 2n-1 calls and dead-lettered the whole stream.
    Now one call, one canary check, and ModelBroken (its own exit code): no outputs for the batch."""
    stub = StubModel(fails_on=lambda row: True, broken=True)
    with pytest.raises(ModelBroken, match=r"failed on a whole batch of 64 events .* canary rows") as caught:
        score_batch([record(event_bytes(i), offset=i) for i in range(64)], stub)
    assert stub.calls == [64]  # no bisection
    assert caught.value.exit_code == EXIT_MODEL_BROKEN


def test_a_healthy_model_is_never_asked_for_its_canaries() -> None:
    stub = StubModel()
    score_batch([record(event_bytes(i), offset=i) for i in range(5)], stub)
    assert stub.canary_checks == 0


def test_a_non_probability_from_the_model_is_dead_lettered() -> None:
    stub = StubModel(answer=lambda rows: [0.1, float("nan"), 1.5, 0.9][: len(rows)])
    result = score_batch([record(event_bytes(i), offset=i) for i in range(4)], stub)
    assert [p.offset for p in result.predictions] == [0, 3]
    assert [d.offset for d in result.dead_letters] == [1, 2]
    assert all(d.stage == "score" and "not a probability" in d.reason for d in result.dead_letters)


def test_a_wrong_number_of_probabilities_is_a_score_failure() -> None:
    stub = StubModel(answer=lambda rows: [0.5] * (len(rows) + 1))
    result = score_batch([record(event_bytes(i), offset=i) for i in range(3)], stub)
    assert result.scored == 0 and {d.stage for d in result.dead_letters} == {"score"}


def test_bisection_returns_probabilities_in_row_order() -> None:
    stub = StubModel(answer=lambda rows: [row["tenure"] / 100 for row in rows], fails_on=lambda row: row["tenure"] == 5)
    base = telco_contract().decode(event_bytes()).features
    position = telco_contract().feature_names.index("tenure")
    rows = [(*base[:position], t, *base[position + 1 :]) for t in range(11)]
    probabilities, failed = predict_isolating_failures(stub, rows)
    assert list(failed) == [5]
    assert probabilities == [t / 100 if t != 5 else None for t in range(11)]


def test_an_empty_batch_calls_nothing() -> None:
    stub = StubModel()
    assert score_batch([], stub).consumed == 0
    assert stub.calls == []


def test_stage_times_accumulate() -> None:
    times = StageTimes()
    score_batch([record(event_bytes(i)) for i in range(10)], StubModel(), times=times)
    assert all(value >= 0 for value in times.as_dict().values())
    assert sum(times.as_dict().values()) > 0


# --- the shadow (challenger) model ----------------------------------------------------------------


def test_a_shadow_model_scores_the_same_events_in_one_call_with_its_own_version_and_threshold() -> None:
    main = StubModel(answer=lambda rows: [0.4] * len(rows), version="main-1", threshold=0.5)
    shadow = StubModel(answer=lambda rows: [0.4] * len(rows), version="challenger-2", threshold=0.3)
    records = [record(event_bytes(i), offset=i) for i in range(5)] + [record(b"not json", offset=5)]
    result = score_batch(records, main, shadow=shadow)
    assert shadow.calls == [5]  # once, for the five events the main model scored
    assert [p.offset for p in result.shadow_predictions] == [p.offset for p in result.predictions]
    main_out = [decode_prediction(p.value) for p in result.predictions]
    shadow_out = [decode_prediction(p.value) for p in result.shadow_predictions]
    assert {p.model_version for p in main_out} == {"main-1"} and {p.model_version for p in shadow_out} == {
        "challenger-2"
    }
    assert {p.prediction for p in main_out} == {"No"} and {p.prediction for p in shadow_out} == {"Yes"}
    assert [p.event_id for p in main_out] == [p.event_id for p in shadow_out]
    assert result.consumed == 6 and len(result.dead_letters) == 1  # the accounting is the main model's
    assert result.shadow_dead_letters == []


@pytest.mark.parametrize(
    "answer",
    [
        lambda rows: (_ for _ in ()).throw(RuntimeError("the challenger's library is gone")),
        lambda rows: [0.5] * (len(rows) - 1),
        lambda rows: [float("nan")] * len(rows),
    ],
    ids=["raises", "too-few", "nan"],
)
def test_a_failing_shadow_model_costs_only_its_own_outputs(answer: Any) -> None:
    main = StubModel(version="main-1")
    shadow = StubModel(answer=answer, version="challenger-2")
    values = [event_bytes(i) for i in range(4)]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], main, shadow=shadow)
    assert len(result.predictions) == 4 and result.dead_letters == []  # main outputs as without a shadow
    assert result.shadow_predictions == []
    assert [d.value for d in result.shadow_dead_letters] == values  # the original bytes, each once
    info = DeadLetterInfo.from_headers(result.shadow_dead_letters[0].headers)
    assert info.stage == "shadow" and info.model_version == "challenger-2"
    assert info.reason.startswith("the shadow model challenger-2 failed on this batch: ")


def test_each_prediction_keeps_its_features_and_probability_for_the_drift_monitor() -> None:
    model = StubModel(answer=lambda rows: [0.1 * (i + 1) for i in range(len(rows))], version="v")
    result = score_batch([record(event_bytes(i), offset=i) for i in range(3)], model)
    assert result.probabilities == pytest.approx([0.1, 0.2, 0.3])
    assert len(result.scored_features) == 3 and len(result.scored_features[0]) == len(telco_contract().feature_names)
    assert result.model_version == "v"


# --- what a retention team acts on (issue 21) ----------------------------------------------------


def test_each_prediction_of_the_real_model_carries_its_band_and_reasons_valid_by_the_published_schema(
    model: ChurnModel, real_rows: list[dict[str, str]]
) -> None:
    import jsonschema  # noqa: PLC0415 - a test dependency

    from churnstream.contract.jsonschema import prediction_schema  # noqa: PLC0415

    values = [encode_event(telco_event(row, event_id=f"r-{i}", event_ts=TS)) for i, row in enumerate(real_rows[:300])]
    result = score_batch([record(v, offset=i) for i, v in enumerate(values)], model)
    published = [decode_prediction(p.value) for p in result.predictions]
    assert {p.format_version for p in published} == {2}
    assert {p.risk_band for p in published} == {"very high", "high", "medium", "low"}
    assert all(p.risk_band == model.bands.band(p.churn_probability) for p in published)  # type: ignore[union-attr]
    assert all(p.reasons is not None and len(p.reasons) <= 3 for p in published)
    assert sum(len(p.reasons or ()) == 3 for p in published) > 250
    schema = prediction_schema(telco_contract().schema)
    for prediction in result.predictions[:50]:
        jsonschema.validate(orjson.loads(prediction.value), schema)
    quiet = score_batch([record(v, offset=i) for i, v in enumerate(values)], model, with_reasons=False)
    assert {decode_prediction(p.value).reasons for p in quiet.predictions} == {None}
    assert [decode_prediction(p.value).churn_probability for p in quiet.predictions] == [
        p.churn_probability for p in published
    ]


def test_a_failing_explainer_costs_the_batch_its_reasons_not_its_predictions(caplog: pytest.LogCaptureFixture) -> None:
    stub = StubModel()
    stub.explain = lambda rows, probabilities: (_ for _ in ()).throw(RuntimeError("explainer broke"))  # type: ignore[attr-defined]
    result = score_batch([record(event_bytes(i), offset=i) for i in range(5)], stub)
    assert result.scored == 5 and result.dead_letters == []
    assert {decode_prediction(p.value).reasons for p in result.predictions} == {None}
    assert "explainer broke" in caplog.text

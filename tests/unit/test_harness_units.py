"""The harness's pure parts: the malformed-event catalogue and the accounting."""

from __future__ import annotations

import pytest

from churnstream.consumer.scoring import RawRecord
from churnstream.contract.events import utc_now_iso
from churnstream.contract.outputs import DeadLetterInfo, Prediction
from churnstream.errors import InvalidEvent
from churnstream.harness import badinput
from churnstream.harness.analysis import (
    ObservedDeadLetter,
    ObservedPrediction,
    conservation,
    dead_letter_keeps_bytes,
    latency_summary,
    rate_per_bin,
    timeline_bin_ms,
)
from churnstream.harness.judge import judge
from churnstream.harness.plan import RunPlan
from tests.helpers import telco_contract

CATALOGUE = badinput.catalogue("unit", utc_now_iso())


def test_the_catalogue_has_at_least_thirty_distinct_kinds() -> None:
    kinds = [item.kind for item in CATALOGUE]
    assert len(kinds) >= 30
    assert len(set(kinds)) == len(kinds)


@pytest.mark.parametrize("item", CATALOGUE, ids=lambda item: item.kind)
def test_every_catalogue_entry_is_rejected_at_its_stage(item: badinput.BadEvent) -> None:
    with pytest.raises(InvalidEvent) as caught:
        telco_contract().decode(item.value)
    assert caught.value.stage == item.stage


def test_pick_cycles_through_both_families() -> None:
    picked = badinput.pick(4, "p", utc_now_iso())
    assert len(picked) == 4
    assert {item.stage for item in picked} == {"decode", "validate"}
    assert len({item.kind for item in picked}) == 4


def _prediction(source: tuple[int, int], event_id: str) -> ObservedPrediction:
    prediction = Prediction("customerID", "c", 0.5, "Yes", 0.5, "2026-01-01T00:00:00.000Z", "2026-01-01T00:00:00.001Z",
                            event_id, "v", source[0], source[1])  # fmt: skip
    return ObservedPrediction(prediction, 2.0)


def _dead_letter(
    source: tuple[int, int], key: bytes | None = None, value: bytes | None = b"", *, key_absent: bool = False
) -> ObservedDeadLetter:
    info = DeadLetterInfo("decode", "empty", "E", "raw", source[0], source[1], "", "v", key_absent=key_absent)
    return ObservedDeadLetter(info, key, value, 2.0)


def test_conservation_counts_lost_duplicated_and_unknown() -> None:
    raw = [RawRecord("raw", 0, offset, None, b"", 0) for offset in range(5)]
    predictions = [_prediction((0, 0), "a"), _prediction((0, 1), "b"), _prediction((0, 1), "b")]
    dead = [_dead_letter((0, 2)), _dead_letter((9, 9))]
    counts = conservation(raw, predictions, dead)
    assert (counts.raw_records, counts.scored, counts.dead_lettered) == (5, 3, 2)
    assert counts.lost == 2 and counts.lost_examples == [(0, 3), (0, 4)]
    assert counts.duplicated == 1
    assert counts.unknown_sources == 1
    assert counts.duplicate_event_ids == 1
    assert not counts.exact


def test_exact_conservation() -> None:
    raw = [RawRecord("raw", 1, 7, None, b"", 0), RawRecord("raw", 2, 0, None, None, 0)]
    counts = conservation(raw, [_prediction((1, 7), "x")], [_dead_letter((2, 0))])
    assert counts.exact and counts.lost == 0 and counts.duplicated == 0


def test_latency_summary_and_timeline() -> None:
    summary = latency_summary([float(v) for v in range(1, 101)])
    assert summary["p50"] == 50.5 and summary["max"] == 100.0 and summary["count"] == 100
    assert latency_summary([])["p99"] is None
    assert rate_per_bin([1000.0, 1500.0, 2100.0, 4999.0], origin_ms=1000.0) == [2.0, 1.0, 0.0, 1.0]
    assert rate_per_bin([0.0, 50.0, 150.0], origin_ms=0.0, bin_ms=100.0) == [20.0, 10.0]  # events per second
    assert rate_per_bin([], origin_ms=0.0) == []
    assert timeline_bin_ms([1000.0, 2500.0], origin_ms=0.0) == 100.0  # a 2.5 s run: bins of 100 ms
    assert timeline_bin_ms([60_000.0], origin_ms=0.0) == 1000.0


def test_dead_letter_bytes_are_compared_with_the_raw_record_they_name() -> None:
    raw = [
        RawRecord("raw", 0, 0, b"k", b'{"a": 1}', 0),
        RawRecord("raw", 0, 1, None, None, 0),  # neither key nor value
        RawRecord("raw", 0, 2, None, b"\xff", 0),
        RawRecord("raw", 0, 3, b"k", b"", 0),
    ]
    dead = [
        _dead_letter((0, 0), b"k", b'{"a": 2}'),  # value altered
        _dead_letter((0, 1), b"", None, key_absent=True),  # the consumer's stand-in: equal
        _dead_letter((0, 2), b"", b"\xff"),  # a null key became empty: altered
        _dead_letter((0, 3), b"k", b""),  # equal
    ]
    counts = conservation(raw, [], dead)
    assert counts.dead_letter_bytes_mismatch == 2
    assert counts.exact  # every record has its one outcome; the bytes are judged on their own
    assert not dead_letter_keeps_bytes(raw[0], _dead_letter((0, 0), b"k", b"x", key_absent=True))


def test_the_harness_fails_a_run_whose_dead_letters_lost_bytes() -> None:
    results = {
        "producer": {"exit_code": 0, "sent": 10, "acknowledged": 10},
        "consumers": [{"exit_code": 0}],
        "lost": 0,
        "raw_records": 12,
        "duplicated": 0,
        "duplicate_event_ids": 0,
        "dead_lettered": 2,
        "dead_letter_bytes_mismatch": 1,
        "scored": 10,
        "sample_check": {"checked": 10, "mismatches": 0, "max_abs_diff": 0.0},
        "malformed_outputs": 0,
    }
    criteria = {c.name: c for c in judge(results, RunPlan(inject_bad=2), [])}
    failed = [name for name, c in criteria.items() if not c.passed]
    assert failed == ["dead letters keep the original key and value bytes"]
    assert criteria[failed[0]].detail == "1 of 2 dead letters differ from the raw record they name"

"""Replay's pure part: which dead letters a selection takes, and which the ledger already has."""

from __future__ import annotations

from churnstream.replay import Selection, StoredDeadLetter, select


def _record(partition: int, offset: int, stage: str, reason: str) -> StoredDeadLetter:
    return StoredDeadLetter(partition, offset, b"k", b"v", stage, reason)


def test_selection_is_pure_and_skips_what_the_ledger_has() -> None:
    records = [
        _record(0, 5, "validate", "Contract='Forever' is not a known category"),
        _record(0, 6, "decode", "value is empty"),
        _record(1, 7, "validate", "tenure=-1 is out of range"),
    ]
    assert [r.offset for r in select(records, Selection(stage="validate"), set())] == [5, 7]
    assert [r.offset for r in select(records, Selection(reason_contains="Contract"), set())] == [5]
    assert [r.offset for r in select(records, Selection(partition=0, from_offset=6, to_offset=9), set())] == [6]
    assert [r.offset for r in select(records, Selection(), {b"0:5", b"1:7"})] == [6]

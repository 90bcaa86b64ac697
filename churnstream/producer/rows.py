"""Rows made ready once: the CSV checked and typed by the event schema before anything is sent, and the
event ids.

Each send then only adds ``event_ts`` and ``event_id`` to a prepared template (contract.events).
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from churnstream.contract.events import EVENT_ID, EVENT_TS, Contract, encode_event, format_ts
from churnstream.contract.schema import ENVELOPE_FIELDS
from churnstream.errors import DataError, InvalidEvent
from churnstream.ml.dataset import open_csv

logger = logging.getLogger(__name__)

# Each send replaces these (build_value): a row is checked with envelope values that pass.
_ID_PLACEHOLDER, _TS_PLACEHOLDER = "placeholder", "2026-01-01T00:00:00.000Z"


@dataclass(frozen=True, slots=True)
class PreparedRow:
    """A CSV row checked and typed once; each send only adds ``event_ts`` and ``event_id``."""

    row_index: int  # 0-based among the file's data rows (bad ones included), stable across runs
    line_number: int
    key: bytes
    template: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SkippedRow:
    row_index: int
    line_number: int
    reason: str


@dataclass(frozen=True)
class PreparedData:
    path: Path
    rows: tuple[PreparedRow | None, ...]  # by row_index; None where a bad row was skipped
    skipped: tuple[SkippedRow, ...]
    sha256: str = ""  # of the very bytes the rows came from (the checkpoint records it)
    schema_sha256: str = ""  # of the schema that typed them (the checkpoint records it too)

    @property
    def rows_per_pass(self) -> int:
        return len(self.rows)

    @property
    def valid_rows(self) -> list[PreparedRow]:
        return [row for row in self.rows if row is not None]


def prepare_rows(
    path: Path, contract: Contract, *, skip_bad_rows: bool = False, limit: int | None = None
) -> PreparedData:
    """Read the CSV once and turn each row into an event of ``contract``'s schema, before any is sent.

    A bad row stops the run (DataError naming its line and column) unless ``skip_bad_rows``: then it
    is logged with its line number and left out, and still counts as a row, so the positions and
    event ids of the rows after it do not depend on the flag.
    """
    rows: list[PreparedRow | None] = []
    skipped: list[SkippedRow] = []
    source = open_csv(path)
    schema = contract.schema
    key_field = schema.key_field
    columns = [f.name for f in schema.fields if f.name not in ENVELOPE_FIELDS and f.required]
    for line_number, raw in source.rows(columns):
        if limit is not None and len(rows) >= limit:
            break
        row_index = len(rows)
        try:
            template = contract.event_from_row(raw, event_id=_ID_PLACEHOLDER, event_ts=_TS_PLACEHOLDER)
        except InvalidEvent as exc:
            if not skip_bad_rows:
                raise DataError(
                    f"data file {path} line {line_number}: {exc.reason}; fix the row, "
                    "or pass --skip-bad-rows to leave bad rows out"
                ) from None
            logger.warning("skipping %s line %d: %s", path, line_number, exc.reason)
            skipped.append(SkippedRow(row_index, line_number, exc.reason))
            rows.append(None)
            continue
        rows.append(PreparedRow(row_index, line_number, template[key_field].encode(), template))
    if not any(row is not None for row in rows):
        what = "has no data rows" if not rows else "has no valid rows"
        raise DataError(f"data file {path} {what}; nothing to send")
    return PreparedData(path, tuple(rows), tuple(skipped), source.sha256, schema.sha256)


def build_value(row: PreparedRow, event_id: str, event_ts: str) -> bytes:
    """The event's bytes: the prepared template plus this send's timestamp and id."""
    return encode_event({**row.template, EVENT_TS: event_ts, EVENT_ID: event_id})


def new_run_id() -> str:
    """Fresh per streaming run, so ``{run_id}-{seq}`` never repeats across runs."""
    return uuid.uuid4().hex[:12]


def streaming_event_id(run_id: str, seq: int) -> str:
    return f"{run_id}-{seq}"


def batch_event_id(load_id: str, pass_index: int, row_index: int) -> str:
    """Derived from the load and the row, so a row re-sent after ``--resume`` keeps its id."""
    return f"{load_id}-{pass_index}-{row_index}"


class EventClock:
    """``event_ts`` for the event being sent, formatted once per millisecond, not per event."""

    def __init__(self, now: Callable[[], float] = time.time) -> None:
        self._now = now
        self._ms = -1
        self._text = ""

    def __call__(self) -> str:
        ms = int(self._now() * 1000)
        if ms != self._ms:
            self._ms = ms
            seconds, millis = divmod(ms, 1000)
            self._text = format_ts(datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000))
        return self._text

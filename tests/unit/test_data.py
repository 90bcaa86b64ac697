from __future__ import annotations

from pathlib import Path

import pytest

from churnstream.errors import DataError
from churnstream.ml.dataset import (
    DATASET_LABEL,
    DATASET_ROWS,
    DATASET_SHA256,
    choose_label,
    load_rows,
    read_labelled,
    read_rows,
    verify_dataset,
)
from tests.helpers import make_rows, telco_contract, write_csv


def test_the_real_data_set_passes_its_checksum(real_data_path: Path) -> None:
    assert verify_dataset(real_data_path) == DATASET_SHA256
    rows = load_rows(real_data_path)
    assert len(rows) == DATASET_ROWS
    assert tuple(rows[0]) == (telco_contract().key_field, *telco_contract().feature_names, DATASET_LABEL)
    assert sum(1 for row in rows if not row["TotalCharges"].strip()) == 11


def test_a_missing_file_says_how_to_fetch_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"is missing; run 'make data'"):
        verify_dataset(tmp_path / "nope.csv")


def test_an_altered_file_is_an_error_not_a_warning(tmp_path: Path, real_data_path: Path) -> None:
    altered = tmp_path / "altered.csv"
    payload = bytearray(real_data_path.read_bytes())
    payload[-5] = ord("X") if payload[-5] != ord("X") else ord("Y")
    altered.write_bytes(bytes(payload))
    with pytest.raises(DataError, match="was altered or is another file"):
        verify_dataset(altered)


def test_a_wrong_header_names_the_missing_columns(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("customerID,gender\nx,Female\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) SeniorCitizen, Partner"):
        read_labelled(telco_contract(), bad, DATASET_LABEL)


def test_rows_come_with_their_line_numbers(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "small.csv", make_rows(3))
    assert [line for line, _ in read_rows(path)] == [2, 3, 4]


@pytest.mark.parametrize("delimiter", [";", "\t"])
def test_a_spreadsheets_export_reads_as_the_same_rows(tmp_path: Path, delimiter: str) -> None:
    """A byte-order mark, ";" or tab between cells, CRLF line ends: what spreadsheets write in many locales."""
    rows = make_rows(3)
    plain = write_csv(tmp_path / "plain.csv", rows)
    lines = [delimiter.join(row) for row in ([list(rows[0])] + [list(row.values()) for row in rows])]
    exported = tmp_path / "exported.csv"
    exported.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    assert list(read_rows(exported, ["customerID", "Churn"])) == list(read_rows(plain))


@pytest.mark.parametrize(
    ("values", "positive", "expected"),
    [
        (["Yes", "No", "No"], None, ("Yes", "No")),
        (["0", "1"], None, ("1", "0")),
        (["true", "false"], None, ("true", "false")),
        (["churned", "stayed"], "churned", ("churned", "stayed")),
    ],
)
def test_the_label_is_two_values_and_the_positive_one_is_found_or_named(
    values: list[str], positive: str | None, expected: tuple[str, str]
) -> None:
    label = choose_label("L", values, positive)
    assert (label.positive, label.negative) == expected


@pytest.mark.parametrize(
    ("values", "positive", "message"),
    [
        (["a", "b", "c"], None, "holds 3 distinct value(s)"),
        (["Yes"], None, "holds 1 distinct value(s)"),
        (["churned", "stayed"], None, "say which means churn with --positive VALUE"),
        (["Yes", "No"], "Maybe", "--positive 'Maybe' is not a value of the label column L"),
    ],
)
def test_a_label_that_is_not_two_values_or_an_unknown_positive_is_one_line(
    values: list[str], positive: str | None, message: str
) -> None:
    with pytest.raises(DataError) as caught:
        choose_label("L", values, positive)
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_a_stray_quote_is_one_line_naming_the_file_for_every_reader(tmp_path: Path) -> None:
    """Before: a stray quote (a spreadsheet slip) made training, import and compare end in a traceback,
    csv.Error "field larger than field limit", while the producer gave one line. Every reader of a
    CSV now gives the same DataError (exit 4)."""
    path = write_csv(tmp_path / "slip.csv", make_rows(1200))
    lines = path.read_text().splitlines(keepends=True)
    lines[5] = '"' + lines[5]  # opens a quoted field that no later line closes
    path.write_text("".join(lines))
    with pytest.raises(DataError, match=r"slip\.csv line \d+ is not valid CSV: field larger than field limit"):
        read_labelled(telco_contract(), path, DATASET_LABEL)
    with pytest.raises(DataError, match="is not valid CSV"):
        list(read_rows(path))

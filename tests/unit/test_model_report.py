"""churn-model report: the picture and the page of the shipped model, from its card and its holdout.

The report of the shipped model is written once for the module (about 1.5 s, most of it matplotlib);
the other tests draw small made-up holdouts or stop before drawing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import re
import shutil
import struct
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from churnstream.cli import model as model_cli
from churnstream.errors import EXIT_CONFIG, EXIT_MODEL_INTEGRITY, EXIT_MODEL_MISSING, ModelIntegrityError
from churnstream.files import json_bytes
from churnstream.ml.holdout import Holdout, load_holdout
from churnstream.ml.model import MODEL_KIND_IMPORTED
from churnstream.ml.report import DPI, FIGURE_SIZE, PAGE_FILE, PICTURE_FILE, draw, page
from churnstream.ml.store import CARD_FILE, HOLDOUT_FILE, ModelStore
from churnstream.plotting import REPORT_EXTRA_HINT
from tests.helpers import current_card_path

matplotlib = pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> ModelStore:
    """A store holding a copy of the shipped model's version (with its holdout), current."""
    root = tmp_path_factory.mktemp("report") / "models"
    source = current_card_path().parent
    shutil.copytree(source, root / source.name)
    store = ModelStore(root)
    store.promote(source.name)
    return store


@pytest.fixture(scope="module")
def report(store: ModelStore, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The shipped model's report, written by the command as a user runs it (no VERSION: the current one),
    and what it printed."""
    out = tmp_path_factory.mktemp("out") / "model"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert model_cli.main(["-q", "--store", str(store.root), "report", "--out", str(out)]) == 0
    return out, printed.getvalue()


def run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, list[str]]:
    code = model_cli.main(["-q", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip().splitlines()


def copy_of_current(store: ModelStore, root: Path) -> tuple[Path, str]:
    """Another store (``root``) holding a copy of the current version's folder, to alter."""
    version = store.require_current()
    shutil.copytree(store.root / version, root / version)
    return root, version


def png_size(path: Path) -> tuple[int, int]:
    payload = path.read_bytes()
    assert payload[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", payload[16:24])


def test_the_command_prints_the_two_paths_it_wrote(report: tuple[Path, str]) -> None:
    out, printed = report
    assert printed.splitlines() == [str(out / PICTURE_FILE), str(out / PAGE_FILE)]
    assert png_size(out / PICTURE_FILE) == (FIGURE_SIZE[0] * DPI, FIGURE_SIZE[1] * DPI)


def test_the_page_holds_the_cards_figures_and_the_bands_as_the_holdout_fills_them(
    store: ModelStore, report: tuple[Path, str]
) -> None:
    out, _ = report
    text = (out / PAGE_FILE).read_text()
    card = store.card(store.require_current())
    metrics, evaluation = card["metrics"], card["evaluation"]
    assert f"![{card['model_version']}: " in text and f"]({PICTURE_FILE})" in text
    assert f"the {card['holdout']['rows']:,} test rows of `{card['training_data']['file']}`" in text
    assert "never used to fit the model nor to choose its threshold" in text
    row = " | ".join(f"{metrics[name]:.4f}" for name in ("precision", "recall", "f1", "accuracy", "roc_auc"))
    assert f"| {card['threshold']:.4f} | {evaluation['at_threshold']['flagged']} | {row} |" in text
    assert f"**{card['threshold_rule']['rule']}**" in text
    assert f"Brier score: **{evaluation['brier_score']:.4f}**" in text
    for entry in evaluation["reliability"]:
        assert f"| {entry['low']:.1f} - {entry['high']:.1f} | {entry['count']} |" in text
    for entry in evaluation["lift"]:
        cells = (entry["customers"], entry["churners"], f"{entry['cumulative_gain']:.1%}", f"{entry['lift']:.2f}")
        assert f"| {entry['top']:.1%} | " + " | ".join(str(c) for c in cells) + " |" in text
    # the bands' customers, counted here from holdout.json without the report's code
    holdout = json.loads((store.root / card["model_version"] / HOLDOUT_FILE).read_text())
    probabilities, labels = np.array(holdout["probabilities"]), np.array(holdout["labels"])
    upper = np.inf
    for band in card["risk_bands"]:
        inside = (probabilities >= band["min_probability"]) & (probabilities < upper)
        upper = band["min_probability"]
        assert f"| {band['name']} | {band['min_probability']:.4f} | {inside.sum()} | {labels[inside].sum()} |" in text
    assert f"**{card['reasons']['method']}** method" in text
    assert card["training_data"]["sha256"] in text
    assert f"| {metrics['train_rows']} | {metrics['validation_rows']} | {metrics['test_rows']} |" in text


def test_an_imported_models_page_says_its_figures_hold_only_if_it_never_saw_the_rows(store: ModelStore) -> None:
    card = {**store.card(store.require_current()), "model_kind": MODEL_KIND_IMPORTED}
    holdout = Holdout("made-up", ("a", "b"), np.array([0, 1]), np.array([0.2, 0.7]))
    text = page(card, holdout)
    assert "Kind: **imported**" in text and "these figures are honest only if it never saw these rows" in text
    assert "## The data it was imported with, and its split" in text and "never used to fit" not in text


def _drawn_texts(figure: Any) -> list[Any]:
    """Every text the figure shows: titles, axis labels, tick labels of ticks in view, texts, annotations."""
    texts = [figure._suptitle]
    for axis in figure.axes:
        texts += [axis.title, axis.xaxis.label, axis.yaxis.label, *axis.texts]
        for ticks, labels, (low, high) in (
            (axis.get_xticks(), axis.get_xticklabels(), sorted(axis.get_xlim())),
            (axis.get_yticks(), axis.get_yticklabels(), sorted(axis.get_ylim())),
        ):
            texts += [label for tick, label in zip(ticks, labels, strict=True) if low <= tick <= high]
    return [text for text in texts if text is not None and text.get_visible() and text.get_text().strip()]


def _overlaps(figure: Any) -> list[tuple[str, str]]:
    """Pairs of drawn texts and legend boxes whose boxes intersect, in pixels."""
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    boxes = [(text.get_text(), text.get_window_extent(renderer)) for text in _drawn_texts(figure)]
    boxes += [(f"legend {[t.get_text() for t in axis.get_legend().get_texts()]}",
               axis.get_legend().get_window_extent(renderer)) for axis in figure.axes if axis.get_legend()]  # fmt: skip
    return [(a, b) for (a, box_a), (b, box_b) in combinations(boxes, 2) if box_a.overlaps(box_b)]


def test_no_text_of_the_shipped_models_picture_overlaps_another(store: ModelStore) -> None:
    version = store.require_current()
    card = store.card(version)
    figure = draw(card, load_holdout(store, version, "test", card))
    try:
        assert _overlaps(figure) == []
    finally:
        matplotlib.pyplot.close(figure)


def test_band_names_of_narrow_bands_go_on_rows_of_their_own(store: ModelStore) -> None:
    """Cuts 0.02 apart (a model whose scores crowd around 0.5): the names must not run into each other."""
    card = {
        **store.card(store.require_current()),
        "threshold": 0.51,
        "risk_bands": [
            {"name": "very high", "min_probability": 0.54},
            {"name": "high", "min_probability": 0.52},
            {"name": "medium", "min_probability": 0.50},
            {"name": "low", "min_probability": 0.0},
        ],
    }
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 400)
    probabilities = np.clip(0.5 + 0.05 * (labels - 0.5) + rng.normal(0, 0.04, 400), 0, 1)
    figure = draw(card, Holdout("made-up", tuple(f"c{i}" for i in range(400)), labels, probabilities))
    try:
        assert _overlaps(figure) == []
    finally:
        matplotlib.pyplot.close(figure)


def test_a_version_without_a_holdout_is_one_line_exit_5(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old, version = copy_of_current(store, tmp_path / "old")
    (old / version / HOLDOUT_FILE).unlink()
    code, out, err = run_cli(["--store", str(old), "report", version, "--out", str(tmp_path / "r")], capsys)
    assert (code, out) == (EXIT_MODEL_MISSING, "")
    assert err == [
        f"Error: model {version} has no {HOLDOUT_FILE}: made by an older release: retrain it to get its report"
    ]
    assert not (tmp_path / "r").exists()


def test_an_unknown_version_is_one_line_exit_3(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_cli(
        ["--store", str(store.root), "report", "logreg-000000000000", "--out", str(tmp_path)], capsys
    )
    assert code == EXIT_CONFIG
    assert len(err) == 1 and err[0].startswith("Error: model version 'logreg-000000000000' is not in the store")


def test_a_holdout_that_is_not_the_one_the_card_records_is_refused(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    altered, version = copy_of_current(store, tmp_path / "altered")
    path = altered / version / HOLDOUT_FILE
    holdout = json.loads(path.read_text())
    holdout["labels"][0] = 1 - holdout["labels"][0]
    path.write_text(json.dumps(holdout))
    code, _, err = run_cli(["--store", str(altered), "report", version, "--out", str(tmp_path / "r")], capsys)
    assert code == EXIT_MODEL_INTEGRITY
    assert len(err) == 1 and "the holdout is not the one the model was measured on" in err[0]


def test_without_matplotlib_it_is_one_line_naming_the_extra(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    code, out, err = run_cli(["--store", str(store.root), "report", "--out", str(tmp_path / "r")], capsys)
    assert (code, out) == (EXIT_CONFIG, "")
    assert err == [f"Error: {REPORT_EXTRA_HINT}"] and "pip install 'telco-churn-stream[report]'" in err[0]


def test_a_file_where_the_folder_should_be_is_one_line_exit_3(
    store: ModelStore, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "taken").write_text("")
    code, _, err = run_cli(["--store", str(store.root), "report", "--out", str(tmp_path / "taken")], capsys)
    assert code == EXIT_CONFIG
    assert len(err) == 1 and err[0].startswith(f"Error: cannot write the report into {tmp_path / 'taken'}")


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"labels": [0, 2]}, "labels is not a list of 0 and 1"),
        ({"labels": [True, False]}, "labels is not a list of 0 and 1"),
        ({"probabilities": [0.5, 1.5]}, "probabilities is not a list of numbers in [0, 1]"),
        ({"keys": ["a", 7]}, "keys is not a list of strings"),
        ({"keys": ["a"]}, "1 keys, 2 labels, 2 probabilities"),
    ],
)
def test_a_malformed_holdout_is_refused_even_when_its_card_records_it(
    tmp_path: Path, change: dict[str, Any], problem: str
) -> None:
    """The sha256 says the file is the card's; its shape must still hold (a card can be written by hand)."""
    store = ModelStore(tmp_path)
    (tmp_path / "v1").mkdir()
    holdout = {"keys": ["a", "b"], "labels": [0, 1], "probabilities": [0.25, 0.75], **change}
    payload = json_bytes(holdout)
    card = {"model_version": "v1", "holdout": {"sha256": hashlib.sha256(payload).hexdigest()}}
    (tmp_path / "v1" / HOLDOUT_FILE).write_bytes(payload)
    (tmp_path / "v1" / CARD_FILE).write_text(json.dumps(card))
    with pytest.raises(ModelIntegrityError, match=re.escape(f"v1's {HOLDOUT_FILE} is malformed: {problem}")):
        load_holdout(store, "v1", "test")

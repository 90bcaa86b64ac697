"""The picture of a model and its page (``churn-model report``): what a reviewer and a retention team read.

From a store version's card and its holdout (churnstream.ml.holdout: the test rows, never used to fit
the model nor to choose its threshold), :func:`write_report` writes two files:

* ``model.png``, four panels: the ROC curve with its AUC and the threshold's point (scikit-learn's
  ``RocCurveDisplay``); the reliability diagram, ten equal-width bins (``CalibrationDisplay``); the
  cumulative gains of a call list, highest risk first, with the top 10/20/30 % and their lift; the
  score histograms of churners and stayers, mirrored, with the threshold and the risk bands' cuts;
* ``model.md``, the card's figures in tables (the threshold and its rule, calibration, Brier,
  reliability bins, lift, the bands and how many holdout customers fall in each, the reasons'
  method, the training data and its split), with the picture.

Off the consumer's path: matplotlib (the ``report`` extra) is imported only to draw.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from churnstream.files import write_bytes_atomically
from churnstream.ml.evaluation import LIFT_AT, RELIABILITY_BINS, Bands, brier_score, gains_curve, lift_table
from churnstream.ml.holdout import Holdout
from churnstream.ml.model import MODEL_KIND_IMPORTED
from churnstream.ml.store import HOLDOUT_FILE
from churnstream.plotting import pyplot

PICTURE_FILE = "model.png"
PAGE_FILE = "model.md"
FIGURE_SIZE = (13.0, 10.0)  # inches, at DPI: 1300 x 1000 pixels
DPI = 100
HISTOGRAM_BINS = 20  # of [0, 1]: 0.05 wide
CHURNERS, STAYERS = "tab:red", "tab:blue"
BAND_TINTS = ("#fde0dd", "#fcecea", "#f4f4f4", "#ffffff")  # highest band first; more bands reuse the last
BAND_LABEL_GAP = 0.14  # two band names closer than this (in probability) go on different rows
BAND_NAME_ROW = 0.1  # the height of a row of band names (two lines), as a share of the panel's


@dataclass(frozen=True)
class ReportFiles:
    picture: Path
    page: Path


@dataclass(frozen=True)
class BandCount:
    """A risk band as the holdout fills it."""

    name: str
    min_probability: float
    customers: int
    churners: int


def band_counts(bands: Bands, holdout: Holdout) -> list[BandCount]:
    """How many holdout customers (and churners) each band holds, highest band first."""
    names = np.asarray(bands.bands_of(holdout.probabilities), dtype=object)
    return [
        BandCount(name, cut, int((names == name).sum()), int(holdout.labels[names == name].sum()))
        for name, cut in zip(bands.names, bands.cuts, strict=True)
    ]


def _bands(card: dict[str, Any]) -> Bands | None:
    try:
        return Bands.from_card(card.get("risk_bands"))
    except ValueError:
        return None


def _title(card: dict[str, Any], holdout: Holdout) -> str:
    return (
        f"{card.get('model_version', holdout.version)} ({card.get('model_kind') or 'trained'}): "
        f"{holdout.rows:,} holdout customers, {holdout.labels.mean():.1%} churned"
    )


# ---------------------------------------------------------------------------------------------- picture


def _panel_roc(axis: Any, holdout: Holdout, threshold: float) -> None:
    from sklearn.metrics import RocCurveDisplay  # noqa: PLC0415 - scikit-learn's plotting: only to draw

    y, p = holdout.labels, holdout.probabilities
    RocCurveDisplay.from_predictions(
        y, p, name="model", ax=axis, plot_chance_level=True, curve_kwargs={"color": "tab:purple", "linewidth": 2}
    )
    flagged = p >= threshold
    recall = (flagged & (y == 1)).sum() / max(int(y.sum()), 1)
    false_alarms = (flagged & (y == 0)).sum() / max(int((y == 0).sum()), 1)
    axis.plot([false_alarms], [recall], "o", color="black", markersize=8)
    axis.annotate(
        f"threshold {threshold:.3f}:\n{recall:.0%} of churners and\n{false_alarms:.0%} of stayers flagged",
        (false_alarms, recall), xytext=(14, -10), textcoords="offset points", ha="left", va="top", fontsize=10,
        bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.8, "pad": 1},
    )  # fmt: skip
    axis.set_title("ROC curve", fontsize=12)
    axis.set_xlabel("false positive rate (share of stayers flagged)", fontsize=10)
    axis.set_ylabel("true positive rate (share of churners flagged)", fontsize=10)
    axis.legend(loc="lower right", fontsize=9)


def _panel_reliability(axis: Any, card: dict[str, Any], holdout: Holdout) -> None:
    from sklearn.calibration import CalibrationDisplay  # noqa: PLC0415 - scikit-learn's plotting: only to draw

    CalibrationDisplay.from_predictions(
        holdout.labels, holdout.probabilities, n_bins=RELIABILITY_BINS, strategy="uniform", name="model", ax=axis,
        color="tab:purple", linewidth=2, markersize=7,
    )  # fmt: skip
    calibration = card.get("calibration")
    method = calibration.get("method") if isinstance(calibration, dict) else None
    brier = brier_score(holdout.labels, holdout.probabilities)
    axis.set_title(
        f"Reliability, {RELIABILITY_BINS} bins ({f'calibrated: {method}' if method else 'not calibrated'}), "
        f"Brier {brier:.3f}",
        fontsize=12,
    )
    axis.set_xlabel("mean predicted probability of the bin", fontsize=10)
    axis.set_ylabel("observed churn rate of the bin", fontsize=10)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1)
    axis.legend(loc="upper left", fontsize=9)


def _panel_gains(axis: Any, holdout: Holdout) -> None:
    y, p = holdout.labels, holdout.probabilities
    curve = gains_curve(y, p)
    base_rate = float(y.mean())
    axis.plot(curve["share"], curve["gain"], color="tab:purple", linewidth=2, label="model: highest risk first")
    perfect = {"color": "tab:gray", "linewidth": 1, "linestyle": "--", "label": "perfect: every churner first"}
    axis.plot([0, base_rate, 1], [0, 1, 1], **perfect)
    axis.plot([0, 1], [0, 1], color="black", linewidth=1, linestyle=":", label="random order")
    rows = lift_table(y, p, LIFT_AT)
    shares = [row["customers"] / holdout.rows for row in rows]
    gains = [row["cumulative_gain"] or 0.0 for row in rows]
    axis.plot(shares, gains, "o", color="black", markersize=7)
    for share, gain in zip(shares, gains, strict=True):
        axis.vlines(share, 0, gain, color="black", linewidth=0.6, linestyle=":")
    lines = [
        f"top {row['top']:.0%}: {row['cumulative_gain'] or 0:.0%} of churners, lift {row['lift'] or 0:.2f}"
        for row in rows
    ]
    axis.text(
        0.97, 0.05, "\n".join(lines), transform=axis.transAxes, ha="right", va="bottom", fontsize=10,
        bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"},
    )  # fmt: skip
    axis.set_xticks([0, *shares, 0.5, 0.75, 1], ["0", *(f"{s:.0%}" for s in LIFT_AT), "50%", "75%", "100%"])
    axis.set_yticks(np.linspace(0, 1, 5), [f"{v:.0%}" for v in np.linspace(0, 1, 5)])
    axis.set_title("Cumulative gains: calling customers by risk", fontsize=12)
    axis.set_xlabel("share of customers called, highest risk first", fontsize=10)
    axis.set_ylabel("share of all churners reached", fontsize=10)
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.legend(loc="lower right", bbox_to_anchor=(0.97, 0.27), fontsize=9)  # over the lift, under the diagonal


def _band_rows(centres: list[float]) -> list[int]:
    """A row for each band name (centres ascending) so that two names on one row are BAND_LABEL_GAP apart."""
    last: list[float] = []  # the centre of the last name on each row
    rows = []
    for centre in centres:
        row = next((i for i, x in enumerate(last) if centre - x >= BAND_LABEL_GAP), len(last))
        if row == len(last):
            last.append(centre)
        else:
            last[row] = centre
        rows.append(row)
    return rows


def _band_names(axis: Any, bands: Bands | None) -> int:
    """Shade each band, dash its cut, and name it at the top of the panel; returns the rows of names used."""
    if bands is None:
        return 0
    uppers = (1.0, *bands.cuts[:-1])
    spans = [(n, lo, hi) for n, lo, hi in zip(bands.names, bands.cuts, uppers, strict=True) if hi > lo]
    tints = {name: BAND_TINTS[min(index, len(BAND_TINTS) - 1)] for index, (name, _, _) in enumerate(spans)}
    for name, low, high in spans:
        axis.axvspan(low, high, color=tints[name], zorder=0)
        if low > 0:
            axis.axvline(low, color="0.35", linewidth=1, linestyle="--", zorder=1)
    ordered = sorted(spans, key=lambda span: span[1])
    centres = [(low + high) / 2 for _, low, high in ordered]
    rows = _band_rows(centres)
    for (name, low, _), centre, row in zip(ordered, centres, rows, strict=True):
        axis.text(centre, 0.98 - BAND_NAME_ROW * row, f"{name}\n≥ {low:.3f}" if low > 0 else name,
                  transform=axis.get_xaxis_transform(), ha="center", va="top", fontsize=9, color="0.2", zorder=5,
                  bbox={"facecolor": tints[name], "edgecolor": "none", "pad": 1})  # fmt: skip
    return max(rows, default=-1) + 1


def _panel_histograms(axis: Any, card: dict[str, Any], holdout: Holdout, threshold: float) -> None:
    from matplotlib.ticker import FuncFormatter  # noqa: PLC0415 - the report extra

    edges = np.linspace(0, 1, HISTOGRAM_BINS + 1)
    groups = []
    for label, name, colour, sign in ((0, "stayers, up", STAYERS, 1), (1, "churners, down", CHURNERS, -1)):
        scores = holdout.probabilities[holdout.labels == label]
        share = np.histogram(scores, bins=edges)[0] / max(scores.size, 1)
        groups.append(share)
        axis.stairs(sign * share, edges, fill=True, color=colour, alpha=0.75, label=f"{name} ({scores.size:,})")
    axis.axhline(0, color="black", linewidth=0.8)
    top, bottom = (float(max(group.max(), 0.01)) for group in groups)
    label_rows = _band_names(axis, _bands(card))
    names_area = BAND_NAME_ROW * label_rows + 0.03  # of the axes' height, above the stayers' highest bar
    bottom *= 1.15
    axis.set_ylim(-bottom, (top + bottom) / (1 - names_area) - bottom)
    axis.axvline(threshold, color="black", linewidth=2, label=f"threshold {threshold:.3f}")
    axis.plot([], [], color="0.35", linewidth=1, linestyle="--", label="risk band cut")
    axis.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{abs(value):.0%}"))
    axis.set_xlim(0, 1)
    axis.set_title("Scores: stayers up, churners down, risk bands shaded", fontsize=12)
    axis.set_xlabel("churn probability", fontsize=10)
    axis.set_ylabel(f"share of the group per {1 / HISTOGRAM_BINS:g} of probability", fontsize=10)
    axis.legend(loc="upper right", bbox_to_anchor=(1.0, 1 - names_area), fontsize=9)  # under the names


def draw(card: dict[str, Any], holdout: Holdout) -> Any:
    """The report's figure (a matplotlib Figure; the caller saves and closes it)."""
    plt = pyplot()
    threshold = float(card["threshold"])
    figure, axes = plt.subplots(2, 2, figsize=FIGURE_SIZE, layout="constrained")
    _panel_roc(axes[0][0], holdout, threshold)
    _panel_reliability(axes[0][1], card, holdout)
    _panel_gains(axes[1][0], holdout)
    _panel_histograms(axes[1][1], card, holdout, threshold)
    for axis in axes.flat:
        axis.tick_params(labelsize=9)
    figure.suptitle(_title(card, holdout), fontsize=14)
    return figure


def picture_bytes(card: dict[str, Any], holdout: Holdout) -> bytes:
    plt = pyplot()
    figure = draw(card, holdout)
    try:
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", dpi=DPI)
    finally:
        plt.close(figure)
    return buffer.getvalue()


# ------------------------------------------------------------------------------------------------- page


def _number(value: Any, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _count(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else "-"


def _option(value: Any) -> str:
    return "none" if value is None else str(value)


def _share(value: Any) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return [*lines, ""]


def _dict(card: dict[str, Any], key: str) -> dict[str, Any]:
    value = card.get(key)
    return value if isinstance(value, dict) else {}


def _threshold_section(card: dict[str, Any]) -> list[str]:
    metrics, evaluation = _dict(card, "metrics"), _dict(card, "evaluation")
    at = evaluation.get("at_threshold") if isinstance(evaluation.get("at_threshold"), dict) else {}
    rule, validation = _dict(card, "threshold_rule"), _dict(card, "validation")
    rule_text = str(rule.get("rule") or "fixed")
    if rule.get("cost_ratio") is not None:
        rule_text += f" (cost ratio {rule['cost_ratio']:g}: a missed churner costs {rule['cost_ratio']:g} false alarms)"
    lines = ["## At the threshold", ""]
    lines += _table(
        ("threshold", "flagged", "precision", "recall", "F1", "accuracy", "ROC-AUC"),
        [(_number(card.get("threshold")), at.get("flagged", "-"), _number(metrics.get("precision")),
          _number(metrics.get("recall")), _number(metrics.get("f1")), _number(metrics.get("accuracy")),
          _number(metrics.get("roc_auc")))],
    )  # fmt: skip
    lines += [
        f"The threshold rule: **{rule_text}**, chosen on the {_count(validation.get('rows'))} validation rows "
        f"(there: precision {_number(validation.get('precision'))}, recall {_number(validation.get('recall'))}, "
        f"F1 {_number(validation.get('f1'))}"
        + (f", expected cost {_number(validation['expected_cost'], 1)}" if validation.get("expected_cost") else "")
        + "). A customer is flagged (`prediction` Yes) at a churn probability at or above it.",
        "",
    ]
    return lines


def _calibration_section(card: dict[str, Any]) -> list[str]:
    evaluation = _dict(card, "evaluation")
    calibration = _dict(card, "calibration")
    method = calibration.get("method")
    how = (
        f"{method} (a map fitted on the validation rows: the published probabilities are the calibrated ones)"
        if method
        else "none (the published probabilities are the estimator's own)"
    )
    lines = ["## Calibration", "", f"Calibration: {how}. Brier score: **{_number(evaluation.get('brier_score'))}** "
             "(the mean squared error of the probabilities; 0 is perfect).", ""]  # fmt: skip
    bins = [entry for entry in evaluation.get("reliability") or [] if isinstance(entry, dict)]
    lines += _table(
        ("probability", "customers", "mean predicted", "observed churn rate"),
        [(f"{_number(b.get('low'), 1)} - {_number(b.get('high'), 1)}", b.get("count", "-"),
          _number(b.get("mean_predicted"), 3), _number(b.get("observed_rate"), 3)) for b in bins],
    )  # fmt: skip
    return lines


def _lift_section(card: dict[str, Any]) -> list[str]:
    rows = [row for row in _dict(card, "evaluation").get("lift") or [] if isinstance(row, dict)]
    lines = ["## Lift: calling the highest risk first", ""]
    lines += _table(
        ("top", "customers", "churners", "share of all churners", "lift"),
        [(_share(r.get("top")), r.get("customers", "-"), r.get("churners", "-"), _share(r.get("cumulative_gain")),
          _number(r.get("lift"), 2)) for r in rows],
    )  # fmt: skip
    lines += ["Lift: the churn rate of those called, in multiples of the base rate.", ""]
    return lines


def _bands_section(card: dict[str, Any], holdout: Holdout) -> list[str]:
    bands = _bands(card)
    if bands is None:
        return ["## Risk bands", "", "The card has no usable risk bands.", ""]
    lines = ["## Risk bands", ""]
    lines += _table(
        ("band", "probability from", "holdout customers", "churners", "churn rate"),
        [(b.name, _number(b.min_probability), b.customers, b.churners,
          _share(b.churners / b.customers) if b.customers else "-") for b in band_counts(bands, holdout)],
    )  # fmt: skip
    if card.get("risk_band_rule"):
        lines += [f"How the bands were cut: {card['risk_band_rule']}.", ""]
    return lines


def _reasons_section(card: dict[str, Any]) -> list[str]:
    reasons = _dict(card, "reasons")
    method = reasons.get("method") or "none"
    about = f": {reasons['about']}" if reasons.get("about") else ""
    return ["## Reasons", "", f"Each prediction's reasons come from the **{method}** method{about}.", ""]


def _data_section(card: dict[str, Any], holdout: Holdout) -> list[str]:
    data, split, metrics = _dict(card, "training_data"), _dict(card, "split"), _dict(card, "metrics")
    label = _dict(card, "label")
    options = _dict(card, "training_options")
    imported = card.get("model_kind") == MODEL_KIND_IMPORTED
    lines = ["## The data it was imported with, and its split" if imported else "## Training data and split", ""]
    lines += _table(
        ("file", "rows", "sha256", "label"),
        [(f"`{data.get('file', '-')}`", data.get("rows", "-"), f"`{data.get('sha256', '-')}`",
          f"`{label.get('column', '-')}` = `{label.get('positive', '-')}`")],
    )  # fmt: skip
    lines += _table(
        ("fit rows", "validation rows", "test rows (the holdout)", "stratified", "random_state"),
        [(metrics.get("train_rows", "-"), metrics.get("validation_rows", "-"), metrics.get("test_rows", holdout.rows),
          split.get("stratified", "-"), split.get("random_state", "-"))],
    )  # fmt: skip
    if split.get("method"):
        lines += [f"The split: {split['method']}.", ""]
    lines += [f"Estimator: {card.get('estimator', '-')}."]
    if options:
        lines += ["Training options: " + ", ".join(f"{key} {_option(value)}" for key, value in options.items()) + "."]
    lines += [
        f"scikit-learn {card.get('sklearn_version', '-')}, numpy {card.get('numpy_version', '-')}, "
        f"pandas {card.get('pandas_version', '-')}, Python {card.get('python_version', '-')}.",
        "",
    ]
    return lines


def page(card: dict[str, Any], holdout: Holdout, picture_name: str = PICTURE_FILE) -> str:
    """The Markdown page: the card's figures in tables, the picture embedded."""
    data = _dict(card, "training_data")
    recorded = _dict(card, "holdout")
    version = card.get("model_version", holdout.version)
    kind = card.get("model_kind") or "trained"
    never = (
        "never used to choose its threshold, risk bands or calibration (it was fitted elsewhere: these figures are "
        "honest only if it never saw these rows)"
        if kind == MODEL_KIND_IMPORTED
        else "never used to fit the model nor to choose its threshold, risk bands or calibration"
    )
    lines = [
        f"# Model {version}",
        "",
        f"Kind: **{kind}**; added to the store at {card.get('trained_at', '-')}. "
        f"**Every figure on this page is the holdout's**: the {holdout.rows:,} test rows of "
        f"`{data.get('file', '-')}` ({HOLDOUT_FILE}, sha256 `{str(recorded.get('sha256', '-'))[:16]}...`), {never}.",
        "",
        f"![{version}: ROC curve, reliability, cumulative gains, score histograms]({picture_name})",
        "",
    ]
    for section in (
        _threshold_section(card),
        _calibration_section(card),
        _lift_section(card),
        _bands_section(card, holdout),
        _reasons_section(card),
        _data_section(card, holdout),
    ):
        lines += section
    return "\n".join(lines).rstrip() + "\n"


def write_report(card: dict[str, Any], holdout: Holdout, out_dir: Path) -> ReportFiles:
    """Write PICTURE_FILE and PAGE_FILE into ``out_dir`` (created if needed), each whole or not at all."""
    files = ReportFiles(out_dir / PICTURE_FILE, out_dir / PAGE_FILE)
    out_dir.mkdir(parents=True, exist_ok=True)  # before drawing: a file in the way fails at once
    write_bytes_atomically(files.picture, picture_bytes(card, holdout))
    write_bytes_atomically(files.page, page(card, holdout, files.picture.name).encode())
    return files

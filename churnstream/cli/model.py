"""``churn-model`` / ``python -m churnstream.cli.model``: the model store's versions, which one is current,
and how a shadow model's predictions compare with the main model's."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from churnstream.cli.common import (
    add_logging_options,
    make_parser,
    positive_number,
    probability,
    run,
    setup_logging,
)
from churnstream.cli.connection import add_connection_options, load_settings_with
from churnstream.contract.outputs import MalformedOutput, Prediction, decode_prediction
from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing, TopicMissing
from churnstream.kafka.reading import READ_TIMEOUT_S
from churnstream.ml.calibration import METHODS as CALIBRATION_METHODS
from churnstream.ml.dataset import DATASET_LABEL
from churnstream.ml.store import ModelStore
from churnstream.settings import ENV_MODEL_STORE, Settings, load_settings

if TYPE_CHECKING:
    from churnstream.ml.holdout import Holdout

logger = logging.getLogger(__name__)

PROG = "python -m churnstream.cli.model"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "List the model store's versions, choose the current one (consumers pick it up between batches),\n"
        "import a model trained elsewhere, and compare a shadow model's predictions with the main model's.",
        epilog="Examples:\n"
        "  churn-model list\n"
        "  churn-model import pipeline.pkl --schema my.schema.json --data holdout.csv --label churned --promote\n"
        "  churn-model promote logreg-0123456789ab\n"
        "  churn-model rollback\n"
        "  churn-model report --out results/model\n"
        "  churn-model compare --data data/WA_Fn-UseC_-Telco-Customer-Churn.csv",
    )
    parser.add_argument("--store", type=Path, help=f"the model store folder (default: {ENV_MODEL_STORE}, else models/)")
    add_logging_options(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.add_parser("list", help="every version, oldest first, with its threshold and test metrics; * = current")
    sub = commands.add_parser("promote", help="check a version (hash, card, canaries) and make it current")
    sub.add_argument("version", metavar="VERSION", help="a version folder of the store (see list)")
    commands.add_parser("rollback", help="check and make current the version that was current before this one")
    sub = commands.add_parser(
        "import",
        help="add a fitted scikit-learn-compatible estimator (a pickle) as a version, checked on labelled data",
        description="Add a model trained elsewhere (a notebook): any fitted estimator whose predict_proba takes a "
        "DataFrame of the schema's feature columns. It is checked and measured on --data, read through the schema: "
        "the threshold (max F1 on a validation split, or --threshold), the test split's metrics, canary rows, all in "
        "its card. Use data the model was not trained on, or the metrics flatter it. A pickle runs code when it is "
        "loaded: import only files you trust. docs/howto/own-model.md walks through it.",
    )
    sub.add_argument("pickle", type=Path, metavar="PIPELINE.pkl", help="the fitted estimator (pickle or joblib file)")
    sub.add_argument("--schema", type=Path, metavar="FILE", help="its event schema (default: EVENT_SCHEMA)")
    sub.add_argument("--data", type=Path, required=True, metavar="CSV", help="labelled rows to check and measure it on")
    sub.add_argument("--label", required=True, metavar="COLUMN", help="the CSV column that says who churned")
    sub.add_argument(
        "--positive", metavar="VALUE", help="the label's churn value (default: 1, Yes or true, whichever it holds)"
    )
    sub.add_argument(
        "--threshold", type=probability, metavar="P", help="predict churn at p >= P (default: max F1 on validation)"
    )
    sub.add_argument(
        "--calibrate",
        choices=CALIBRATION_METHODS,
        help="publish calibrated probabilities: a sigmoid or isotonic map fitted on the validation half "
        "(default: the estimator's own probabilities)",
    )
    sub.add_argument(
        "--reasons",
        choices=("on", "off"),
        default="on",
        help="on (default): each prediction names up to three features that raise its risk, by occlusion (one "
        "more stacked predict_proba per batch); off: reasons null, for an estimator too slow for that",
    )
    sub.add_argument("--name", metavar="NAME", help="the version's name before its hash (default: imported)")
    sub.add_argument("--promote", action="store_true", help="make it current once it is in the store")
    commands.add_parser(
        "migrate", help="move the single-file layout (models/sklearn_pipeline.pkl) into the store (make model runs it)"
    )
    sub = commands.add_parser(
        "report",
        help="draw a version (ROC, reliability, gains, score histograms) and write its card's figures as Markdown",
        description="Write DIR/model.png (the ROC curve, the reliability diagram, the cumulative gains with the top "
        "10/20/30 % and their lift, the score histograms of churners and stayers with the threshold and the risk "
        "bands) and DIR/model.md (the card's figures in tables, the picture embedded), all measured on the "
        "version's holdout: its test rows, never used to fit it nor to choose its threshold. Needs matplotlib "
        "(the report extra).",
    )
    sub.add_argument("version", nargs="?", metavar="VERSION", help="a version of the store (default: the current one)")
    sub.add_argument("--out", type=Path, required=True, metavar="DIR", help="the folder to write the two files into")
    sub = commands.add_parser(
        "compare",
        help="join the main and shadow prediction topics by event_id and report how the two models differ",
        description="Read both topics to their end (read_committed), join them by event_id, and print the agreement "
        "of the decisions, the mean and p99 of |dp|, and each model's ROC-AUC, precision and recall on the matched "
        "events whose key is a test row of both versions (their holdouts: rows neither was fitted or tuned on), "
        "labelled by the holdouts, or by --data. The other events are counted, never judged.",
    )
    sub.add_argument("--main-topic", metavar="TOPIC", help="default: KAFKA_TOPIC_PREDICTIONS")
    sub.add_argument("--shadow-topic", metavar="TOPIC", help="default: KAFKA_TOPIC_PREDICTIONS_SHADOW")
    sub.add_argument("--main-version", metavar="VERSION", help="only the main predictions of this version")
    sub.add_argument("--shadow-version", metavar="VERSION", help="only the shadow predictions of this version")
    sub.add_argument(
        "--data",
        type=Path,
        metavar="CSV",
        help="label the events from this CSV (its label column, by key, read as the current card says) instead of "
        "the holdouts: outcomes recorded since training; refused when a version has no holdout",
    )
    sub.add_argument(
        "--timeout-s",
        type=positive_number,
        default=READ_TIMEOUT_S,
        metavar="S",
        help=f"give up when a topic cannot be read to its end in S seconds (default {READ_TIMEOUT_S:.0f})",
    )
    add_connection_options(sub)
    return parser


def format_versions(store: ModelStore) -> str:
    versions = store.versions()
    if not versions:
        return f"no model versions in {store.root}; run 'make model'"
    current = store.current()
    header = ("", "VERSION", "TRAINED_AT", "THRESHOLD", "RULE", "ROC_AUC", "PRECISION", "RECALL")
    rows: list[tuple[str, ...]] = [header]
    for version in versions:
        mark = "*" if version == current else ""
        try:
            rows.append((mark, version, *_card_columns(store.card(version))))
        except (ModelMissing, ModelIntegrityError) as exc:
            logger.warning("%s", exc)
            rows.append((mark, version, "-", "-", "(no usable card)", "-", "-", "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(line.rstrip() for line in lines)


def _card_columns(card: dict[str, Any]) -> tuple[str, ...]:
    metrics = card.get("metrics") if isinstance(card.get("metrics"), dict) else {}
    rule = card.get("threshold_rule") if isinstance(card.get("threshold_rule"), dict) else {}
    rule_text = str(rule.get("rule") or "fixed")
    if rule.get("cost_ratio") is not None:
        rule_text += f"(C={rule['cost_ratio']:g})"

    def number(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, int | float) and not isinstance(value, bool) else "-"

    return (
        str(card.get("trained_at") or "-"),
        number(card.get("threshold")),
        rule_text,
        number(metrics.get("roc_auc")),
        number(metrics.get("precision")),
        number(metrics.get("recall")),
    )


def verify_version(store: ModelStore, version: str) -> None:
    """Load a version as a consumer would (hash, card, canaries) before making it current (the store
    calls it under its lock: what becomes current is what was checked)."""
    from churnstream.ml.model import load_model  # noqa: PLC0415 - scikit-learn's import is slow

    load_model(*store.paths(version))


def read_predictions(settings: Settings, topic: str, timeout_s: float) -> list[Prediction]:
    """Every committed prediction on ``topic``; a malformed record is counted and skipped."""
    from churnstream.kafka.reading import read_all  # noqa: PLC0415 - kafka-python: only compare needs it

    predictions: list[Prediction] = []
    malformed = 0
    for record in read_all(settings, topic, client_id="churn-model-compare", timeout_s=timeout_s):
        try:
            predictions.append(decode_prediction(record.value))
        except MalformedOutput:
            malformed += 1
    if malformed:
        logger.warning("skipped %d malformed record(s) on %s", malformed, topic)
    return predictions


def _import(args: argparse.Namespace, settings: Settings, store: ModelStore) -> str:
    """churn-model import: checked and measured on the data, added to the store, promoted if asked."""
    from churnstream.cli.train import format_training  # noqa: PLC0415
    from churnstream.contract.events import load_contract  # noqa: PLC0415
    from churnstream.ml.importing import import_model  # noqa: PLC0415 - scikit-learn's import is slow

    contract = load_contract(args.schema or settings.schema_path)
    imported = import_model(
        args.pickle,
        contract,
        args.data,
        args.label,
        positive=args.positive,
        threshold=args.threshold,
        calibrate=args.calibrate,
        name=args.name,
        reasons=args.reasons == "on",
    )
    existed = imported.version in store.versions()
    store.add(imported.model_bytes, imported.card, holdout=imported.holdout)
    lines = [format_training(imported.card, already=existed).replace("trained:", "imported:", 1)]
    if args.promote:
        previous = store.promote(imported.version, check=lambda version: verify_version(store, version))
        lines.append(f"current: {imported.version} (was {previous or 'none'})")
    else:
        lines.append(f"current: {store.current()} (unchanged; make it current: churn-model promote {imported.version})")
    return "\n".join(lines)


def _labels(csv_path: Path, store: ModelStore) -> dict[str, int]:
    """The CSV's labels by key, read as the current model was trained: its key field, label column and
    churn value (the card's ``key_field`` and ``label``)."""
    from churnstream.ml.compare import load_labels  # noqa: PLC0415

    current = store.current()
    card = store.card(current) if current is not None else {}
    label = card.get("label") if isinstance(card.get("label"), dict) else {}
    return load_labels(
        csv_path,
        str(card.get("key_field") or "customerID"),
        str(label.get("column") or DATASET_LABEL),
        label.get("positive"),
    )


def _holdouts(store: ModelStore, versions: set[str]) -> dict[str, Holdout]:
    """The holdout of each version that has one in the store (compare judges only on those)."""
    from churnstream.ml.holdout import load_holdout  # noqa: PLC0415

    holdouts = {}
    for version in sorted(versions):
        try:
            holdouts[version] = load_holdout(store, version, "judge it on its test rows")
        except (ConfigError, ModelMissing) as exc:  # not in this store, or made before holdouts
            logger.debug("%s", exc)
    return holdouts


def _compare(args: argparse.Namespace, settings: Settings, store: ModelStore) -> str:
    # scikit-learn and kafka-python: imported for compare only
    from churnstream.kafka.clients import make_admin  # noqa: PLC0415
    from churnstream.kafka.diagnosis import kafka_errors_translated  # noqa: PLC0415
    from churnstream.kafka.topics import require_topics  # noqa: PLC0415
    from churnstream.ml.compare import compare, format_comparison, labels_over  # noqa: PLC0415

    for version in (args.main_version, args.shadow_version):
        if version is not None:
            store.paths(version)  # ConfigError (exit 3) for a version the store does not know
    main_topic = args.main_topic or settings.topic_predictions
    shadow_topic = args.shadow_topic or settings.topic_predictions_shadow
    outcomes = _labels(args.data, store) if args.data else None
    admin = make_admin(settings, "churn-model-compare")
    try:
        require_topics(admin, settings, [main_topic, shadow_topic])
    except TopicMissing:
        with kafka_errors_translated(settings):
            missing = sorted({main_topic, shadow_topic} - set(admin.list_topics()))
        raise TopicMissing(
            f"topic(s) {', '.join(missing)} do not exist on {settings.bootstrap_servers}; predictions are written by "
            "churn-consumer, shadow predictions by churn-consumer --shadow-model VERSION"
        ) from None
    finally:
        admin.close()
    main = read_predictions(settings, main_topic, args.timeout_s)
    shadow = read_predictions(settings, shadow_topic, args.timeout_s)
    if args.main_version:
        main = [p for p in main if p.model_version == args.main_version]
    if args.shadow_version:
        shadow = [p for p in shadow if p.model_version == args.shadow_version]
    holdouts = _holdouts(store, {p.model_version for p in (*main, *shadow)})
    comparison = compare(main, shadow, labels_over(holdouts, outcomes, str(args.data)))
    if args.data and comparison.unjudged_versions:
        raise ModelMissing(
            f"cannot judge on --data: {', '.join(comparison.unjudged_versions)} has no holdout in the store "
            f"{store.root} (made by an older release, or not in this store), so its training rows cannot be told "
            "apart: retrain it, or leave its predictions out with --main-version/--shadow-version"
        )
    header = f"main topic: {main_topic}\nshadow topic: {shadow_topic}"
    return header + "\n" + format_comparison(comparison)


def _report(args: argparse.Namespace, store: ModelStore) -> str:
    """churn-model report: the version's picture and page, from its card and its holdout."""
    from churnstream.ml.holdout import load_holdout  # noqa: PLC0415
    from churnstream.ml.report import write_report  # noqa: PLC0415 - scikit-learn and matplotlib: only to draw

    version = args.version or store.require_current()
    card = store.card(version)  # ConfigError (exit 3) for a version the store does not know
    holdout = load_holdout(store, version, "get its report", card)
    try:
        files = write_report(card, holdout, args.out)
    except OSError as exc:
        raise ConfigError(f"cannot write the report into {args.out}: {exc.strerror or exc}") from None
    return f"{files.picture}\n{files.page}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        settings = load_settings_with(args) if args.command == "compare" else load_settings()
        store = ModelStore(args.store or settings.model_store)
        if args.command == "list":
            print(format_versions(store))
        elif args.command == "promote":
            previous = store.promote(args.version, check=lambda version: verify_version(store, version))
            print(f"current: {args.version} (was {previous or 'none'})")
        elif args.command == "rollback":
            current = store.current()
            target = store.rollback(check=lambda version: verify_version(store, version))
            print(f"current: {target} (was {current or 'none'})")
        elif args.command == "import":
            print(_import(args, settings, store))
        elif args.command == "migrate":
            version = store.migrate_legacy()
            print(f"migrated the single-file model into {store.root / version}" if version else "nothing to migrate")
        elif args.command == "compare":
            print(_compare(args, settings, store))
        elif args.command == "report":
            print(_report(args, store))
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

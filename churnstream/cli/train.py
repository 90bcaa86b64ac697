"""``churn-train`` / ``python -m churnstream.train`` (``make model``): train a model version into the store,
on any CSV that fits an event schema (the Telco data set and schema by default).

A new version never replaces the current one unless asked (``--promote``), or unless the store has
no current version yet. ``--if-missing`` (the set-up) trains only when the store has no usable
current version, and then promotes what it trained.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from churnstream.cli.common import add_logging_options, make_parser, positive_number, run, setup_logging
from churnstream.errors import ConfigError, ModelIntegrityError, ModelMissing
from churnstream.ml.calibration import METHODS as CALIBRATION_METHODS
from churnstream.ml.dataset import DATASET_LABEL
from churnstream.ml.store import ModelStore
from churnstream.settings import ENV_MODEL_STORE, load_settings

logger = logging.getLogger(__name__)

PROG = "python -m churnstream.train"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "Train the project's churn model (one-hot and standardized features, logistic regression) on a CSV\n"
        "that fits an event schema, and add it to the model store as a new version (models/<version>/model.pkl\n"
        "and model_card.json, which carries the schema). The current version changes only with --promote,\n"
        "or when the store has none. A model trained elsewhere: churn-model import.",
        epilog="Examples:\n"
        "  python -m churnstream.train --promote\n"
        "  python -m churnstream.train --class-weight balanced --cost-ratio 3\n"
        "  churn-train --schema my.schema.json --data my.csv --label churned --positive 1 --promote\n"
        "  churn-model list",
    )
    data = parser.add_argument_group("the data (docs/howto/own-data.md)")
    data.add_argument(
        "--schema", type=Path, metavar="FILE", help="the event schema, a JSON Schema file (default: EVENT_SCHEMA)"
    )
    data.add_argument("--data", type=Path, metavar="CSV", help="training CSV (default: DATA_PATH)")
    data.add_argument(
        "--label", default=DATASET_LABEL, metavar="COLUMN", help=f"the CSV column that says who churned "
        f"(default: {DATASET_LABEL}); it must hold exactly two values"
    )  # fmt: skip
    data.add_argument(
        "--positive",
        metavar="VALUE",
        help="the label's value that means churn (default: 1, Yes or true, whichever the label holds)",
    )
    parser.add_argument("--store", type=Path, help=f"the model store folder (default: {ENV_MODEL_STORE}, else models/)")
    model = parser.add_argument_group("the model (each option gives another version name)")
    model.add_argument(
        "--C",
        dest="regularization",
        type=positive_number,
        default=1.0,
        metavar="FLOAT",
        help="LogisticRegression's inverse regularization strength C (default 1.0; smaller is simpler)",
    )
    model.add_argument(
        "--class-weight",
        choices=("balanced",),
        help="balanced: weigh churners by how rare they are (default: every row alike)",
    )
    model.add_argument(
        "--calibrate",
        choices=CALIBRATION_METHODS,
        help="publish calibrated probabilities: a sigmoid or isotonic map fitted on the validation split; the "
        "threshold and the risk bands are chosen after it (default: the model's own probabilities)",
    )
    model.add_argument(
        "--cost-ratio",
        type=positive_number,
        metavar="C",
        help="choose the threshold that minimises expected cost when a missed churner costs C false alarms "
        "(default: the threshold that maximises F1)",
    )
    which = parser.add_argument_group("the current version")
    which.add_argument("--promote", action="store_true", help="make the trained version current")
    which.add_argument(
        "--if-missing",
        action="store_true",
        help="do nothing when the store's current version passes its checks and has a card of this release; "
        "otherwise train and promote (what make model runs)",
    )
    add_logging_options(parser)
    return parser


def usable_current(store: ModelStore) -> dict[str, Any] | None:
    """The current version's card when it loads and has a card of this release, else None (logged why)."""
    from churnstream.ml.model import load_model  # noqa: PLC0415 - scikit-learn's import is slow
    from churnstream.ml.train import CARD_FORMAT  # noqa: PLC0415

    version = store.current()
    if version is None:
        logger.info("training, because the store %s has no current version", store.root)
        return None
    try:
        card = load_model(*store.paths(version)).card
    except (ConfigError, ModelMissing, ModelIntegrityError) as exc:  # ConfigError: its folder is gone
        logger.info("training, because the current version does not load: %s", exc)
        return None
    if card.get("card_format", 1) < CARD_FORMAT:
        logger.info(
            "training, because the current version %s has a card of an older release; it stays in the store",
            version,
        )
        return None
    return card


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        # scikit-learn's import takes seconds: not for --help
        from churnstream.contract.events import load_contract  # noqa: PLC0415
        from churnstream.ml.train import TrainOptions, train_into  # noqa: PLC0415

        settings = load_settings()
        store = ModelStore(args.store or settings.model_store)
        if args.if_missing:
            card = usable_current(store)
            if card is not None:
                print(f"model {card['model_version']} is current (test ROC-AUC {card['metrics']['roc_auc']:.4f})")
                return 0
        options = TrainOptions(args.regularization, args.class_weight, args.cost_ratio, args.calibrate)
        existed = set(store.versions())
        contract = load_contract(args.schema or settings.schema_path)
        trained = train_into(
            store, args.data or settings.data_path, contract, args.label, positive=args.positive, options=options
        )
        card, version = trained.card, trained.version
        print(format_training(card, already=version in existed))
        if args.promote or args.if_missing or store.current() is None:
            previous = store.promote(version)
            print(f"current: {version} (was {previous or 'none'})")
        else:
            print(f"current: {store.current()} (unchanged; make this one current: churn-model promote {version})")
        return 0

    return run(body)


def format_training(card: dict[str, Any], already: bool = False) -> str:
    rule = card["threshold_rule"]
    validation, metrics = card["validation"], card["metrics"]
    cost = f", cost ratio {rule['cost_ratio']:g}" if rule.get("cost_ratio") is not None else ""
    return "\n".join(
        [
            f"{'already in the store' if already else 'trained'}: {card['model_version']}",
            f"threshold: {card['threshold']:.6f} ({rule['rule']}{cost}; validation, {validation['rows']} rows: "
            f"precision {validation['precision']:.4f}, recall {validation['recall']:.4f}, f1 {validation['f1']:.4f})",
            f"test ({metrics['test_rows']} rows): ROC-AUC {metrics['roc_auc']:.4f}, "
            f"accuracy {metrics['accuracy']:.4f}, precision {metrics['precision']:.4f}, "
            f"recall {metrics['recall']:.4f}, f1 {metrics['f1']:.4f}",
        ]
    )


if __name__ == "__main__":
    raise SystemExit(main())

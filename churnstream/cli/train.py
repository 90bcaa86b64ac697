"""``python -m churnstream.train`` (``make model``): train the churn model and write it with its card."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from churnstream.cli.common import add_logging_options, make_parser, run, setup_logging
from churnstream.errors import ModelIntegrityError, ModelMissing
from churnstream.settings import load_settings

logger = logging.getLogger(__name__)

PROG = "python -m churnstream.train"


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser(
        PROG,
        "Train the churn model on the Telco CSV and write models/sklearn_pipeline.pkl and models/model_card.json.",
    )
    parser.add_argument("--data", type=Path, help="training CSV (default: DATA_PATH)")
    parser.add_argument("--model", type=Path, help="where to write the model (default: MODEL_PATH)")
    parser.add_argument(
        "--if-missing", action="store_true", help="do nothing when a model that passes its checks exists"
    )
    add_logging_options(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.verbose, args.quiet, args.log_format)

    def body() -> int:
        # scikit-learn's import takes seconds: not for --help
        from churnstream.ml.model import verify_model  # noqa: PLC0415
        from churnstream.ml.train import train  # noqa: PLC0415

        settings = load_settings()
        model_path = args.model or settings.model_path
        card_path = model_path.parent / "model_card.json"
        if args.if_missing:
            try:
                card = verify_model(model_path, card_path)
            except (ModelMissing, ModelIntegrityError) as exc:
                logger.info("training, because: %s", exc)
            else:
                print(f"model {card['model_version']} present (ROC-AUC {card['metrics']['roc_auc']:.4f})")
                return 0
        card = train(args.data or settings.data_path, model_path, card_path)
        print(
            f"trained {card['model_version']}: hold-out ROC-AUC {card['metrics']['roc_auc']:.4f}, "
            f"accuracy {card['metrics']['accuracy']:.4f} on {card['metrics']['test_rows']} rows -> {model_path}"
        )
        return 0

    return run(body)


if __name__ == "__main__":
    raise SystemExit(main())

"""What a data scientist's notebook does, outside this project: train a gradient-boosting pipeline on the
CSV with pandas and scikit-learn only, and pickle it (docs/howto/own-model.md).

    python examples/mobile/train_elsewhere.py --data data/mobile-train.csv --out mobile-gb.pkl

Nothing here imports churnstream: the project then takes the pickle as it is (churn-model import).
The pipeline reads a DataFrame with the schema's feature columns, as pandas.read_csv reads the CSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import joblib
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

CATEGORICAL = ["plan", "region"]
NUMERIC = ["months_active", "data_gb", "dropped_calls", "roaming", "support_tickets", "monthly_fee"]


def build() -> Pipeline:
    preprocess = ColumnTransformer(
        [
            ("categories", Pipeline([
                ("fill", SimpleImputer(strategy="constant", fill_value="unknown")),
                ("one_hot", OneHotEncoder(handle_unknown="ignore")),
            ]), CATEGORICAL),
            ("numbers", "passthrough", NUMERIC),
        ],
        sparse_threshold=0,
    )  # fmt: skip
    model = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08, max_leaf_nodes=15, random_state=0)
    return Pipeline([("preprocess", preprocess), ("model", model)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="the training CSV")
    parser.add_argument("--out", type=Path, required=True, help="where to write the pickle")
    args = parser.parse_args(argv)
    frame = pd.read_csv(args.data)
    pipeline = build().fit(frame[CATEGORICAL + NUMERIC], frame["churned"])
    joblib.dump(pipeline, args.out)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

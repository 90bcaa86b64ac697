"""The project's own model, scored straight from the validated tuples: a logistic regression's logit
as sums of coefficients, without the one-hot matrix, the DataFrame or scikit-learn's input checks.

For ``Pipeline([SchemaEncoder, LogisticRegression])`` the logit of a row is

    intercept + sum over string features of coef[the row's category]
              + sum over numeric features of coef * standardized value

which is what ``pipeline.predict_proba`` computes through a dense one-hot matrix (the sums run in
another order: the two agree to about 1e-16, and a model is checked against its canary rows when it
loads). Any other estimator (an imported pipeline) is scored by its own ``predict_proba``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from churnstream.ml.features import SchemaEncoder

Parts = tuple[np.ndarray, np.ndarray]  # each string feature's coefficient (blocks x rows), numeric terms (rows x k)


@dataclass(frozen=True)
class LinearModel:
    encoder: SchemaEncoder
    intercept: float
    # One flat array of the string features' coefficients, each block followed by a 0.0 that an
    # unknown or null category (code -1) lands on; block_starts[j] is where block j starts.
    category_weights: np.ndarray
    block_starts: np.ndarray
    block_ends: np.ndarray  # the index of each block's trailing 0.0
    numeric_weights: np.ndarray

    @classmethod
    def of(cls, pipeline: Any) -> LinearModel | None:
        """The linear parts of ``pipeline`` when it is the project's own kind of model, else None."""
        steps = getattr(pipeline, "steps", None)
        if not isinstance(steps, list) or len(steps) != 2:
            return None
        encoder, classifier = steps[0][1], steps[1][1]
        from sklearn.linear_model import LogisticRegression  # noqa: PLC0415 - loaded with the model anyway

        if type(encoder) is not SchemaEncoder or type(classifier) is not LogisticRegression:
            return None
        classes = getattr(classifier, "classes_", None)
        if classes is None or list(classes) != [0, 1] or classifier.coef_.shape[0] != 1:
            return None
        coef = np.asarray(classifier.coef_[0], dtype=float)
        widths = [len(categories) for categories in encoder.categories_.values()]
        weights: list[float] = []
        starts: list[int] = []
        offset = 0
        for width in widths:
            starts.append(len(weights))
            weights.extend(coef[offset : offset + width])
            weights.append(0.0)
            offset += width
        starts_array = np.asarray(starts, dtype=np.intp)
        return cls(
            encoder=encoder,
            intercept=float(classifier.intercept_[0]),
            category_weights=np.asarray(weights, dtype=float),
            block_starts=starts_array,
            block_ends=starts_array + np.asarray(widths, dtype=np.intp),
            numeric_weights=coef[offset:],
        )

    def parts(self, rows: Sequence[Sequence[Any]]) -> Parts:
        """Each string feature's coefficient (blocks x rows) and each numeric feature's term (rows x k)."""
        codes, numbers = self.encoder.codes(rows)
        if codes:
            stacked = np.vstack(codes)
            index = np.where(stacked < 0, self.block_ends[:, None], stacked + self.block_starts[:, None])
            categorical = self.category_weights[index]
        else:
            categorical = np.empty((0, len(rows)))
        numeric = self.encoder.standardized(numbers) * self.numeric_weights
        return categorical, numeric

    def logits(self, rows: Sequence[Sequence[Any]], parts: Parts | None = None) -> np.ndarray:
        categorical, numeric = parts if parts is not None else self.parts(rows)
        return self.intercept + categorical.sum(axis=0) + numeric.sum(axis=1)

    def predict_proba(self, rows: Sequence[Sequence[Any]], parts: Parts | None = None) -> np.ndarray:
        """The probability of the positive class, per row (what the pipeline's ``predict_proba[:, 1]`` is);
        from ``parts`` when the caller has them already (the reasons use the same)."""
        return expit(self.logits(rows, parts))

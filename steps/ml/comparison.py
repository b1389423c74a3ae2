"""What the evaluation report measures beyond the metrics: each metric's difference between the
challenger and the champion and which one it favours, the confusion matrix at the serving
threshold, and which raw features a model relies on (permutation importance).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from steps.ml.gate import NO_CHANGE_BELOW

SERVING_THRESHOLD = 0.5
"""The service labels a row 1 when its probability is >= this (``LABEL_THRESHOLD`` in
``serving/service.py``, documented on ``serving.schema.Prediction.label``)."""
HIGHER_IS_BETTER = {
    "roc_auc": True,
    "pr_auc": True,
    "accuracy": True,
    "log_loss": False,
    "brier": False,
}
"""Direction of each metric of :func:`steps.ml.metrics.classification_metrics`."""
IMPORTANCE_REPEATS = 5
IMPORTANCE_SEED = 0
IMPORTANCE_TOP = 15
IMPORTANCE_MAX_ROWS = 10_000
"""Rows drawn per repeat: bounds the cost (repeats x features x rows predictions)."""
IMPORTANCE_METHOD = (
    f"permutation importance on the held-out rows: drop in ROC AUC when one raw feature is "
    f"shuffled (mean and std of {IMPORTANCE_REPEATS} repeats, seed {IMPORTANCE_SEED}, at most "
    f"{IMPORTANCE_MAX_ROWS:,} rows per repeat; top {IMPORTANCE_TOP})"
)


class Confusion(BaseModel):
    """One model's labels at a threshold against the true labels."""

    model_config = ConfigDict(frozen=True)

    threshold: float
    true_positive: int
    false_positive: int
    false_negative: int
    true_negative: int
    precision: float | None
    """None when no row is labelled positive."""
    recall: float | None
    """None when no row is truly positive."""


class FeatureImportance(BaseModel):
    """How much a model's ROC AUC drops when one feature is shuffled."""

    model_config = ConfigDict(frozen=True)

    feature: str
    mean: float
    std: float


class MetricComparison(BaseModel):
    """One metric of the challenger against the champion."""

    model_config = ConfigDict(frozen=True)

    metric: str
    challenger: float
    champion: float
    difference: float
    """challenger - champion."""
    higher_is_better: bool
    better: Literal["challenger", "champion", "equal"]


def confusion_at(
    labels: np.ndarray, probability: np.ndarray, threshold: float = SERVING_THRESHOLD
) -> Confusion:
    """Count true/false positives/negatives when rows with ``probability >= threshold`` are 1.

    Returns:
        The four counts with precision and recall (None where undefined).
    """
    truth = np.asarray(labels).astype(bool)
    predicted = np.asarray(probability) >= threshold
    tp = int(np.sum(truth & predicted))
    fp = int(np.sum(~truth & predicted))
    fn = int(np.sum(truth & ~predicted))
    return Confusion(
        threshold=threshold,
        true_positive=tp,
        false_positive=fp,
        false_negative=fn,
        true_negative=int(np.sum(~truth & ~predicted)),
        precision=tp / (tp + fp) if tp + fp else None,
        recall=tp / (tp + fn) if tp + fn else None,
    )


def compare_metrics(
    challenger: dict[str, float], champion: dict[str, float]
) -> tuple[MetricComparison, ...]:
    """Compare every metric both models have, in the challenger's order.

    A difference smaller than the gate's :data:`~steps.ml.gate.NO_CHANGE_BELOW` is ``equal``.

    Raises:
        KeyError: for a metric without a direction in :data:`HIGHER_IS_BETTER`.
    """
    rows = []
    for metric, value in challenger.items():
        if metric not in champion:
            continue
        difference = value - champion[metric]
        higher = HIGHER_IS_BETTER[metric]
        if abs(difference) < NO_CHANGE_BELOW:
            better: Literal["challenger", "champion", "equal"] = "equal"
        else:
            better = "challenger" if (difference > 0) == higher else "champion"
        rows.append(
            MetricComparison(
                metric=metric,
                challenger=value,
                champion=champion[metric],
                difference=difference,
                higher_is_better=higher,
                better=better,
            )
        )
    return tuple(rows)


def permutation_importance(
    predict: Callable[[pd.DataFrame], np.ndarray], features: pd.DataFrame, labels: np.ndarray
) -> tuple[FeatureImportance, ...]:
    """Rank the raw features by how much shuffling each one lowers ROC AUC (seeded).

    Model-agnostic on purpose: XGBoost gain and a logistic regression's coefficients are not
    comparable, and both would name encoded columns rather than the features a person knows.

    Args:
        predict: the model's positive-class probability for a feature frame.
        features: the held-out rows, the model's input columns only.
        labels: their true labels.

    Returns:
        The :data:`IMPORTANCE_TOP` largest, largest first (ties by feature name).
    """
    from sklearn import inspection
    from sklearn.metrics import roc_auc_score

    def roc_auc(model: _Fitted, frame: pd.DataFrame, truth: np.ndarray) -> float:
        return float(roc_auc_score(truth, model.predict(frame)))

    measured = inspection.permutation_importance(
        _Fitted(predict),
        features,
        labels,
        scoring=roc_auc,
        n_repeats=IMPORTANCE_REPEATS,
        random_state=IMPORTANCE_SEED,
        max_samples=min(len(features), IMPORTANCE_MAX_ROWS),
    )
    ranked = sorted(
        zip(features.columns, measured.importances_mean, measured.importances_std, strict=True),
        key=lambda item: (-item[1], str(item[0])),
    )
    return tuple(
        FeatureImportance(feature=str(name), mean=float(mean), std=float(std))
        for name, mean, std in ranked[:IMPORTANCE_TOP]
    )


class _Fitted:
    """A fitted model as sklearn's ``permutation_importance`` takes it: it checks for ``fit``
    but, with a callable scorer, only ever calls the scorer."""

    def __init__(self, predict: Callable[[pd.DataFrame], np.ndarray]) -> None:
        self.predict = predict

    def fit(self, *_: object) -> None:
        """Refuse: the model was fitted by the train step."""
        raise NotImplementedError("already fitted; only scored here")

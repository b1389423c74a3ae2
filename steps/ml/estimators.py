"""The model kinds Loopline trains, how each is fitted, saved and loaded.

Every kind consumes the float32 matrix produced by :class:`serving.features.FeatureSpec` and
predicts the probability of the positive class. The default, XGBoost, uses native categorical
support on the category codes, so serving needs only ``xgboost`` and NumPy. The scikit-learn
kinds wrap their own imputation/encoding in a Pipeline fitted on the training split only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.features import FeatureSpec
from serving.model import MODEL_FILES
from steps.core.settings import ModelKind, TrainSettings


@dataclass(frozen=True)
class Validation:
    """The validation rows early stopping watches: carved from the training split, never from
    the held-out split."""

    matrix: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class History:
    """The validation curve of a boosted model and where early stopping kept it."""

    metric: str
    curve: tuple[float, ...]
    """Validation log loss after each boosting round, lower is better."""
    best_iteration: int
    """Rounds kept in the model (the best round, counted from 1)."""
    stopped_early: bool


@dataclass(frozen=True)
class FittedModel:
    """A fitted estimator of one kind, able to score and to save its native file."""

    kind: ModelKind
    estimator: Any
    history: History | None = None

    def positive_probability(self, matrix: np.ndarray) -> np.ndarray:
        """Return P(positive) for each row of ``matrix`` as float64."""
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64)

    def save(self, directory: Path) -> Path:
        """Write the native model file into ``directory`` and return its path."""
        if self.kind == "xgboost":
            path = directory / MODEL_FILES["xgboost"]
            booster = self.estimator.get_booster()
            if self.history is not None:
                # Only the best rounds: a loaded booster scores with every tree it holds, while
                # the classifier stops at its best iteration; sliced, both agree.
                booster = booster[: self.history.best_iteration]
            booster.save_model(path)
            return path
        import joblib

        path = directory / MODEL_FILES["sklearn"]
        joblib.dump(self.estimator, path)
        return path


def fit(
    kind: ModelKind,
    matrix: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainSettings,
    seed: int,
    on_round: Callable[[int], None] | None = None,
    validation: Validation | None = None,
) -> FittedModel:
    """Fit a model of ``kind`` on the encoded training matrix.

    Boosted kinds (XGBoost, ``sklearn-hgb``) stop early when ``validation`` is given and
    ``params.early_stopping_rounds`` > 0: ``n_estimators`` is then the cap, and the model keeps
    the rounds up to the best validation log loss. Logistic regression has no rounds to stop.

    Args:
        on_round: called after each boosting round (XGBoost) for progress display.
        validation: rows for early stopping, taken from the training split.

    Returns:
        The fitted model, with its validation curve when it was boosted against ``validation``.
    """
    if not params.early_stopping_rounds:
        validation = None
    if kind == "xgboost":
        estimator, history = _fit_xgboost(matrix, labels, spec, params, seed, on_round, validation)
        return FittedModel(kind, estimator, history)
    estimator, history = _fit_sklearn(kind, matrix, labels, spec, params, seed, validation)
    return FittedModel(kind, estimator, history)


def positive_weight(labels: np.ndarray, params: TrainSettings) -> float:
    """Return the weight of a positive row: negatives/positives when ``class_weight`` is
    ``balanced``, else 1. The default stays 1: balanced weights inflate every probability the
    service returns (measured in reports/training-quality.md, AUC did not improve either)."""
    if params.class_weight == "none":
        return 1.0
    positives = int(np.count_nonzero(labels))
    return (len(labels) - positives) / max(positives, 1)


def _fit_xgboost(
    matrix: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainSettings,
    seed: int,
    on_round: Callable[[int], None] | None,
    validation: Validation | None,
) -> tuple[Any, History | None]:
    import xgboost

    class _Progress(xgboost.callback.TrainingCallback):
        def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
            if on_round is not None:
                on_round(epoch + 1)
            return False

    model = xgboost.XGBClassifier(
        n_estimators=params.n_estimators,
        max_depth=params.max_depth,
        learning_rate=params.learning_rate,
        scale_pos_weight=positive_weight(labels, params),
        tree_method="hist",
        enable_categorical=True,
        feature_types=spec.feature_types,
        random_state=seed,
        n_jobs=2,
        eval_metric="logloss",
        early_stopping_rounds=params.early_stopping_rounds if validation else None,
        callbacks=[_Progress()],
    )
    if validation is None:
        model.fit(matrix, labels)
        return model, None
    model.fit(matrix, labels, eval_set=[(validation.matrix, validation.labels)], verbose=False)
    curve = tuple(float(v) for v in model.evals_result()["validation_0"]["logloss"])
    best = int(model.best_iteration) + 1
    return model, History("logloss", curve, best, stopped_early=best < params.n_estimators)


def _fit_sklearn(
    kind: ModelKind,
    matrix: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainSettings,
    seed: int,
    validation: Validation | None,
) -> tuple[Any, History | None]:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    weights = np.where(labels == 1, positive_weight(labels, params), 1.0)
    if kind == "sklearn-hgb":
        model = HistGradientBoostingClassifier(
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            learning_rate=params.learning_rate,
            categorical_features=[name in spec.categorical for name in spec.order],
            early_stopping=validation is not None,
            scoring="loss",
            n_iter_no_change=max(params.early_stopping_rounds, 1),
            random_state=seed,
        )
        if validation is None:
            model.fit(matrix, labels, sample_weight=weights)
            return model, None
        model.fit(
            matrix, labels, sample_weight=weights, X_val=validation.matrix, y_val=validation.labels
        )
        # validation_score_ holds the negated loss, starting before the first iteration.
        curve = tuple(-float(v) for v in model.validation_score_[1:])
        best = int(np.argmin(curve)) + 1
        return model, History("logloss", curve, best, stopped_early=model.n_iter_ < model.max_iter)
    categorical = [i for i, name in enumerate(spec.order) if name in spec.categorical]
    numeric = [i for i, name in enumerate(spec.order) if name not in spec.categorical]
    preprocess = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                ),
                numeric,
            ),
            (
                "categorical",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="constant", fill_value=-1)),
                        ("onehot", OneHotEncoder(handle_unknown="ignore")),
                    ]
                ),
                categorical,
            ),
        ]
    )
    estimator = Pipeline(
        [
            ("preprocess", preprocess),
            ("model", LogisticRegression(max_iter=2000, random_state=seed)),
        ]
    )
    estimator.fit(matrix, labels, model__sample_weight=weights)
    return estimator, None

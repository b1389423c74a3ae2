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
from typing import Any, Protocol

import numpy as np

from serving.features import FeatureSpec
from steps.settings import ModelKind, TrainSettings

XGBOOST_FILE = "model.ubj"
SKLEARN_FILE = "model.pkl"


class ProbabilityModel(Protocol):
    """What evaluation and the MLflow wrapper need from a fitted model."""

    def predict_proba(self, matrix: np.ndarray) -> np.ndarray: ...


@dataclass(frozen=True)
class FittedModel:
    """A fitted estimator of one kind, able to score and to save its native file."""

    kind: ModelKind
    estimator: Any

    def positive_probability(self, matrix: np.ndarray) -> np.ndarray:
        """Return P(positive) for each row of ``matrix`` as float64."""
        return np.asarray(self.estimator.predict_proba(matrix)[:, 1], dtype=np.float64)

    def save(self, directory: Path) -> Path:
        """Write the native model file into ``directory`` and return its path."""
        if self.kind == "xgboost":
            path = directory / XGBOOST_FILE
            self.estimator.get_booster().save_model(path)
            return path
        import joblib

        path = directory / SKLEARN_FILE
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
) -> FittedModel:
    """Fit a model of ``kind`` on the encoded training matrix.

    Args:
        on_round: called after each boosting round (XGBoost) for progress display.

    Returns:
        The fitted model.
    """
    if kind == "xgboost":
        return FittedModel(kind, _fit_xgboost(matrix, labels, spec, params, seed, on_round))
    return FittedModel(kind, _fit_sklearn(kind, matrix, labels, spec, params, seed))


def load_native(directory: Path) -> Callable[[np.ndarray], np.ndarray]:
    """Load the native model file in ``directory``; return a function matrix -> P(positive).

    Raises:
        FileNotFoundError: when the directory holds no known model file.
    """
    if (directory / XGBOOST_FILE).exists():
        import xgboost

        booster = xgboost.Booster()
        booster.load_model(directory / XGBOOST_FILE)

        def predict_xgboost(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(booster.inplace_predict(matrix), dtype=np.float64)

        return predict_xgboost
    if (directory / SKLEARN_FILE).exists():
        import joblib

        estimator = joblib.load(directory / SKLEARN_FILE)

        def predict_sklearn(matrix: np.ndarray) -> np.ndarray:
            return np.asarray(estimator.predict_proba(matrix)[:, 1], dtype=np.float64)

        return predict_sklearn
    raise FileNotFoundError(f"no {XGBOOST_FILE} or {SKLEARN_FILE} in {directory}")


def _fit_xgboost(
    matrix: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainSettings,
    seed: int,
    on_round: Callable[[int], None] | None,
) -> Any:
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
        tree_method="hist",
        enable_categorical=True,
        feature_types=spec.feature_types,
        random_state=seed,
        n_jobs=2,
        eval_metric="logloss",
        callbacks=[_Progress()],
    )
    model.fit(matrix, labels)
    return model


def _fit_sklearn(
    kind: ModelKind,
    matrix: np.ndarray,
    labels: np.ndarray,
    spec: FeatureSpec,
    params: TrainSettings,
    seed: int,
) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    categorical = [i for i, name in enumerate(spec.order) if name in spec.categorical]
    numeric = [i for i, name in enumerate(spec.order) if name not in spec.categorical]
    if kind == "sklearn-hgb":
        estimator: Any = HistGradientBoostingClassifier(
            max_iter=params.n_estimators,
            max_depth=params.max_depth,
            learning_rate=params.learning_rate,
            categorical_features=[name in spec.categorical for name in spec.order],
            random_state=seed,
        )
    else:
        preprocess = ColumnTransformer(
            [
                (
                    "numeric",
                    Pipeline(
                        [
                            ("impute", SimpleImputer(strategy="median")),
                            ("scale", StandardScaler()),
                        ]
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
    estimator.fit(matrix, labels)
    return estimator

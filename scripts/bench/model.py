"""The benchmark's model directory and request pools, made with the project's own training code.

The model is what the train step would fit on generated churn data with the earlier defaults
(200 trees, depth 6, no early stopping), without the MLflow logging around it:
``steps.ml.holdout`` splits the data, ``steps.ml.dataset`` fits the
:class:`~serving.features.FeatureSpec` on the training split, ``steps.ml.estimators`` fits and saves
the XGBoost model. The directory is cached under ``.bench/model/``, keyed by
its recipe, so later runs skip training.

Request pools are rows the model never saw (another seed), in two forms: raw rows (what
Loopline's ``/predict`` takes) and the same rows encoded by the feature spec (what the peers
take, since they do not know the spec).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from serving.model import METADATA_FILENAME, ModelMetadata

MODEL_NAME = "churn"


@dataclass(frozen=True)
class ModelRecipe:
    """How the benchmark model is trained."""

    rows: int = 20_000
    seed: int = 7
    n_estimators: int = 200
    max_depth: int = 6

    @property
    def directory_name(self) -> str:
        """A directory name that changes with every field of the recipe."""
        return f"churn-{self.rows}r-s{self.seed}-{self.n_estimators}t-d{self.max_depth}"


@dataclass(frozen=True)
class RequestPool:
    """The same rows as raw JSON objects and as encoded float32 feature vectors."""

    raw_rows: list[dict[str, Any]]
    encoded_rows: list[list[float]]


def model_dir(cache_dir: Path, recipe: ModelRecipe) -> Path:
    """Return the cached model directory for ``recipe``, training it first if it is missing.

    Returns:
        A directory holding ``model.ubj``, ``feature_spec.json`` and ``metadata.json``.
    """
    directory = cache_dir / recipe.directory_name
    if (directory / METADATA_FILENAME).is_file():
        return directory
    staging = directory.with_name(directory.name + ".partial")
    staging.mkdir(parents=True, exist_ok=True)
    _train_into(staging, recipe)
    staging.rename(directory)
    return directory


def _train_into(directory: Path, recipe: ModelRecipe) -> None:
    from steps.core.settings import DataSettings, TrainSettings
    from steps.ml import estimators, holdout
    from steps.ml.dataset import dataset_from_frame, encode, fit_spec
    from steps.ml.synthetic import TARGET, churn_frame

    # A fixed number of trees (no early stopping): the benchmark measures serving, not fitting.
    params = TrainSettings(
        n_estimators=recipe.n_estimators,
        max_depth=recipe.max_depth,
        learning_rate=0.1,
        early_stopping_rounds=0,
    )
    dataset = dataset_from_frame(
        churn_frame(recipe.rows, seed=recipe.seed), f"churn_frame(seed={recipe.seed})", TARGET
    )
    train_split = holdout.split(dataset, DataSettings(), params.test_size).train
    spec = fit_spec(dataset, train_split)
    fitted = estimators.fit(
        "xgboost",
        encode(spec, train_split),
        train_split[dataset.target].to_numpy(),
        spec,
        params,
        recipe.seed,
    )
    fitted.save(directory)
    spec.save(directory)
    ModelMetadata(
        model_name=MODEL_NAME,
        model_version="bench",
        alias=None,
        run_id=f"bench-{recipe.directory_name}",
        data_hash=dataset.content_hash,
        git_commit="bench",
    ).write(directory)


def request_pool(directory: Path, rows: int, seed: int) -> RequestPool:
    """Return ``rows`` unseen rows (seeded) as raw request rows and as encoded vectors.

    Missing values stay missing: ``None`` in raw rows, NaN in encoded vectors (the peers read
    the non-standard JSON token ``NaN``, which Python's ``json`` writes).

    Returns:
        The pool, row ``i`` of both forms being the same customer.
    """
    from serving.features import FeatureSpec
    from steps.ml.synthetic import churn_frame

    spec = FeatureSpec.load(directory)
    frame = churn_frame(rows, seed=seed)
    raw_rows = [
        {name: _json_value(value) for name, value in zip(spec.order, values, strict=True)}
        for values in frame[list(spec.order)].itertuples(index=False, name=None)
    ]
    encoded = spec.encode_rows(raw_rows)
    # str() of a float32 is its shortest round-tripping decimal: 45.07, not 45.06999969482422.
    return RequestPool(raw_rows, [[float(str(v)) for v in row] for row in encoded])


def reference_probabilities(directory: Path, encoded_rows: list[list[float]]) -> np.ndarray:
    """Score encoded rows with the saved booster in this process: the answer every server owes.

    Returns:
        P(positive) per row as float64.
    """
    import xgboost

    booster = xgboost.Booster()
    booster.load_model(directory / "model.ubj")
    matrix = np.asarray(encoded_rows, dtype=np.float32)
    return np.asarray(booster.inplace_predict(matrix), dtype=np.float64)


def _json_value(value: object) -> object:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    return value

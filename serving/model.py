"""The model directory the service serves, and the predictor that scores encoded rows.

A model directory holds the model file (``model.ubj`` for XGBoost), ``feature_spec.json`` (see
:mod:`serving.features`) and ``metadata.json`` (written by the build step). Reading the directory
imports nothing heavy; only :func:`load_predictor` imports the model's library, so the public
service process can validate and encode requests without loading XGBoost at all.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.features import SPEC_FILENAME, FeatureSpec

METADATA_FILENAME = "metadata.json"
ModelKind = Literal["xgboost", "sklearn"]
MODEL_FILES: dict[ModelKind, str] = {"xgboost": "model.ubj", "sklearn": "model.pkl"}


class ModelDirError(Exception):
    """The model directory is missing, incomplete or holds a model this service cannot serve."""


class ModelMetadata(BaseModel):
    """Where the served model came from: ``metadata.json`` as the build step writes it."""

    model_config = ConfigDict(extra="ignore", frozen=True, coerce_numbers_to_str=True)

    model_name: str
    model_version: str
    alias: str | None = None
    run_id: str
    data_hash: str
    git_commit: str


@dataclass(frozen=True)
class ModelBundle:
    """A model directory read from disk: its kind, feature spec and metadata."""

    directory: Path
    kind: ModelKind
    spec: FeatureSpec
    metadata: ModelMetadata


class Predictor(Protocol):
    """Scores encoded rows (the float32 matrix of :meth:`FeatureSpec.encode`)."""

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Return the positive-class probability of each row as float64."""
        ...


def read_model_dir(directory: Path) -> ModelBundle:
    """Read a model directory's kind, feature spec and metadata (not the model itself).

    Returns:
        The bundle describing the directory.

    Raises:
        ModelDirError: naming the missing or invalid file and what it should hold.
    """
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} does not exist")
    kinds = [kind for kind, name in MODEL_FILES.items() if (directory / name).is_file()]
    if len(kinds) != 1:
        expected = " or ".join(MODEL_FILES.values())
        raise ModelDirError(f"{directory} must hold exactly one model file ({expected})")
    return ModelBundle(
        directory=directory,
        kind=kinds[0],
        spec=_read_spec(directory / SPEC_FILENAME),
        metadata=_read_metadata(directory / METADATA_FILENAME),
    )


def check_servable(bundle: ModelBundle) -> ModelBundle:
    """Refuse, before anything loads, a model kind this service cannot serve yet.

    Returns:
        ``bundle`` unchanged.

    Raises:
        ModelDirError: for a scikit-learn model (``model.pkl``).
    """
    if bundle.kind != "xgboost":
        raise ModelDirError(
            f"model kind {bundle.kind} is served only by a service image that installs "
            f"scikit-learn, which this one does not; found {MODEL_FILES[bundle.kind]} in "
            f"{bundle.directory}, expected {MODEL_FILES['xgboost']} (model kind xgboost)"
        )
    return bundle


def load_predictor(bundle: ModelBundle) -> Predictor:
    """Load the model of ``bundle`` with its own library.

    Returns:
        A predictor for the bundle's model kind.

    Raises:
        ModelDirError: for a model kind this service cannot serve yet, or an unreadable model.
    """
    check_servable(bundle)
    return XGBoostPredictor(bundle.directory / MODEL_FILES["xgboost"])


class XGBoostPredictor:
    """An ``xgboost.Booster`` (binary logistic) predicting from float32 category codes."""

    def __init__(self, path: Path) -> None:
        """Load the booster saved at ``path``.

        Raises:
            ModelDirError: if XGBoost cannot read the file.
        """
        import xgboost  # imported here so only the process that scores pays for it

        self._booster = xgboost.Booster()
        try:
            self._booster.load_model(path)
        except xgboost.core.XGBoostError as err:
            raise ModelDirError(f"{path} is not a model XGBoost can load: {err}") from err
        self._booster.set_param({"nthread": 1})

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Return the positive-class probability of each row as float64."""
        if len(features) == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._booster.inplace_predict(features), dtype=np.float64)


def _read_spec(path: Path) -> FeatureSpec:
    try:
        return FeatureSpec.load(path)
    except (OSError, ValidationError, ValueError) as err:
        raise ModelDirError(f"{path} is not a readable feature spec: {err}") from err


def _read_metadata(path: Path) -> ModelMetadata:
    try:
        return ModelMetadata.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValidationError) as err:
        raise ModelDirError(
            f"{path} must be JSON with model_name, model_version, alias, run_id, data_hash "
            f"and git_commit: {err}"
        ) from err

"""The model directory the service serves, and the predictors that score encoded rows.

A model directory holds one model file, ``feature_spec.json`` (see :mod:`serving.features`) and
``metadata.json`` (written by the build step). The file names the model kind: ``model.ubj`` an
XGBoost booster, ``model.pkl`` a joblib-pickled scikit-learn classifier (a Pipeline over the
same encoded float32 matrix). Each kind has its own serving image, locked in
``serving/requirements*.lock`` (:data:`REQUIREMENTS_LOCKS`), holding that kind's library only.

Reading the directory imports nothing heavy; only :func:`load_predictor` imports the model's
library, so the serving process learns the kind before it decides which imports to block.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from serving.features import SPEC_FILENAME, FeatureSpec

METADATA_FILENAME = "metadata.json"
ModelKind = Literal["xgboost", "sklearn"]
MODEL_FILES: dict[ModelKind, str] = {"xgboost": "model.ubj", "sklearn": "model.pkl"}
REQUIREMENTS_LOCKS: dict[ModelKind, str] = {
    "xgboost": "requirements.lock",
    "sklearn": "requirements-sklearn.lock",
}
"""The locked requirements (in ``serving/``) of the image that serves each kind."""
LIBRARIES: dict[ModelKind, dict[str, str]] = {
    "xgboost": {"xgboost": "xgboost-cpu"},
    "sklearn": {"sklearn": "scikit-learn", "joblib": "joblib"},
}
"""What each kind imports to score: top-level module -> the distribution that installs it."""


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

    def write(self, directory: Path) -> Path:
        """Write ``metadata.json`` into ``directory`` (sorted keys, stable bytes); return it."""
        path = directory / METADATA_FILENAME
        text = json.dumps(self.model_dump(mode="json"), indent=2, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
        return path


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
    return ModelBundle(
        directory=directory,
        kind=model_kind(directory),
        spec=_read_spec(directory / SPEC_FILENAME),
        metadata=_read_metadata(directory / METADATA_FILENAME),
    )


def model_kind(directory: Path) -> ModelKind:
    """Return the kind of the one model file in ``directory``.

    Raises:
        ModelDirError: when the directory is missing or holds no or several model files.
    """
    if not directory.is_dir():
        raise ModelDirError(f"model directory {directory} does not exist")
    kinds = [kind for kind, name in MODEL_FILES.items() if (directory / name).is_file()]
    if len(kinds) != 1:
        expected = " or ".join(MODEL_FILES.values())
        raise ModelDirError(f"{directory} must hold exactly one model file ({expected})")
    return kinds[0]


def check_servable(bundle: ModelBundle) -> ModelBundle:
    """Refuse, before anything loads, a model whose library this process cannot import.

    Looks the kind's modules up without importing them (a module blocked by
    :mod:`serving.lean_imports` counts as absent).

    Returns:
        ``bundle`` unchanged.

    Raises:
        ModelDirError: naming the kind, its model file, the missing package and the image to use.
    """
    missing = [
        f"{distribution} (module {module})"
        for module, distribution in LIBRARIES[bundle.kind].items()
        if not _importable(module)
    ]
    if missing:
        raise ModelDirError(
            f"model kind {bundle.kind} ({MODEL_FILES[bundle.kind]} in {bundle.directory}) needs "
            f"{' and '.join(missing)}, which this process cannot import; serve it from the "
            f"image built with serving/{REQUIREMENTS_LOCKS[bundle.kind]}"
        )
    return bundle


def load_predictor(bundle: ModelBundle) -> Predictor:
    """Load the model of ``bundle`` with its own library.

    Returns:
        A predictor for the bundle's model kind.

    Raises:
        ModelDirError: when this process cannot import the kind's library, or the model file
            cannot be loaded as that kind.
    """
    check_servable(bundle)
    return load_model_file(bundle.directory, bundle.kind, bundle.spec)


def load_model_file(directory: Path, kind: ModelKind, spec: FeatureSpec) -> Predictor:
    """Load the ``kind`` model file of ``directory`` (scoring ``spec``'s columns).

    The one loader of Loopline's model files: the service and the MLflow pyfunc model use it.

    Raises:
        ModelDirError: when the file cannot be loaded as that kind.
    """
    path = directory / MODEL_FILES[kind]
    if kind == "xgboost":
        return XGBoostPredictor(path)
    return SklearnPredictor(path, n_features=len(spec.order))


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


class SklearnPredictor:
    """A fitted binary scikit-learn classifier (e.g. a Pipeline), pickled with joblib."""

    # What a truncated, foreign or hand-written pickle raises while loading.
    _LOAD_ERRORS = (
        pickle.UnpicklingError, EOFError, ImportError, AttributeError, KeyError, IndexError,
        TypeError, ValueError,
    )  # fmt: skip

    def __init__(self, path: Path, n_features: int) -> None:
        """Load the classifier saved at ``path``; it must score ``n_features`` columns.

        Raises:
            ModelDirError: if joblib cannot load the file, it was pickled by another
                scikit-learn version, or it is not a binary classifier over ``n_features``.
        """
        import joblib  # imported here so only the process that scores pays for it
        from sklearn.exceptions import InconsistentVersionWarning

        try:
            with warnings.catch_warnings():
                # A pickle from another scikit-learn version may load and score differently.
                warnings.simplefilter("error", InconsistentVersionWarning)
                estimator = joblib.load(path)  # the model directory is the pipeline's own output
        except InconsistentVersionWarning as err:
            raise ModelDirError(
                f"{path} was pickled with scikit-learn {err.original_sklearn_version}, this "
                f"process has {err.current_sklearn_version}: serve it with the version it was "
                "trained with (serving/requirements-sklearn.lock pins the training version)"
            ) from err
        except self._LOAD_ERRORS as err:
            raise ModelDirError(
                f"{path} is not a model joblib can load: {type(err).__name__}: {err}"
            ) from err
        _check_classifier(path, estimator, n_features)
        self._estimator = estimator

    def predict_proba(self, features: np.ndarray) -> np.ndarray:
        """Return the positive-class probability of each row as float64."""
        if len(features) == 0:
            return np.empty(0, dtype=np.float64)
        return np.asarray(self._estimator.predict_proba(features)[:, 1], dtype=np.float64)


def _check_classifier(path: Path, estimator: Any, n_features: int) -> None:
    classes = getattr(estimator, "classes_", None)
    if (
        callable(getattr(estimator, "predict_proba", None))
        and classes is not None
        and len(classes) == 2
        and getattr(estimator, "n_features_in_", None) == n_features
    ):
        return
    raise ModelDirError(
        f"{path} holds a {type(estimator).__name__} (n_features_in_="
        f"{getattr(estimator, 'n_features_in_', None)}, classes_={classes}); expected a fitted "
        f"binary scikit-learn classifier with predict_proba over the {n_features} encoded "
        "columns of feature_spec.json"
    )


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # raised by the lean-imports blocker
        return False


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

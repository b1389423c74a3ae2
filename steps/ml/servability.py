"""A registered (or only logged) model as a servable model directory, and the proof that a
Loopline service image serves it as MLflow scores it.

:func:`materialize` writes the native model files of a version (``artifacts/native/`` of the
logged pyfunc model) with ``metadata.json`` (:class:`serving.model.ModelMetadata`, the lineage the
service's ``/metadata`` returns) into a directory: what the build step packs into the bento and
``make serve`` serves. :func:`check_servability` does the same for a run's logged model before it
is registered: it finds its kind's serving lock and scores the model's input example with the
serving predictor, which must answer what the MLflow model answers.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from serving.model import (
    LIBRARIES,
    MODEL_FILES,
    REQUIREMENTS_LOCKS,
    ModelDirError,
    ModelMetadata,
    read_model_dir,
)
from serving.model import ModelKind as ServingKind
from steps.core import names
from steps.core.errors import RegistryError, ServabilityError
from steps.core.settings import Settings
from steps.io import tracking

REPO = Path(__file__).resolve().parents[2]
SMOKE_ROWS = 32
"""Held-out rows every built image must score as MLflow does (``steps.image.smoke``)."""
MAX_ABS_DIFF = 1e-6
"""Largest difference allowed between served and MLflow probabilities of the same rows."""


class ServabilityReport(BaseModel):
    """How a run's model was found servable: its kind, the image lock, the scores compared."""

    model_kind: ServingKind
    model_file: str
    requirements_lock: str
    rows_compared: int
    max_abs_diff: float


def materialize(settings: Settings, model_version: Any, alias: str | None, dest: Path) -> Path:
    """Write the servable model directory (native files + ``metadata.json``) into ``dest``.

    Returns:
        ``dest``, holding ``model.ubj`` (or ``model.pkl``), ``feature_spec.json`` and metadata.

    Raises:
        RegistryError: when the version's artifacts lack the native files.
    """
    uri = f"models:/{settings.model_name}/{model_version.version}"
    _copy_native(f"{uri}/{names.NATIVE_IN_MODEL}", uri, dest)
    _write_metadata(settings, dest, model_version.run_id, str(model_version.version), alias)
    return dest


def write_smoke_rows(model_uri: str, run_id: str, dest: Path, rows: int = SMOKE_ROWS) -> Path:
    """Write :data:`~steps.core.names.SMOKE_ROWS_FILE` into ``dest``: the first ``rows``
    held-out rows of ``run_id`` (the model's input columns only) and MLflow's probabilities.

    Raises:
        RegistryError: when MLflow cannot load the model or the run has no held-out data.
    """
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(model_uri)
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(f"cannot load model {model_uri}: {err.message}") from err
    holdout = tracking.run_table(run_id, names.HOLDOUT_ARTIFACT, "held-out data")
    frame = holdout[model.metadata.get_input_schema().input_names()].head(rows)
    probabilities = np.asarray(model.predict(frame), dtype=np.float64)
    path = dest / names.SMOKE_ROWS_FILE
    document = {"model": model_uri, "rows": _request_rows(frame),
                "probabilities": [float(p) for p in probabilities]}  # fmt: skip
    path.write_text(json.dumps(document, sort_keys=True, default=str) + "\n")
    return path


def materialize_run(settings: Settings, run_id: str, model_id: str, dest: Path) -> Path:
    """Write the model directory of a run's logged model (registered or not) into ``dest``.

    Its ``metadata.json`` has an empty ``model_version``: the model has no version yet.

    Returns:
        ``dest``, holding the native model file, ``feature_spec.json`` and metadata.

    Raises:
        RegistryError: when MLflow has no logged model ``model_id`` or it lacks the native files.
    """
    import mlflow

    try:
        location = mlflow.get_logged_model(model_id).artifact_location
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(
            f"run {run_id}: MLflow has no logged model {model_id!r}: {err.message}"
        ) from err
    _copy_native(f"{location.rstrip('/')}/{names.NATIVE_IN_MODEL}", f"models:/{model_id}", dest)
    _write_metadata(settings, dest, run_id, "", None)
    return dest


def requirements_lock(kind: ServingKind) -> str:
    """Return the locked requirements (relative to the repository) of the image serving ``kind``.

    Raises:
        ServabilityError: when no serving lock is committed for the kind.
    """
    name = REQUIREMENTS_LOCKS.get(kind)
    lock = f"serving/{name}" if name else f"serving/requirements-{kind}.lock"
    if name is None or not (REPO / lock).is_file():
        raise ServabilityError(
            f"model kind {kind} ({MODEL_FILES[kind]}) has no serving image: expected its locked "
            f"requirements in {lock} (make lock-serving)"
        )
    return lock


def check_servability(settings: Settings, run_id: str, model_id: str) -> ServabilityReport:
    """Check that a Loopline image can serve a run's logged model, and answers as MLflow does.

    Materializes the model as the build step would, finds its kind's serving lock (which must pin
    the library versions the model was checked with), loads it with the serving predictor and
    scores the model's logged input example as request rows; the MLflow pyfunc model's
    probabilities for the same example must match within :data:`MAX_ABS_DIFF`.

    Returns:
        The kind, model file, lock and the largest difference seen.

    Raises:
        ServabilityError: naming the kind, the file and what is expected, when the model cannot
            be served or is served with other probabilities.
        RegistryError: when MLflow cannot provide the model or its input example.
    """
    from serving.model import load_predictor

    tracking.connect(settings)
    with tempfile.TemporaryDirectory() as scratch:
        directory = materialize_run(settings, run_id, model_id, Path(scratch) / "model")
        try:
            bundle = read_model_dir(directory)
        except ModelDirError as err:
            raise ServabilityError(f"run {run_id} logged no servable model: {err}") from err
        model_file = MODEL_FILES[bundle.kind]
        lock = requirements_lock(bundle.kind)
        _check_lock_pins(bundle.kind, lock)
        try:
            predictor = load_predictor(bundle)
        except ModelDirError as err:
            raise ServabilityError(
                f"model kind {bundle.kind} of run {run_id} cannot be served: {err}"
            ) from err
        example, expected = _mlflow_scores_of_example(model_id)
        served = predictor.predict_proba(bundle.spec.encode_rows(_request_rows(example)))
    return ServabilityReport(
        model_kind=bundle.kind,
        model_file=model_file,
        requirements_lock=lock,
        rows_compared=len(expected),
        max_abs_diff=compare_scores(bundle.kind, model_file, expected, served),
    )


def compare_scores(
    kind: ServingKind, model_file: str, expected: np.ndarray, served: np.ndarray
) -> float:
    """Return the largest difference between MLflow's and the served probabilities.

    Raises:
        ServabilityError: when no row was compared, the shapes differ or a difference (or NaN)
            exceeds :data:`MAX_ABS_DIFF`.
    """
    what = f"model kind {kind} ({model_file})"
    if expected.size == 0 or expected.shape != served.shape:
        raise ServabilityError(
            f"{what}: served {served.shape} probabilities for the input example where the MLflow "
            f"model gives {expected.shape}; expected one per row, at least one row"
        )
    diff = float(np.max(np.abs(expected.astype(np.float64) - served.astype(np.float64))))
    if not diff <= MAX_ABS_DIFF:  # NaN fails too
        raise ServabilityError(
            f"{what} scores its input example differently when served: max abs difference "
            f"{diff:.3g} from the MLflow model, expected <= {MAX_ABS_DIFF:g}"
        )
    return diff


def _copy_native(native_uri: str, model_uri: str, dest: Path) -> None:
    import mlflow

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=native_uri))
    except mlflow.exceptions.MlflowException as err:
        raise tracking.mlflow_error(
            err,
            f"{model_uri} has no {names.NATIVE_IN_MODEL}/ (expected a model logged by steps.train)",
        ) from err
    dest.mkdir(parents=True, exist_ok=True)
    for item in local.iterdir():
        shutil.copy2(item, dest / item.name)


def _write_metadata(
    settings: Settings, dest: Path, run_id: str, version: str, alias: str | None
) -> None:
    from mlflow.tracking import MlflowClient

    tags = MlflowClient().get_run(run_id).data.tags
    ModelMetadata(
        model_name=settings.model_name,
        model_version=version,
        alias=alias,
        run_id=run_id,
        data_hash=tags.get(names.DATA_HASH_TAG, ""),
        git_commit=tags.get(names.GIT_COMMIT_TAG, ""),
    ).write(dest)


def _check_lock_pins(kind: ServingKind, lock: str) -> None:
    """The image must install the library versions this process loads the model with."""
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", (REPO / lock).read_text(), re.M))
    for distribution in LIBRARIES[kind].values():
        try:
            here = installed_version(distribution)
        except PackageNotFoundError:
            here = "not installed"
        if pins.get(distribution) != here:
            raise ServabilityError(
                f"model kind {kind} ({MODEL_FILES[kind]}): {lock} pins {distribution}=="
                f"{pins.get(distribution, '(nothing)')}, the training environment has {here}; "
                "expected the same version (re-lock with make lock-serving)"
            )


def example_scores(model_uri: str) -> tuple[list[dict[str, Any]], np.ndarray]:
    """Return a model's logged input example as request rows, and MLflow's probabilities for it.

    What a served copy of the model (``/predict_batch``) must answer, within
    :data:`MAX_ABS_DIFF` (:func:`compare_scores`).

    Raises:
        RegistryError: when MLflow cannot load ``model_uri`` or it has no input example.
    """
    example, expected = _mlflow_scores_of_example(model_uri)
    return _request_rows(example), expected


def _mlflow_scores_of_example(model_id_or_uri: str) -> tuple[Any, np.ndarray]:
    """The logged model's input example and the pyfunc model's probabilities for it."""
    import mlflow

    uri = model_id_or_uri
    if not uri.startswith("models:/"):
        uri = f"models:/{uri}"
    try:
        model = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(f"cannot load model {uri}: {err.message}") from err
    example = model.input_example
    if example is None or len(example) == 0:
        raise RegistryError(
            f"{uri} has no input example to compare served and MLflow scores "
            "(expected a model logged by steps.train)"
        )
    return example, np.asarray(model.predict(example), dtype=np.float64)


def _request_rows(frame: Any) -> list[dict[str, Any]]:
    """A frame's rows as a JSON request carries them: missing values as null."""
    return [
        {
            name: None if isinstance(value, float) and math.isnan(value) else value
            for name, value in row.items()
        }
        for row in frame.to_dict(orient="records")
    ]

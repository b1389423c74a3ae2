"""Build step: a registered model version -> BentoML model -> bento -> exported archive.

From a version in the MLflow registry (by number or alias) it takes the native model files out
of the logged pyfunc model (``artifacts/native/``), adds ``metadata.json`` (lineage the service's
``/metadata`` endpoint returns), brings them into the BentoML model store, builds the bento of
``serving/`` with the locked serving requirements of the model's kind (``serving/requirements.lock``
for XGBoost, ``serving/requirements-sklearn.lock`` for scikit-learn: each pinned for linux/amd64
and linux/arm64, holding that kind's library and nothing else from training), and exports the
archive to the artifact store (local or ``s3://``) so another step or machine can
``bentoml import`` it.

:func:`check_servability` does the same for a run's logged model before it is registered: it
materializes it, finds its kind's serving lock and scores the model's input example with the
serving predictor, which must answer what the MLflow model answers.

CLI: ``python -m steps.build --model-version V | --alias A --out-dir DIR``; outputs ``bento_tag``,
``archive_uri``, ``model_tag``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from pydantic import BaseModel

from serving.model import LIBRARIES, MODEL_FILES, REQUIREMENTS_LOCKS, ModelDirError, read_model_dir
from serving.model import ModelKind as ServingKind
from steps import tracking
from steps.cli_support import console, new_app, reports_errors
from steps.errors import BuildError, ConfigError, RegistryError, ServabilityError
from steps.outputs import write_outputs, write_result
from steps.platforms import parse_platforms
from steps.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Loopline"
BENTO_NAME = "loopline"
NATIVE_IN_MODEL = "artifacts/native"
METADATA_FILE = "metadata.json"
MAX_ABS_DIFF = 1e-6
"""Largest difference allowed between served and MLflow probabilities of the same rows."""


class BuildResult(BaseModel):
    """What the build step produced."""

    model_name: str
    model_version: str
    alias: str | None
    model_kind: ServingKind
    requirements_lock: str
    model_tag: str
    bento_tag: str
    archive_uri: str
    platform: str
    seconds: float


class ServabilityReport(BaseModel):
    """How a run's model was found servable: its kind, the image lock, the scores compared."""

    model_kind: ServingKind
    model_file: str
    requirements_lock: str
    rows_compared: int
    max_abs_diff: float


def resolve_version(settings: Settings, version: str | None, alias: str | None) -> Any:
    """Return the MLflow ``ModelVersion`` for ``version`` or ``alias`` (exactly one given).

    Raises:
        ConfigError: when both or neither are given.
        RegistryError: when the registry has no such version or alias.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    if (version is None) == (alias is None):
        raise ConfigError("give exactly one of --model-version or --alias")
    client = MlflowClient()
    try:
        if alias is not None:
            return client.get_model_version_by_alias(settings.model_name, alias)
        return client.get_model_version(settings.model_name, str(version))
    except MlflowException as err:
        wanted = f"alias {alias!r}" if alias else f"version {version!r}"
        raise RegistryError(
            f"model {settings.model_name!r} has no {wanted}: {err.message}"
        ) from err


def materialize(settings: Settings, model_version: Any, alias: str | None, dest: Path) -> Path:
    """Write the servable model directory (native files + ``metadata.json``) into ``dest``.

    Returns:
        ``dest``, holding ``model.ubj`` (or ``model.pkl``), ``feature_spec.json`` and metadata.

    Raises:
        RegistryError: when the version's artifacts lack the native files.
    """
    uri = f"models:/{settings.model_name}/{model_version.version}"
    _copy_native(f"{uri}/{NATIVE_IN_MODEL}", uri, dest)
    _write_metadata(settings, dest, model_version.run_id, str(model_version.version), alias)
    return dest


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
    _copy_native(f"{location.rstrip('/')}/{NATIVE_IN_MODEL}", f"models:/{model_id}", dest)
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
        raise RegistryError(
            f"{model_uri} has no {NATIVE_IN_MODEL}/ (expected a model logged by steps.train): "
            f"{err.message}"
        ) from err
    dest.mkdir(parents=True, exist_ok=True)
    for item in local.iterdir():
        shutil.copy2(item, dest / item.name)


def _write_metadata(
    settings: Settings, dest: Path, run_id: str, version: str, alias: str | None
) -> None:
    from mlflow.tracking import MlflowClient

    tags = MlflowClient().get_run(run_id).data.tags
    metadata = {
        "model_name": settings.model_name,
        "model_version": version,
        "alias": alias,
        "run_id": run_id,
        "data_hash": tags.get("loopline.data_hash", ""),
        "git_commit": tags.get("loopline.git_commit", ""),
    }
    (dest / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")


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


def _mlflow_scores_of_example(model_id: str) -> tuple[Any, np.ndarray]:
    """The logged model's input example and the pyfunc model's probabilities for it."""
    import mlflow

    uri = f"models:/{model_id}"
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


def run(
    settings: Settings,
    version: str | None = None,
    alias: str | None = None,
    platform: str = "linux/arm64",
) -> BuildResult:
    """Build and export the bento for one registered model version.

    Raises:
        ConfigError: for an unknown platform or a bad version/alias choice.
        RegistryError: when the version cannot be read from MLflow.
        ServabilityError: when the version's model kind has no serving image.
        BuildError: when BentoML cannot build or export the bento.
    """
    platforms = parse_platforms(platform, flag="--platform")
    started = time.perf_counter()
    tracking.connect(settings)
    model_version = resolve_version(settings, version, alias)
    # BentoML reads its home when imported: set it first, from settings, for this process only.
    os.environ["BENTOML_HOME"] = str(settings.resolved_bentoml_home)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = materialize(settings, model_version, alias, Path(scratch) / "model")
        try:
            kind = read_model_dir(model_dir).kind
        except ModelDirError as err:
            what = f"{settings.model_name} v{model_version.version}"
            raise ServabilityError(f"{what} has no servable model: {err}") from err
        lock = requirements_lock(kind)
        model_tag = _import_model(settings, model_version, model_dir, kind)
        bento_tag = _build_bento(model_tag, model_version, kind, Path(scratch))
        archive_uri = _export(settings, bento_tag, Path(scratch))
    return BuildResult(
        model_name=settings.model_name,
        model_version=str(model_version.version),
        alias=alias,
        model_kind=kind,
        requirements_lock=lock,
        model_tag=model_tag,
        bento_tag=bento_tag,
        archive_uri=archive_uri,
        platform=",".join(platforms),
        seconds=round(time.perf_counter() - started, 3),
    )


def _import_model(
    settings: Settings, model_version: Any, model_dir: Path, kind: ServingKind
) -> str:
    """Create (or reuse) the BentoML model ``NAME:vVERSION-RUNID8``."""
    import bentoml

    tag = f"{settings.model_name}:v{model_version.version}-{model_version.run_id[:8]}".lower()
    try:
        return str(bentoml.models.get(tag).tag)
    except bentoml.exceptions.NotFound:
        pass
    # BentoML metadata takes basic values only: no None (e.g. a build by version has no alias).
    metadata = {
        key: value
        for key, value in json.loads((model_dir / METADATA_FILE).read_text()).items()
        if value is not None
    }
    with bentoml.models.create(
        tag,
        labels={"model_version": str(model_version.version), "model_kind": kind},
        metadata=metadata,
    ) as model:
        for item in model_dir.iterdir():
            shutil.copy2(item, Path(model.path) / item.name)
    return tag


def bentofile(model_tag: str, kind: ServingKind) -> dict[str, Any]:
    """Return the bentofile for ``model_tag``: serving/ only, the kind's lock, baked env.

    Raises:
        ServabilityError: when no serving lock is committed for ``kind``.
    """
    env = {"LOOPLINE_SERVING__MODEL_TAG": model_tag, "LOOPLINE_SERVING__LEAN_IMPORTS": "true"}
    return {
        "service": SERVICE,
        "name": BENTO_NAME,
        "include": ["serving/*.py"],
        "python": {"requirements_txt": requirements_lock(kind), "lock_packages": False},
        "docker": {"distro": "debian", "python_version": "3.11"},
        "envs": [{"name": name, "value": value} for name, value in env.items()],
    }


def _build_bento(model_tag: str, model_version: Any, kind: ServingKind, scratch: Path) -> str:
    import bentoml
    import yaml

    config = scratch / "bentofile.yaml"
    config.write_text(yaml.safe_dump(bentofile(model_tag, kind), sort_keys=True))
    labels = {
        "model_version": str(model_version.version),
        "run_id": model_version.run_id,
        "model_kind": kind,
    }
    try:
        with _service_env(model_tag):
            # reload: a process that built another model's bento has serving.service imported
            # already, with that model's tag as its class attribute.
            bento = bentoml.bentos.build_bentofile(
                str(config), reload=True, labels=labels, build_ctx=str(REPO)
            )
    except bentoml.exceptions.BentoMLException as err:
        raise BuildError(f"bentoml build of {SERVICE} failed: {err}") from err
    return str(bento.tag)


@contextlib.contextmanager
def _service_env(model_tag: str) -> Iterator[None]:
    """The serving settings for importing the service while building, restored afterwards.

    The service resolves its model from ``LOOPLINE_SERVING__MODEL_TAG`` at import (build time
    and serve time); lean imports only in the served image: this process has MLflow loaded.
    """
    names = (
        "LOOPLINE_SERVING__MODEL_TAG",
        "LOOPLINE_SERVING__MODEL_DIR",
        "LOOPLINE_SERVING__LEAN_IMPORTS",
    )
    saved = {name: os.environ.pop(name) for name in names if name in os.environ}
    os.environ["LOOPLINE_SERVING__MODEL_TAG"] = model_tag
    try:
        yield
    finally:
        for name in names:
            os.environ.pop(name, None)
        os.environ.update(saved)


def _export(settings: Settings, bento_tag: str, scratch: Path) -> str:
    import bentoml

    from steps.artifact_store import ArtifactStore

    name, _, version = bento_tag.partition(":")
    local = scratch / f"{name}-{version}.bento"
    try:
        bentoml.export_bento(bento_tag, str(local))
    except bentoml.exceptions.BentoMLException as err:
        raise BuildError(f"bentoml export of {bento_tag} failed: {err}") from err
    return ArtifactStore(settings).upload(local, f"bentos/{name}/{local.name}")


app = new_app("Build and export the bento for a registered model version.")


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    model_version: Annotated[str | None, typer.Option(help="registry version number")] = None,
    alias: Annotated[str | None, typer.Option(help="registry alias, e.g. champion")] = None,
    platform: Annotated[
        str, typer.Option(help="target platforms, e.g. linux/arm64 or linux/amd64,linux/arm64")
    ] = "linux/arm64",
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Build the bento for a model version and write bento_tag, archive_uri, model_tag."""
    settings = load_settings(model_name=model_name)
    result = run(settings, model_version, alias, platform)
    write_outputs(
        out_dir,
        {
            "bento_tag": result.bento_tag,
            "archive_uri": result.archive_uri,
            "model_tag": result.model_tag,
        },
    )
    write_result(out_dir, result)
    console.print(
        f"built bento {result.bento_tag} ({result.model_kind}, {result.requirements_lock}) for "
        f"{result.model_name} v{result.model_version} in {result.seconds:.1f}s; "
        f"archive {result.archive_uri}"
    )


if __name__ == "__main__":
    app()

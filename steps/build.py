"""Build step: a registered model version -> BentoML model -> bento -> exported archive.

From a version in the MLflow registry (by number or alias) it takes the native model files out
of the logged pyfunc model (``artifacts/native/``), adds ``metadata.json`` (lineage the service's
``/metadata`` endpoint returns), brings them into the BentoML model store, builds the bento of
``serving/`` with the locked serving requirements of the model's kind (``serving/requirements.lock``
for XGBoost, ``serving/requirements-sklearn.lock`` for scikit-learn: each pinned for linux/amd64
and linux/arm64, holding that kind's library and nothing else from training), and exports the
archive to the artifact store (local or ``s3://``) so another step or machine can
``bentoml import`` it.

The model directory and the servability check before registration live in
:mod:`steps.ml.servability`.

CLI: ``python -m steps.build --model-version V | --alias A --out-dir DIR``; outputs ``bento_tag``,
``archive_uri``, ``model_tag``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from serving.model import METADATA_FILENAME, ModelDirError, read_model_dir
from serving.model import ModelKind as ServingKind
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import BuildError, ServabilityError
from steps.core.outputs import write_outputs, write_result
from steps.core.platforms import parse_platforms
from steps.core.settings import Settings, load_settings
from steps.io import tracking
from steps.io.registry import Registry
from steps.ml.servability import materialize, requirements_lock, write_smoke_rows

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Loopline"
BENTO_NAME = "loopline"


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
    platforms = parse_platforms(platform, flag="--platforms")
    started = time.perf_counter()
    tracking.connect(settings)
    model_version = Registry(settings.model_name).resolve(version, alias)
    # BentoML reads its home when imported: set it first, from settings, for this process only.
    os.environ["BENTOML_HOME"] = str(settings.resolved_bentoml_home)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = materialize(settings, model_version, alias, Path(scratch) / "model")
        model_uri = f"models:/{settings.model_name}/{model_version.version}"
        write_smoke_rows(model_uri, model_version.run_id, model_dir)
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
        for key, value in json.loads((model_dir / METADATA_FILENAME).read_text()).items()
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

    from steps.io.artifact_store import ArtifactStore

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
    platforms: Annotated[
        str | None,
        typer.Option(help="e.g. linux/arm64,linux/amd64; unset: LOOPLINE_IMAGE__PLATFORMS"),
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Build the bento for a model version and write bento_tag, archive_uri, model_tag."""
    settings = load_settings(model_name=model_name)
    result = run(settings, model_version, alias, platforms or settings.image.platforms)
    write_outputs(
        out_dir,
        "build",
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

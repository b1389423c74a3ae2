"""Build step: a registered model version -> BentoML model -> bento -> exported archive.

From a version in the MLflow registry (by number or alias) it takes the native model files out
of the logged pyfunc model (``artifacts/native/``), adds ``metadata.json`` (lineage the service's
``/metadata`` endpoint returns), brings them into the BentoML model store, builds the bento of
``serving/`` with the locked serving requirements (``serving/requirements.lock``: pinned for
linux/amd64 and linux/arm64, no training libraries), and exports the archive to the artifact store
(local or ``s3://``) so another step or machine can ``bentoml import`` it.

CLI: ``python -m steps.build --model-version V | --alias A --out-dir DIR``; outputs ``bento_tag``,
``archive_uri``, ``model_tag``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from steps import tracking
from steps.cli_support import console, new_app, reports_errors
from steps.errors import BuildError, ConfigError, RegistryError
from steps.outputs import write_outputs, write_result
from steps.platforms import parse_platforms
from steps.settings import Settings, load_settings

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Loopline"
BENTO_NAME = "loopline"
REQUIREMENTS_LOCK = "serving/requirements.lock"
NATIVE_IN_MODEL = "artifacts/native"
METADATA_FILE = "metadata.json"


class BuildResult(BaseModel):
    """What the build step produced."""

    model_name: str
    model_version: str
    alias: str | None
    model_tag: str
    bento_tag: str
    archive_uri: str
    platform: str
    seconds: float


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
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = f"models:/{settings.model_name}/{model_version.version}"
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/{NATIVE_IN_MODEL}"))
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(
            f"{uri} has no {NATIVE_IN_MODEL}/ (expected a model logged by steps.train): "
            f"{err.message}"
        ) from err
    dest.mkdir(parents=True, exist_ok=True)
    for item in local.iterdir():
        shutil.copy2(item, dest / item.name)
    tags = MlflowClient().get_run(model_version.run_id).data.tags
    metadata = {
        "model_name": settings.model_name,
        "model_version": str(model_version.version),
        "alias": alias,
        "run_id": model_version.run_id,
        "data_hash": tags.get("loopline.data_hash", ""),
        "git_commit": tags.get("loopline.git_commit", ""),
    }
    (dest / METADATA_FILE).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return dest


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
        model_tag = _import_model(settings, model_version, model_dir)
        bento_tag = _build_bento(model_tag, model_version, Path(scratch))
        archive_uri = _export(settings, bento_tag, Path(scratch))
    return BuildResult(
        model_name=settings.model_name,
        model_version=str(model_version.version),
        alias=alias,
        model_tag=model_tag,
        bento_tag=bento_tag,
        archive_uri=archive_uri,
        platform=",".join(platforms),
        seconds=round(time.perf_counter() - started, 3),
    )


def _import_model(settings: Settings, model_version: Any, model_dir: Path) -> str:
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
        tag, labels={"model_version": str(model_version.version)}, metadata=metadata
    ) as model:
        for item in model_dir.iterdir():
            shutil.copy2(item, Path(model.path) / item.name)
    return tag


def bentofile(model_tag: str) -> dict[str, Any]:
    """Return the bentofile for ``model_tag``: serving/ only, locked requirements, baked env."""
    env = {"LOOPLINE_SERVING__MODEL_TAG": model_tag, "LOOPLINE_SERVING__LEAN_IMPORTS": "true"}
    return {
        "service": SERVICE,
        "name": BENTO_NAME,
        "include": ["serving/*.py"],
        "python": {"requirements_txt": REQUIREMENTS_LOCK, "lock_packages": False},
        "docker": {"distro": "debian", "python_version": "3.11"},
        "envs": [{"name": name, "value": value} for name, value in env.items()],
    }


def _build_bento(model_tag: str, model_version: Any, scratch: Path) -> str:
    import bentoml
    import yaml

    config = scratch / "bentofile.yaml"
    config.write_text(yaml.safe_dump(bentofile(model_tag), sort_keys=True))
    # The service resolves its model from this variable at import (build time and serve time);
    # lean imports only in the served image: this process has MLflow loaded already.
    os.environ["LOOPLINE_SERVING__MODEL_TAG"] = model_tag
    os.environ.pop("LOOPLINE_SERVING__LEAN_IMPORTS", None)
    try:
        bento = bentoml.bentos.build_bentofile(
            str(config),
            labels={"model_version": str(model_version.version), "run_id": model_version.run_id},
            build_ctx=str(REPO),
        )
    except bentoml.exceptions.BentoMLException as err:
        raise BuildError(f"bentoml build of {SERVICE} failed: {err}") from err
    return str(bento.tag)


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
        f"built bento {result.bento_tag} for {result.model_name} v{result.model_version} "
        f"in {result.seconds:.1f}s; archive {result.archive_uri}"
    )


if __name__ == "__main__":
    app()

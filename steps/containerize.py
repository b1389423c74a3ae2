"""Containerize step: an exported bento archive -> an OCI image for linux/arm64 (by default).

In a cluster the step runs inside the ``pipeline-buildkit`` image and builds with BuildKit
rootless (``buildctl-daemonless.sh``; Kaniko is archived), pushing to the configured registry and
reading the pushed digest from BuildKit's metadata file. On a workstation it uses
``bentoml containerize`` with the first healthy backend of docker/buildx, buildctl, podman and
buildah. With no builder it fails listing what it looked for, unless ``--skip-if-no-builder``,
in which case it records that no image was built (local runs then serve the bento directly).

The bento comes either from the artifact store (``--archive-uri URI``) or from a local path
(``--archive PATH``: a ``.bento`` file, or a directory holding exactly one). On a cluster the
work is split in two pods so that the one running BuildKit (seccomp and AppArmor unconfined)
holds no S3 or MLflow credentials: a restricted pod runs ``--archive-uri URI --fetch-to DIR``,
which only downloads the archive into ``DIR`` (saved by Argo as an artifact), and the build pod
receives that artifact and runs ``--archive DIR``, talking to nothing but the registry.

CLI: ``python -m steps.containerize (--archive-uri URI | --archive PATH) --out-dir DIR``; outputs
``image_ref`` (``registry/name:version@sha256:...`` or ``none``) and ``image_built``
(``true``/``false``). With ``--fetch-to DIR`` it writes no output parameter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import typer
from pydantic import BaseModel

from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import BuildError, ConfigError
from steps.core.outputs import write_outputs, write_result
from steps.core.platforms import parse_platforms
from steps.core.settings import Settings, load_settings
from steps.io.artifact_store import ArtifactStore

Builder = Literal["auto", "buildkit", "docker", "buildx", "buildctl", "podman", "buildah"]
BUILDKIT_DAEMONLESS = "buildctl-daemonless.sh"
WORKSTATION_BACKENDS = ("docker", "buildx", "buildctl", "podman", "buildah")
BUILD_TIMEOUT_S = 3600
BENTO_SUFFIX = ".bento"


class ContainerizeResult(BaseModel):
    """The image built (or why none was)."""

    bento_tag: str
    image_ref: str
    image_built: bool
    builder: str | None
    platforms: list[str]
    reason: str


@dataclass(frozen=True)
class BuildPlan:
    """One BuildKit invocation: argv plus where it reads and writes."""

    argv: list[str]
    metadata_file: Path
    image: str


def image_name(registry: str, bento_tag: str) -> str:
    """Return ``registry/name:version`` for a bento tag (``name:version``).

    Raises:
        ConfigError: when the registry is empty or carries a scheme.
    """
    if not registry or "://" in registry:
        raise ConfigError(f"--registry {registry!r}: expected host[:port]/path, no scheme")
    name, _, version = bento_tag.partition(":")
    return f"{registry.rstrip('/')}/{name}:{version}"


def buildkit_plan(bento_dir: Path, platforms: list[str], image: str, scratch: Path) -> BuildPlan:
    """Return the ``buildctl-daemonless.sh build`` invocation for a bento build context.

    Raises:
        BuildError: when the bento has no generated Dockerfile.
    """
    dockerfile = bento_dir / "env" / "docker" / "Dockerfile"
    if not dockerfile.is_file():
        raise BuildError(f"{bento_dir} has no env/docker/Dockerfile: not a built bento")
    metadata_file = scratch / "buildkit-metadata.json"
    argv = [
        BUILDKIT_DAEMONLESS, "build",
        "--frontend", "dockerfile.v0",
        "--local", f"context={bento_dir}",
        "--local", f"dockerfile={dockerfile.parent}",
        "--opt", "filename=Dockerfile",
        "--opt", f"platform={','.join(platforms)}",
        "--output", f"type=image,name={image},push=true",
        "--metadata-file", str(metadata_file),
    ]  # fmt: skip
    return BuildPlan(argv, metadata_file, image)


def find_builder(requested: Builder) -> tuple[str | None, list[str]]:
    """Return the first usable builder for ``requested`` and the list of what was looked for."""
    if requested in ("auto", "buildkit"):
        looked = [f"{BUILDKIT_DAEMONLESS} (BuildKit rootless, on PATH)"]
        if shutil.which(BUILDKIT_DAEMONLESS):
            return "buildkit", looked
        if requested == "buildkit":
            return None, looked
    else:
        looked = []
    import bentoml

    for backend in WORKSTATION_BACKENDS if requested in ("auto", "buildkit") else (requested,):
        looked.append(f"bentoml containerize --backend {backend}")
        try:
            if bentoml.container.health(backend):
                return backend, looked
        except (
            bentoml.exceptions.BentoMLException,
            OSError,
            ValueError,
            subprocess.SubprocessError,
        ):
            continue
    return None, looked


def fetch(settings: Settings, archive_uri: str, into: Path) -> Path:
    """Download the bento archive at ``archive_uri`` into the directory ``into``, keeping its
    file name (the bento tag is read back from it).

    Returns:
        The path of the downloaded archive.

    Raises:
        StoreError: when the archive cannot be fetched.
        ConfigError: when ``archive_uri`` is not under the artifact store.
    """
    archive = into / Path(archive_uri).name
    into.mkdir(parents=True, exist_ok=True)
    ArtifactStore(settings).download(archive_uri, archive)
    return archive


def local_archive(path: Path) -> Path:
    """Return the bento archive at ``path``: the file itself, or the one ``.bento`` file in the
    directory ``path`` (where an Argo input artifact lands).

    Raises:
        ConfigError: when ``path`` does not exist, or the directory holds no or several
            ``.bento`` files.
    """
    if path.is_file():
        return path
    if not path.is_dir():
        raise ConfigError(f"--archive {path}: no such file or directory")
    found = sorted(path.glob(f"*{BENTO_SUFFIX}"))
    if len(found) != 1:
        names = [candidate.name for candidate in found]
        raise ConfigError(
            f"--archive {path}: expected exactly one *{BENTO_SUFFIX} file in it, found {names}"
        )
    return found[0]


def run(
    settings: Settings,
    archive_uri: str | None,
    platforms: list[str],
    registry: str,
    builder: Builder = "auto",
    skip_if_no_builder: bool = False,
    archive_path: Path | None = None,
) -> ContainerizeResult:
    """Import the bento archive and build (and push) its image.

    Args:
        settings: where BentoML keeps the imported bento, and the artifact store.
        archive_uri: the archive in the artifact store; ``None`` when ``archive_path`` is given.
        platforms: the image platforms.
        registry: ``host[:port]/path`` the image is pushed to.
        builder: which builder to use; ``auto`` tries BuildKit, then the workstation backends.
        skip_if_no_builder: record no image instead of failing when no builder is usable.
        archive_path: a local archive (file or directory, :func:`local_archive`); the step
            then never talks to the artifact store.

    Raises:
        ConfigError: when both or neither of ``archive_uri`` and ``archive_path`` are given, or
            the local archive is missing.
        BuildError: when no builder is usable (and not skipping) or the build fails.
        StoreError: when the archive cannot be fetched.
    """
    if (archive_uri is None) == (archive_path is None):
        raise ConfigError("give exactly one of --archive-uri URI and --archive PATH")
    os.environ["BENTOML_HOME"] = str(settings.resolved_bentoml_home)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        if archive_path is not None:
            archive = local_archive(archive_path)
        else:
            assert archive_uri is not None  # checked above
            archive = fetch(settings, archive_uri, scratch)
        bento_tag, bento_dir = _import_bento(archive)
        image = image_name(registry, bento_tag)
        chosen, looked = find_builder(builder)
        if chosen is None:
            reason = "no image builder found; looked for: " + "; ".join(looked)
            if not skip_if_no_builder:
                raise BuildError(
                    reason + " (pass --skip-if-no-builder to serve the bento directly)"
                )
            return ContainerizeResult(
                bento_tag=bento_tag, image_ref="none", image_built=False, builder=None,
                platforms=platforms, reason=reason + "; skipped: serve the bento directly",
            )  # fmt: skip
        if chosen == "buildkit":
            digest = _run_buildkit(buildkit_plan(bento_dir, platforms, image, scratch))
        else:
            digest = _run_bentoml_containerize(chosen, bento_tag, platforms, image)
    return ContainerizeResult(
        bento_tag=bento_tag, image_ref=f"{image}@{digest}", image_built=True, builder=chosen,
        platforms=platforms, reason=f"built with {chosen} and pushed",
    )  # fmt: skip


def _import_bento(archive: Path) -> tuple[str, Path]:
    import bentoml

    try:
        bento = bentoml.import_bento(str(archive))
    except bentoml.exceptions.BentoMLException as err:
        if "already exists" not in str(err):
            raise BuildError(f"cannot import bento archive {archive.name}: {err}") from err
        bento = bentoml.get(_tag_from_archive(archive))
    return str(bento.tag), Path(bento.path)


def _tag_from_archive(archive: Path) -> str:
    name, _, version = archive.name.removesuffix(BENTO_SUFFIX).partition("-")
    return f"{name}:{version}"


def _run_buildkit(plan: BuildPlan) -> str:
    env = {**os.environ, "BUILDKITD_FLAGS": "--oci-worker-no-process-sandbox"}
    completed = subprocess.run(
        plan.argv, capture_output=True, text=True, env=env, timeout=BUILD_TIMEOUT_S
    )
    if completed.returncode != 0:
        raise BuildError(f"buildkit build of {plan.image} failed:\n{completed.stderr[-2000:]}")
    try:
        digest = json.loads(plan.metadata_file.read_text())["containerimage.digest"]
    except (OSError, ValueError, KeyError) as err:
        raise BuildError(f"buildkit left no image digest in {plan.metadata_file}") from err
    return str(digest)


def _run_bentoml_containerize(
    backend: str, bento_tag: str, platforms: list[str], image: str
) -> str:
    import bentoml

    try:
        bentoml.container.build(  # type: ignore[call-overload]
            bento_tag, backend=backend, image_tag=(image,), platform=",".join(platforms)
        )
    except bentoml.exceptions.BentoMLException as err:
        raise BuildError(f"bentoml containerize with {backend} failed: {err}") from err
    pushed = subprocess.run(
        [backend if backend != "buildx" else "docker", "push", image],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT_S,
    )  # fmt: skip
    digests = [w for w in pushed.stdout.split() if w.startswith("sha256:")]
    if pushed.returncode != 0 or not digests:
        raise BuildError(f"push of {image} failed:\n{pushed.stderr[-2000:]}")
    return digests[-1]


app = new_app("Build the OCI image of an exported bento (linux/arm64 by default).")


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    archive_uri: Annotated[
        str | None, typer.Option(help="bento archive URI from the build step")
    ] = None,
    archive: Annotated[
        Path | None,
        typer.Option(help="local bento archive, or a directory holding one (an Argo artifact)"),
    ] = None,
    fetch_to: Annotated[
        Path | None,
        typer.Option(help="only download --archive-uri into this directory; build nothing"),
    ] = None,
    platforms: Annotated[str, typer.Option(help="e.g. linux/arm64,linux/amd64")] = "linux/arm64",
    registry: Annotated[str, typer.Option(help="image registry/path")] = "localhost:5000/loopline",
    builder: Annotated[
        str, typer.Option(help="auto|buildkit|docker|buildx|buildctl|podman|buildah")
    ] = "auto",
    skip_if_no_builder: Annotated[
        bool, typer.Option(help="record no image instead of failing")
    ] = False,
) -> None:
    """Build and push the image; write image_ref and image_built to OUT_DIR.

    With ``--fetch-to DIR``, only download ``--archive-uri`` into DIR (the confined half of a
    cluster build) and write no output parameter.
    """
    if fetch_to is not None:
        if archive_uri is None or archive is not None:
            raise ConfigError("--fetch-to DIR takes --archive-uri URI and no --archive")
        fetched = fetch(load_settings(), archive_uri, fetch_to)
        console.print(f"fetched {archive_uri} to {fetched}")
        return
    if builder not in ("auto", "buildkit", *WORKSTATION_BACKENDS):
        raise ConfigError(
            f"--builder {builder!r}: expected auto, buildkit or one of {WORKSTATION_BACKENDS}"
        )
    result = run(
        load_settings(), archive_uri, parse_platforms(platforms), registry,
        builder, skip_if_no_builder, archive,  # type: ignore[arg-type]
    )  # fmt: skip
    write_outputs(
        out_dir,
        "containerize",
        {"image_ref": result.image_ref, "image_built": "true" if result.image_built else "false"},
    )
    write_result(out_dir, result)
    console.print(f"{result.bento_tag}: {result.reason}; image {result.image_ref}")


if __name__ == "__main__":
    app()

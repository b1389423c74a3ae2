"""Containerize step: an exported bento archive -> a linux/arm64 OCI image (by default),
smoke-tested, pushed, its digest read back from the registry.

The image is built by :mod:`steps.image` (no daemon, no privileges, no emulation to build; one
recipe on a workstation, in CI and in a cluster pod), then each platform's image is started
from its unpacked root, under QEMU user emulation when it is foreign, and must score the
bento's held-out rows as the MLflow model does (:mod:`steps.image.smoke`). Only then is it
pushed with skopeo to ``LOOPLINE_IMAGE__REGISTRY`` (``--registry``); the registry's digest must
be the one built. A failed smoke test fails the step and pushes nothing. With the default
loopback registry, the project's own ``docker-registry`` is started first
(:mod:`steps.platform.local.registry`).

The bento comes either from the artifact store (``--archive-uri URI``) or from a local path
(``--archive PATH``: a ``.bento`` file, or a directory holding exactly one). On a cluster the
work is split in two pods so that the one talking to the registry holds no S3 or MLflow
credentials: a pod runs ``--archive-uri URI --fetch-to DIR``, which only downloads the archive
into ``DIR`` (saved by Argo as an artifact), and the image pod receives that artifact and runs
``--archive DIR``. The deploy step records the image on the MLflow model version.

CLI: ``python -m steps.containerize (--archive-uri URI | --archive PATH) --out-dir DIR``; outputs
``image_ref`` (``registry/name:version@sha256:...``) and ``image_built`` (``true``). With
``--fetch-to DIR`` it writes no output parameter.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer
from pydantic import BaseModel

from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import BuildError, ConfigError
from steps.core.outputs import write_outputs, write_result
from steps.core.platforms import parse_platforms
from steps.core.settings import Settings, load_settings
from steps.image import builder, oci, push, recipe, smoke
from steps.io.artifact_store import ArtifactStore
from steps.platform.local import registry as local_registry

BENTO_SUFFIX = ".bento"
SOURCE = "https://github.com/loopline/loopline"
"""The ``org.opencontainers.image.source`` label: where the recipe comes from."""


class ContainerizeResult(BaseModel):
    """The image built, where it went, and what its smoke test measured."""

    bento_tag: str
    image_ref: str
    image_built: bool
    platforms: list[str]
    layers: dict[str, dict[str, dict[str, int | float | str]]]
    """Per platform, per layer: digest, compressed and unpacked bytes, seconds to build."""
    smoke: list[dict[str, float | int | str | bool]]
    seconds: float
    reason: str


def image_name(registry: str, bento_tag: str) -> str:
    """Return ``registry/name:version`` for a bento tag (``name:version``).

    Raises:
        ConfigError: when the registry is empty or carries a scheme.
    """
    if not registry or "://" in registry:
        raise ConfigError(f"--registry {registry!r}: expected host[:port]/path, no scheme")
    name, _, version = bento_tag.partition(":")
    return f"{registry.rstrip('/')}/{name}:{version}"


def labels(bento: recipe.Bento) -> dict[str, str]:
    """The image's OCI labels: source, revision, title, and the model's name, version and run
    (from the metadata the build step packed with the model).

    Raises:
        BuildError: when the bento's model has no readable ``metadata.json``.
    """
    found = sorted(bento.directory.glob("models/*/*/metadata.json"))
    try:
        metadata = json.loads(found[0].read_text())
    except (IndexError, OSError, ValueError) as err:
        raise BuildError(f"{bento.directory}: no readable models/*/*/metadata.json") from err
    return {
        "org.opencontainers.image.source": SOURCE,
        "org.opencontainers.image.revision": str(metadata.get("git_commit") or "unknown"),
        "org.opencontainers.image.title": bento.tag,
        "org.opencontainers.image.version": str(metadata.get("model_version") or ""),
        "ai.loopline.model.name": str(metadata.get("model_name") or ""),
        "ai.loopline.model.version": str(metadata.get("model_version") or ""),
        "ai.loopline.mlflow.run_id": str(metadata.get("run_id") or ""),
    }


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
    registry: str | None = None,
    archive_path: Path | None = None,
) -> ContainerizeResult:
    """Import the bento archive, build its image, smoke-test it, push it.

    Args:
        settings: where BentoML keeps the imported bento, the artifact store, the image cache
            (``<state_dir>/cache/image``) and the registry (``image``).
        archive_uri: the archive in the artifact store; ``None`` when ``archive_path`` is given.
        platforms: the image platforms; more than one gives an image index.
        registry: ``host[:port]/path`` the image is pushed to; ``None``: the setting.
        archive_path: a local archive (file or directory, :func:`local_archive`); the step
            then never talks to the artifact store.

    Raises:
        ConfigError: when both or neither of ``archive_uri`` and ``archive_path`` are given, or
            the local archive is missing.
        BuildError: when a layer cannot be built, the smoke test fails (nothing is pushed), or
            the push fails.
        StoreError: when the archive cannot be fetched.
    """
    if (archive_uri is None) == (archive_path is None):
        raise ConfigError("give exactly one of --archive-uri URI and --archive PATH")
    started = time.perf_counter()
    target = settings.image if registry is None else settings.image.model_copy(
        update={"registry": registry})  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="loopline-image-") as scratch_dir:
        scratch = Path(scratch_dir)
        if archive_path is not None:
            archive = local_archive(archive_path)
        else:
            assert archive_uri is not None  # checked above
            archive = fetch(settings, archive_uri, scratch)
        bento = recipe.read_bento(unpack_archive(archive, scratch / "bento"))
        reference = image_name(target.registry, bento.tag)
        rows, expected = smoke.smoke_rows(bento.directory)
        built = builder.build(bento, platforms, labels(bento), scratch / "layout",
                              settings.image_cache, target.debian_mirror,
                              progress=lambda line: console.print(f"  {line}"))  # fmt: skip
        reports = []
        for platform in platforms:
            console.print(f"  {platform}: smoke test (held-out rows vs the MLflow model)")
            report = smoke.smoke_test(built.layout, platform, rows, expected,
                                      target.smoke_timeout_s)  # fmt: skip
            console.print(f"  {platform}: ready in {report.seconds_to_ready:.1f} s"
                          f"{' under emulation' if report.emulated else ''}, {report.rows} rows "
                          f"within {report.max_abs_diff:.1g} of MLflow")  # fmt: skip
            reports.append(report)
        if target.is_local:
            local_registry.ensure_running(settings.model_copy(update={"image": target}))
        digest = push.push(built.layout, built.tag, reference, target.verify_tls)
        if digest != built.top.digest:
            raise BuildError(
                f"{reference}: the registry serves {digest}, the build wrote {built.top.digest}"
            )
    return ContainerizeResult(
        bento_tag=bento.tag, image_ref=f"{reference}@{digest}", image_built=True,
        platforms=platforms,
        layers={image.platform: {name: {"digest": layer.blob.digest, "bytes": layer.blob.size,
                                        "unpacked_bytes": layer.unpacked_bytes,
                                        "seconds": image.seconds.get(name, 0.0)}
                                 for name, layer in image.layers.items()}
                for image in built.images},
        smoke=[vars(report) for report in reports],
        seconds=round(time.perf_counter() - started, 2),
        reason="built, smoke-tested and pushed",
    )  # fmt: skip


def unpack_archive(archive: Path, dest: Path) -> Path:
    """Extract a bento archive (``bentoml export``: the bento with its models) into ``dest``.

    Raises:
        BuildError: naming the archive when it is not a readable tar or writes outside ``dest``.
    """
    failure = f"{archive.name}: not a bento archive (a tar from bentoml export)"
    oci.extract(archive, dest, failure, absolute_links=False)
    return dest


app = new_app("Build, smoke-test and push the OCI image of an exported bento (linux/arm64).")


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
    platforms: Annotated[
        str | None,
        typer.Option(help="e.g. linux/arm64,linux/amd64; unset: LOOPLINE_IMAGE__PLATFORMS"),
    ] = None,
    registry: Annotated[
        str | None, typer.Option(help="host[:port]/path; unset: LOOPLINE_IMAGE__REGISTRY")
    ] = None,
) -> None:
    """Build, smoke-test and push the image; write image_ref and image_built to OUT_DIR.

    With ``--fetch-to DIR``, only download ``--archive-uri`` into DIR (the credentialed half of
    a cluster build) and write no output parameter.
    """
    settings = load_settings()
    if fetch_to is not None:
        if archive_uri is None or archive is not None:
            raise ConfigError("--fetch-to DIR takes --archive-uri URI and no --archive")
        fetched = fetch(settings, archive_uri, fetch_to)
        console.print(f"fetched {archive_uri} to {fetched}")
        return
    chosen = parse_platforms(platforms or settings.image.platforms)
    result = run(settings, archive_uri, chosen, registry, archive)
    write_outputs(out_dir, "containerize", {"image_ref": result.image_ref, "image_built": "true"})
    write_result(out_dir, result)
    console.print(f"{result.bento_tag}: {result.reason} in {result.seconds:.1f} s; "
                  f"image {result.image_ref}")  # fmt: skip


if __name__ == "__main__":
    app()

"""Build the model image of a bento as an OCI layout, without a daemon or privileges.

:func:`build` writes, for each platform asked for, the three layers of :mod:`steps.image.recipe`
and the image's configuration and manifest, then one index over them when several platforms
are asked for. Nothing runs as root and nothing runs the target's binaries: the base layer's
packages are only extracted (``mmdebstrap --mode=chrootless --variant=extract``), the wheels are
chosen by uv for the target platform, and bytecode is compiled by this interpreter (the
target's is the same Python 3.11). So the same builder serves a workstation, CI and a
restricted pod on any node.

The base and site layers are cached in ``cache_dir`` under a key of their inputs (platform,
suite and packages; platform and the requirements file): a second build only writes the app
layer. Same inputs, same digests: the base layer stays the same while its cache file is kept;
rebuilt later, it takes whatever Debian's mirror serves then (security updates), so it is
reproducible from the cache, not from the mirror.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from steps.core.errors import BuildError
from steps.image import oci, recipe

TOOL_TIMEOUT_S = 1800
Progress = Callable[[str], None]


@dataclass(frozen=True)
class PlatformImage:
    """One platform's image in the layout."""

    platform: str
    manifest: oci.Blob
    layers: dict[str, oci.Layer]
    seconds: dict[str, float] = field(default_factory=dict)
    """Seconds spent on each layer (0 when it came from the cache)."""


@dataclass(frozen=True)
class BuiltImage:
    """An OCI layout holding the image (or index) of a bento, tagged ``tag``."""

    layout: Path
    tag: str
    top: oci.Blob
    images: list[PlatformImage]


def build(
    bento: recipe.Bento,
    platforms: list[str],
    labels: dict[str, str],
    layout: Path,
    cache_dir: Path,
    mirror: str,
    progress: Progress = lambda _line: None,
) -> BuiltImage:
    """Build the image of ``bento`` for ``platforms`` into the OCI layout ``layout``.

    Raises:
        BuildError: naming the platform and the tool when a layer cannot be built.
    """
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True, exist_ok=True)
    tag = bento.tag.partition(":")[2]
    images = []
    for platform in platforms:
        arch = recipe.architecture(platform)
        seconds: dict[str, float] = {}
        base_inputs = (recipe.SUITE, *recipe.BASE_PACKAGES, mirror)
        site_inputs = (bento.requirements.read_text(),)
        layers = {
            "base": _cached(
                Cached(cache_dir, blobs, "base", arch, base_inputs),
                functools.partial(_base_root, arch=arch, mirror=mirror),
                seconds,
                progress,
            ),
            "site": _cached(
                Cached(cache_dir, blobs, "site", arch, site_inputs),
                functools.partial(_site_root, arch=arch, requirements=bento.requirements),
                seconds,
                progress,
            ),
        }
        started = time.perf_counter()
        progress(f"{platform}: app layer (bento {bento.tag})")
        with tempfile.TemporaryDirectory(prefix="loopline-app-") as scratch:
            layers["app"] = oci.write_layer(
                _app_root(Path(scratch), bento), blobs, {recipe.HOME.lstrip("/"): recipe.UID}
            )
        seconds["app"] = round(time.perf_counter() - started, 2)
        config = recipe.image_config(
            arch, bento, labels, [layer.diff_id for layer in layers.values()]
        )
        config_blob = oci.write_json_blob(blobs, oci.CONFIG, config)
        document = oci.manifest(config_blob, list(layers.values()), labels)
        manifest = oci.write_json_blob(blobs, oci.MANIFEST, document)
        images.append(PlatformImage(platform, manifest, layers, seconds))
    if len(images) == 1:
        top = images[0].manifest
    else:
        pairs = [(image.manifest, recipe.architecture(image.platform)) for image in images]
        top = oci.write_json_blob(blobs, oci.INDEX, oci.index(pairs, labels))
    oci.write_layout(layout, top, tag)
    return BuiltImage(layout, tag, top, images)


@dataclass(frozen=True)
class Cached:
    """A cached layer: its name, architecture and inputs (the cache key), where the cache is,
    and the layout's blob directory it is copied into."""

    cache_dir: Path
    blobs: Path
    name: str
    arch: str
    inputs: tuple[str, ...]


def _cached(
    layer_of: Cached,
    make_root: Callable[[Path], None],
    seconds: dict[str, float],
    progress: Progress,
) -> oci.Layer:
    """The layer from the cache, or built from ``make_root`` and cached; its seconds recorded."""
    cache_dir, blobs, name, arch = layer_of.cache_dir, layer_of.blobs, layer_of.name, layer_of.arch
    key = recipe.cache_key(name, arch, *layer_of.inputs)
    record = cache_dir / f"{name}-{arch}-{key}.json"
    try:
        layer = oci.Layer.from_json(json.loads(record.read_text()))
        cached = cache_dir / layer.blob.digest.removeprefix("sha256:")
        if cached.is_file():
            shutil.copyfile(cached, blobs / cached.name)
            progress(f"linux/{arch}: {name} layer from the cache ({layer.blob.size / 1e6:.0f} MB)")
            seconds[name] = 0.0
            return layer
    except (OSError, ValueError, KeyError):
        pass
    started = time.perf_counter()
    progress(f"linux/{arch}: building the {name} layer")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"loopline-{name}-") as scratch:
        root = Path(scratch) / "root"
        make_root(root)
        _compile_bytecode(root)
        layer = oci.write_layer(root, cache_dir)
    shutil.copyfile(cache_dir / layer.blob.digest.removeprefix("sha256:"),
                    blobs / layer.blob.digest.removeprefix("sha256:"))  # fmt: skip
    record.write_text(json.dumps(layer.to_json(), sort_keys=True))
    seconds[name] = round(time.perf_counter() - started, 2)
    progress(f"linux/{arch}: {name} layer built in {seconds[name]:.1f} s "
             f"({layer.blob.size / 1e6:.0f} MB)")  # fmt: skip
    return layer


def _base_root(root: Path, arch: str, mirror: str) -> None:
    """Extract the base packages (and their dependencies) for ``arch`` into ``root``."""
    packages = ",".join(recipe.BASE_PACKAGES)
    argv = ["mmdebstrap", "--quiet", "--mode=chrootless", "--variant=extract", f"--arch={arch}",
            f"--include={packages}", recipe.SUITE, str(root), mirror]  # fmt: skip
    _run(argv, f"linux/{arch} base root")
    for cut in recipe.CUT_FROM_BASE:
        shutil.rmtree(root / cut, ignore_errors=True)


def _site_root(root: Path, arch: str, requirements: Path) -> None:
    """Install the locked serving requirements' wheels for ``arch`` into the site directory."""
    uv = Path(sys.executable).with_name("uv")
    argv = [str(uv) if uv.exists() else "uv", "pip", "install", "--quiet", "--no-deps",
            "--only-binary", ":all:", "--python-platform", recipe.UV_PLATFORMS[arch],
            "--python-version", "3.11", "--target", str(root / recipe.SITE_DIR),
            "-r", str(requirements)]  # fmt: skip
    _run(argv, f"linux/{arch} serving requirements")
    for cache in (root / recipe.SITE_DIR).glob("**/__pycache__"):
        shutil.rmtree(cache, ignore_errors=True)


def _app_root(scratch: Path, bento: recipe.Bento) -> Path:
    """The app layer's tree: the bento, the user's home, ``/etc`` files, ``python``, ``/tmp``."""
    root = scratch / "root"
    shutil.copytree(bento.directory, root / recipe.BENTO_DIR.lstrip("/"), symlinks=True)
    for name, text in recipe.SYSTEM_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "tmp").mkdir()
    local_bin = root / "usr" / "local" / "bin"
    local_bin.mkdir(parents=True)
    (local_bin / "python").symlink_to("/usr/bin/python3")
    _compile_bytecode(root)
    return root


def _compile_bytecode(root: Path) -> None:
    """Compile every ``.py`` under ``root`` to unchecked-hash ``.pyc`` (independent of file
    times), recording the paths the image will have."""
    argv = [sys.executable, "-m", "compileall", "-q", "-j", "0", "--invalidation-mode",
            "unchecked-hash", "-s", str(root), "-p", "/", str(root)]  # fmt: skip
    completed = subprocess.run(argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S)
    # compileall exits 1 when a file does not compile (test data of some packages, Python 2
    # files shipped by Debian): those are left as source, as pip leaves them.
    if completed.returncode not in (0, 1):
        raise BuildError(f"bytecode compilation of {root} failed:\n{completed.stderr[-2000:]}")


def _run(argv: list[str], what: str) -> None:
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    try:
        completed = subprocess.run(
            argv, capture_output=True, text=True, timeout=TOOL_TIMEOUT_S, env=env
        )
    except FileNotFoundError as err:
        raise BuildError(f"{what}: {argv[0]} is not installed (make system-packages)") from err
    except subprocess.TimeoutExpired as err:
        raise BuildError(f"{what}: {argv[0]} took longer than {TOOL_TIMEOUT_S} s") from err
    if completed.returncode != 0:
        tail = (completed.stderr or completed.stdout)[-2000:]
        raise BuildError(f"{what}: {argv[0]} exited {completed.returncode}:\n{tail}")

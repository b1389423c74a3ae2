"""The one description of the model image: what every layer holds and how the image runs.

The image is three layers, each cached on its own inputs:

1. **base**: Debian ``bookworm`` packages for the target architecture, extracted without
   running maintainer scripts (:data:`BASE_PACKAGES`, their dependencies, nothing else): a
   Python 3.11 interpreter and its standard library. Documentation, manual pages and locales are
   cut (:data:`CUT_FROM_BASE`).
2. **site**: the bento's locked serving requirements (``env/python/requirements.txt``, the
   kind's ``serving/requirements*.lock``) as wheels for the target platform, in
   :data:`SITE_DIR`, where Debian's interpreter looks (and reads ``.pth`` files).
3. **app**: the bento in :data:`BENTO_DIR` (read-only, owned by root), the user
   :data:`USER` (uid :data:`UID`) with its home, ``/etc/hosts`` (``localhost``, which BentoML
   binds its internal ports on), and ``python`` on ``PATH``.

Every file's Python bytecode is compiled at build time as unchecked-hash ``.pyc`` (valid
whatever the file times, so reproducible), which is what lets the image start in seconds under
emulation rather than compiling the standard library and BentoML at every start.

The image runs :data:`ENTRYPOINT` + :data:`CMD`: ``serving.launch``, BentoML's own worker for
the bento in one process (what ``bentoml serve`` runs, without its supervisor; see
``serving/launch.py``), listening on :data:`PORT`, with the bento's ``envs`` applied.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from steps.core.errors import BuildError

SUITE = "bookworm"
BASE_PACKAGES = ("python3-minimal", "libpython3.11-stdlib", "libstdc++6", "libgomp1")
"""``ca-certificates`` is left out: the service makes no outbound TLS call of its own (the
inference log's S3 client uses certifi's bundle from the site layer)."""
CUT_FROM_BASE = ("usr/share/doc", "usr/share/man", "usr/share/locale", "usr/share/info",
                 "usr/share/lintian", "var/cache/apt", "var/lib/apt/lists", "var/log")  # fmt: skip
PYTHON = "python3.11"
SITE_DIR = f"usr/local/lib/{PYTHON}/dist-packages"
"""On the interpreter's path as Debian builds it; no ``PYTHONPATH`` needed."""
USER, UID = "bentoml", 1034
"""BentoML's own image user and uid."""
HOME = f"/home/{USER}"
BENTO_DIR = f"{HOME}/bento"
WORKDIR = f"{BENTO_DIR}/src"
PORT = 3000
ENTRYPOINT = ("python3", "-m", "serving.launch")
CMD = (BENTO_DIR, "--host", "0.0.0.0", "--port", str(PORT))  # noqa: S104 (a container's port)
ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": HOME,
    "LANG": "C.UTF-8",
    "PYTHONUNBUFFERED": "1",
    "PYTHONDONTWRITEBYTECODE": "1",
    "BENTOML_HOME": "/tmp/bentoml",
    "LOOPLINE_SERVING__LOG_DIR": "/tmp/inference-log",
}
"""The image's environment before the bento's ``envs`` (which win)."""
ARCHITECTURES = {"linux/arm64": "arm64", "linux/amd64": "amd64"}
"""Supported platforms and their Debian (and OCI) architecture names."""
UV_PLATFORMS = {"arm64": "aarch64-unknown-linux-gnu", "amd64": "x86_64-unknown-linux-gnu"}
QEMU = {"arm64": "qemu-aarch64-static", "amd64": "qemu-x86_64-static"}
SYSTEM_FILES = {
    "etc/passwd": f"root:x:0:0:root:/root:/usr/sbin/nologin\n"
    f"{USER}:x:{UID}:{UID}::{HOME}:/usr/sbin/nologin\n",
    "etc/group": f"root:x:0:\n{USER}:x:{UID}:\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
}


@dataclass(frozen=True)
class Bento:
    """What the image needs to know of the bento it packs."""

    directory: Path
    tag: str
    envs: dict[str, str]
    requirements: Path


def read_bento(directory: Path) -> Bento:
    """Read a built bento's tag, ``envs`` and locked requirements.

    Raises:
        BuildError: naming the file when the bento lacks ``bento.yaml`` or the requirements, or
            its ``envs`` are not a list of ``{name, value}``.
    """
    manifest = directory / "bento.yaml"
    requirements = directory / "env" / "python" / "requirements.txt"
    try:
        document = yaml.safe_load(manifest.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise BuildError(f"{manifest}: cannot read the bento's manifest: {err}") from err
    if not requirements.is_file():
        raise BuildError(
            f"{requirements}: missing; expected a bento built with a requirements lock"
        )
    envs: dict[str, str] = {}
    for entry in document.get("envs") or []:
        if not isinstance(entry, dict) or "name" not in entry:
            raise BuildError(f"{manifest}: envs: expected a list of {{name, value}}, got {entry!r}")
        envs[str(entry["name"])] = "" if entry.get("value") is None else str(entry["value"])
    tag = f"{document.get('name')}:{document.get('version')}"
    return Bento(directory=directory, tag=tag, envs=envs, requirements=requirements)


def architecture(platform: str) -> str:
    """Return the architecture of ``platform`` (``linux/arm64`` -> ``arm64``).

    Raises:
        BuildError: for a platform the image is not built for, naming those it is.
    """
    if platform not in ARCHITECTURES:
        raise BuildError(f"platform {platform!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[platform]


def image_config(
    arch: str, bento: Bento, labels: dict[str, str], diff_ids: list[str]
) -> dict[str, Any]:
    """Return the OCI image configuration (``application/vnd.oci.image.config.v1+json``)."""
    environment = {**ENV, **bento.envs}
    return {
        "architecture": arch,
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "User": f"{UID}:{UID}",
            "Env": [f"{name}={value}" for name, value in environment.items()],
            "Entrypoint": list(ENTRYPOINT),
            "Cmd": list(CMD),
            "WorkingDir": WORKDIR,
            "ExposedPorts": {f"{PORT}/tcp": {}},
            "Labels": dict(sorted(labels.items())),
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [
            {"created": "1970-01-01T00:00:00Z", "created_by": f"loopline image: {layer}"}
            for layer in ("base", "site", "app")
        ],
    }


def cache_key(*parts: str) -> str:
    """A short stable key of a layer's inputs (for its cache file name)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]

"""A track of the local stack: a real BentoML server of a release's bento archive.

As a cluster pulls an image, the stack fetches the release's exported bento from the artifact
store (``file://`` or ``s3://``), imports it into the stack's own BentoML home and serves it by
tag, one worker in one process (:mod:`serving.launch`). A bento served outside a container
does not get the bento's ``envs`` applied, so they are set
here, as the image would, plus where the inference log goes (where the drift monitor reads it),
and, on the canary track only, the drill faults of ``LOOPLINE_STACK__CANARY_FAULT_*``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from serving.settings import ENV_PREFIX, server_environment
from steps.core.errors import DeployError
from steps.core.settings import Settings, StackSettings
from steps.io.artifact_store import ArtifactStore
from steps.platform.base import Release, Track
from steps.platform.local import processes
from steps.platform.local.haproxy import track_port
from steps.platform.local.state import StackPaths

IMPORT_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Bento:
    """A bento archive's identity and the environment its image would set."""

    tag: str
    envs: dict[str, str]


def read_bento(archive: Path) -> Bento:
    """Read the tag and ``envs`` from an exported bento's ``bento.yaml``.

    Raises:
        DeployError: when the archive is not a bento (naming the file).
    """
    try:
        with tarfile.open(archive) as bundle:
            member = bundle.extractfile("./bento.yaml")
            info: dict[str, Any] = yaml.safe_load(member.read()) if member else {}
    except (tarfile.TarError, KeyError, OSError, yaml.YAMLError) as err:
        raise DeployError(f"{archive} is not a bento archive (no bento.yaml): {err}") from err
    envs = {str(item["name"]): str(item.get("value", "")) for item in info.get("envs") or []}
    return Bento(tag=f"{info['name']}:{info['version']}", envs=envs)


def fetch_bento(settings: Settings, paths: StackPaths, release: Release) -> Bento:
    """Download the release's archive and import it into the stack's BentoML home (once).

    Raises:
        StoreError: when the archive cannot be read from the artifact store.
        DeployError: when it is not a bento or ``bentoml import`` fails.
    """
    archive = paths.root / "archives" / Path(release.artifact).name
    if not archive.is_file():
        ArtifactStore(settings).download(release.artifact, archive)
    bento = read_bento(archive)
    name, _, version = bento.tag.partition(":")
    if not (paths.bentoml_home / "bentos" / name / version / "bento.yaml").is_file():
        done = subprocess.run(
            [sys.executable, "-m", "bentoml", "import", str(archive)],
            env={
                **os.environ,
                "BENTOML_HOME": str(paths.bentoml_home),
                "BENTOML_DO_NOT_TRACK": "True",
            },
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            raise DeployError(
                f"bentoml import of {release.artifact} failed ({done.returncode}): "
                f"{(done.stderr or done.stdout)[-2000:]}"
            )
    return bento


def serve_command(
    settings: Settings, paths: StackPaths, track: Track, bento: Bento
) -> tuple[list[str], dict[str, str]]:
    """The argv serving ``bento`` on ``track``'s port, and the variables it sets on top of the
    inherited environment (see :func:`environment`).

    One worker in one process (:mod:`serving.launch`), as a pod runs it.
    """
    stack = settings.stack
    own = {
        **bento.envs,
        "BENTOML_HOME": str(track_home(paths, track)),
        "BENTOML_DO_NOT_TRACK": "True",
        "PYTHONPYCACHEPREFIX": str(settings.state_path / "pycache"),
        # where steps.drift reads by default: the stack's traffic is the monitored traffic
        "LOOPLINE_SERVING__LOG_DIR": settings.drift.log_uri
        or str(settings.state_path / "inference-log"),
    }
    if settings.s3.endpoint_url:
        own["LOOPLINE_SERVING__S3_ENDPOINT_URL"] = settings.s3.endpoint_url
    if track == "canary":
        own.update(canary_faults(stack))
    port = str(track_port(stack, track))
    argv = [
        sys.executable,
        "-m",
        "serving.launch",
        bento.tag,
        "--host",
        stack.host,
        "--port",
        port,
    ]
    return argv, own


def canary_faults(stack: StackSettings) -> dict[str, str]:
    """The serving settings injecting the stack's drill faults into the canary's server.

    Returns:
        ``LOOPLINE_SERVING__FAULT_ERROR_RATIO`` and ``LOOPLINE_SERVING__FAULT_DELAY_MS`` when
        non-zero (exact ``repr`` values), else nothing: a server without them has no faults.
    """
    faults = {
        "FAULT_ERROR_RATIO": stack.canary_fault_error_ratio,
        "FAULT_DELAY_MS": stack.canary_fault_delay_ms,
    }
    return {f"{ENV_PREFIX}{name}": repr(value) for name, value in faults.items() if value}


def track_home(paths: StackPaths, track: Track) -> Path:
    """Create (once) and return ``track``'s BentoML home: the stack's bentos and models through
    symlinks, everything else (the Prometheus multiprocess directory) its own."""
    home = paths.track_home(track)
    home.mkdir(parents=True, exist_ok=True)
    for shared in ("bentos", "models"):
        (paths.bentoml_home / shared).mkdir(parents=True, exist_ok=True)
        link = home / shared
        if not link.is_symlink():
            link.symlink_to(paths.bentoml_home / shared, target_is_directory=True)
    return home


def environment(own: dict[str, str]) -> dict[str, str]:
    """The server's environment: this process' without its serving settings, plus ``own``."""
    return server_environment(os.environ, own)


def url(settings: Settings, track: Track) -> str:
    """The base URL of ``track``'s server."""
    return f"http://{settings.stack.host}:{track_port(settings.stack, track)}"


def is_ready(base_url: str) -> bool:
    """True when the server answers ``/readyz`` with 200."""
    return processes.answers_ok(f"{base_url}/readyz")

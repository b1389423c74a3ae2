"""The project's own OCI registry: Debian's ``docker-registry`` (distribution 2.8) as a plain
process on the loopback address of ``LOOPLINE_IMAGE__REGISTRY``, storing blobs under the state
directory (``registry/``). Started on first push, like the stack's other parts; stopped by
``loopline stack down``.
"""

from __future__ import annotations

from pathlib import Path

import yaml

from steps.core.errors import StackError
from steps.core.settings import Settings
from steps.platform.local import processes

PART = "registry"
START_TIMEOUT_S = 30.0


def paths(settings: Settings) -> tuple[Path, Path, Path, Path]:
    """The registry's configuration, storage, pid file and log."""
    root = settings.state_path / "registry"
    return root / "config.yml", root / "storage", root / "registry.pid", root / "registry.log"


def config(address: str, storage: Path) -> dict[str, object]:
    """The registry's configuration: filesystem storage, loopback only, no auth (local)."""
    return {
        "version": 0.1,
        "log": {"level": "warn"},
        "storage": {"filesystem": {"rootdirectory": str(storage)}, "delete": {"enabled": True}},
        "http": {"addr": address},
    }


def ensure_running(settings: Settings) -> str:
    """Start the registry of ``settings.image.registry`` unless it already answers; return its
    base URL.

    Raises:
        StackError: when the registry is not a loopback one, ``docker-registry`` is missing, or
            it does not answer within START_TIMEOUT_S (with the end of its log).
    """
    image = settings.image
    if not image.is_local:
        raise StackError(
            f"{image.registry}: only a 127.0.0.1 or localhost registry is started here"
        )
    address = image.registry_host.replace("localhost", "127.0.0.1")
    if ":" not in address:
        address += ":80"
    url = f"http://{address}"
    if processes.answers_ok(f"{url}/v2/"):
        return url
    config_file, storage, pid_file, log = paths(settings)
    storage.mkdir(parents=True, exist_ok=True)
    config_file.write_text(yaml.safe_dump(config(address, storage), sort_keys=True))
    pid = processes.start(["docker-registry", "serve", str(config_file)], pid_file=pid_file,
                          log_file=log, fingerprint=address)  # fmt: skip
    processes.wait_until(PART, pid, lambda: processes.answers_ok(f"{url}/v2/"),
                         START_TIMEOUT_S, log)  # fmt: skip
    return url


def stop(settings: Settings) -> bool:
    """Stop the registry this state directory started; True when one was running."""
    return processes.stop(PART, paths(settings)[2])

"""Push an OCI layout to a registry with skopeo, and read back what the registry holds.

Credentials are never arguments: when ``DOCKER_AUTH_CONFIG`` holds a docker ``config.json``
(the ``loopline-registry`` Secret on a cluster), it is written to a file only this user can
read, handed to skopeo as ``--authfile`` and deleted afterwards; skopeo's own errors are passed
on with that file's path, never its content.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from steps.core.errors import BuildError
from steps.core.redact import redact

AUTH_ENV = "DOCKER_AUTH_CONFIG"
TIMEOUT_S = 1800


def push(layout: Path, tag: str, reference: str, verify_tls: bool) -> str:
    """Copy the image tagged ``tag`` in ``layout`` to ``reference`` (``host/path/name:tag``),
    every platform of an index; return the digest the registry serves for it, read back.

    Raises:
        BuildError: when skopeo fails, or the registry serves another digest than was built.
    """
    with _auth_file() as auth:
        argv = ["skopeo", "copy", "--quiet", "--all", "--preserve-digests",
                f"--dest-tls-verify={str(verify_tls).lower()}", *auth.dest,
                f"oci:{layout}:{tag}", f"docker://{reference}"]  # fmt: skip
        _skopeo(argv, f"push to {reference}")
    return digest_of(raw_manifest(reference, verify_tls))


def raw_manifest(reference: str, verify_tls: bool) -> bytes:
    """Return the manifest (or index) bytes the registry serves for ``reference``.

    Raises:
        BuildError: when skopeo cannot read it.
    """
    with _auth_file() as auth:
        argv = ["skopeo", "inspect", "--raw", f"--tls-verify={str(verify_tls).lower()}",
                *auth.plain, f"docker://{reference}"]  # fmt: skip
        return _skopeo(argv, f"read {reference}").encode()


def config_of(reference: str, verify_tls: bool) -> dict[str, Any]:
    """Return the image configuration the registry serves for ``reference`` (one platform).

    Raises:
        BuildError: when skopeo cannot read it or it is not JSON.
    """
    with _auth_file() as auth:
        argv = ["skopeo", "inspect", "--config", "--raw", f"--tls-verify={str(verify_tls).lower()}",
                *auth.plain, f"docker://{reference}"]  # fmt: skip
        text = _skopeo(argv, f"read the configuration of {reference}")
    try:
        return dict(json.loads(text))
    except ValueError as err:
        raise BuildError(f"{reference}: the registry's image configuration is not JSON") from err


def digest_of(data: bytes) -> str:
    """The ``sha256:`` digest of a manifest's bytes."""
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


class _Auth:
    def __init__(self, path: Path | None) -> None:
        self.dest = [f"--dest-authfile={path}"] if path else []
        self.plain = [f"--authfile={path}"] if path else []


@contextlib.contextmanager
def _auth_file() -> Iterator[_Auth]:
    content = os.environ.get(AUTH_ENV)
    if not content:
        yield _Auth(None)
        return
    try:
        json.loads(content)
    except ValueError as err:
        raise BuildError(f"{AUTH_ENV}: expected a docker config.json (JSON); it is not") from err
    with tempfile.TemporaryDirectory(prefix="loopline-auth-") as private:
        path = Path(private) / "auth.json"
        path.touch(mode=0o600)
        path.write_text(content)
        yield _Auth(path)


def _skopeo(argv: list[str], what: str) -> str:
    try:
        completed = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    except FileNotFoundError as err:
        raise BuildError(f"{what}: skopeo is not installed (make system-packages)") from err
    except subprocess.TimeoutExpired as err:
        raise BuildError(f"{what}: skopeo took longer than {TIMEOUT_S} s") from err
    if completed.returncode != 0:
        raise BuildError(f"{what} failed: {redact(completed.stderr.strip()[-2000:])}")
    return completed.stdout

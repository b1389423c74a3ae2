"""Smoke test of a built image: run it as its configuration says and score known rows.

:func:`smoke_test` unpacks one platform's image from the OCI layout, starts its entrypoint
inside the unpacked root with ``proot`` (no root, no chroot, no daemon: ptrace of its own
child), under QEMU user emulation (``proot -q qemu-<arch>-static``) when the image's
architecture is not this machine's, waits for ``/readyz`` and posts the bento's smoke rows
(held-out rows and the MLflow model's probabilities for them, written by the build step) to
``/predict_batch``. Every probability must equal MLflow's within
:data:`steps.ml.servability.MAX_ABS_DIFF` (the servability check's and deploy's limit).
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import platform as host_platform
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from steps.core import names
from steps.core.errors import BuildError, StackError
from steps.image import oci, recipe
from steps.ml.servability import MAX_ABS_DIFF
from steps.platform.local import processes

PR_SET_DUMPABLE = 4
HOST_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(host_platform.machine(), "")


@dataclass(frozen=True)
class SmokeReport:
    """What the image did when started: seconds to ``/readyz``, rows scored, the largest
    difference from MLflow's probabilities, and whether it ran under emulation."""

    platform: str
    emulated: bool
    seconds_to_ready: float
    rows: int
    max_abs_diff: float


def smoke_rows(bento_dir: Path) -> tuple[list[dict[str, Any]], list[float]]:
    """Return the rows and MLflow's probabilities the build step packed into the bento's model.

    Raises:
        BuildError: naming the file when the bento has none or it is malformed.
    """
    found = sorted(bento_dir.glob(f"models/*/*/{names.SMOKE_ROWS_FILE}"))
    if not found:
        raise BuildError(
            f"{bento_dir}: no models/*/*/{names.SMOKE_ROWS_FILE}; expected a bento built by "
            "steps.build (rebuild it)"
        )
    try:
        document = json.loads(found[0].read_text())
        rows, probabilities = list(document["rows"]), [float(p) for p in document["probabilities"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise BuildError(f"{found[0]}: expected {{rows: [...], probabilities: [...]}}") from err
    if not rows or len(rows) != len(probabilities):
        raise BuildError(f"{found[0]}: expected as many probabilities as rows, at least one")
    return rows, probabilities


def command(
    root: Path, config: dict[str, Any], arch: str, port: int
) -> tuple[list[str], dict[str, str]]:
    """The argv and environment that run the image's entrypoint in ``root`` on
    ``127.0.0.1:port``: the image's own environment only, as a container runtime gives it."""
    settings = config["config"]
    argv = [_which("proot"), "-R", str(root), "-w", settings["WorkingDir"], "-i", settings["User"]]
    if arch != HOST_ARCH:
        argv += ["-q", _which(recipe.QEMU[arch])]
    cmd = [*settings["Cmd"]]
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    env = dict(entry.split("=", 1) for entry in settings["Env"])
    return [*argv, *settings["Entrypoint"], *cmd], env


def _which(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BuildError(f"smoke test: {tool} is not installed (make system-packages)")
    return found


@dataclass(frozen=True)
class Running:
    """An image started from its unpacked root: where it answers, its log, the seconds it took
    to answer ``/readyz``, and whether it runs under emulation."""

    url: str
    log: Path
    seconds_to_ready: float
    emulated: bool


@contextlib.contextmanager
def running(layout: Path, platform: str, timeout_s: float) -> Iterator[Running]:
    """Unpack ``platform``'s image from ``layout``, start it, and yield once it is ready; stop
    it on the way out.

    Raises:
        BuildError: when it exits or is not ready within ``timeout_s`` (with the end of its log).
    """
    arch = recipe.architecture(platform)
    _not_dumpable()
    with tempfile.TemporaryDirectory(prefix="loopline-smoke-") as scratch:
        root, run = Path(scratch) / "root", Path(scratch) / "run"
        config = oci.unpack(layout, arch, root)
        port = _free_port()
        argv, env = command(root, config, arch, port)
        pid_file, log = run / "image.pid", run / "image.log"
        what = f"the {platform} image"
        url = f"http://127.0.0.1:{port}"
        started = time.monotonic()
        pid = processes.start(argv, pid_file=pid_file, log_file=log, fingerprint=platform, env=env)
        try:
            ready = partial(processes.answers_ok, f"{url}/readyz")
            try:
                processes.wait_until(what, pid, ready, timeout_s, log)
            except StackError as err:
                raise BuildError(f"smoke test of {platform}: {err}") from err
            seconds = round(time.monotonic() - started, 2)
            yield Running(url, log, seconds, emulated=arch != HOST_ARCH)
        finally:
            processes.stop(what, pid_file)


def _not_dumpable() -> None:
    """Keep the image's processes (same user) out of this one's ``/proc/PID/environ`` and
    memory, where the registry credentials (``DOCKER_AUTH_CONFIG``) are: the smoke test loads a
    model, and loading a model runs its code (SECURITY.md). ``prctl(PR_SET_DUMPABLE, 0)`` hands
    those files to root; on a kernel without it nothing changes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except (OSError, AttributeError):
        return


def smoke_test(
    layout: Path,
    platform: str,
    rows: list[dict[str, Any]],
    expected: list[float],
    timeout_s: float,
) -> SmokeReport:
    """Start ``platform``'s image from ``layout`` and compare its answers for ``rows``.

    Raises:
        BuildError: when the image does not get ready in ``timeout_s`` (with the end of its
            log), answers with an error, or a probability differs by more than MAX_ABS_DIFF.
    """
    with running(layout, platform, timeout_s) as image:
        try:
            served = _score(image.url, rows, image.log)
        except StackError as err:
            raise BuildError(f"smoke test of {platform}: {err}") from err
    diff = max(abs(a - b) for a, b in zip(served, expected, strict=True))
    if not diff <= MAX_ABS_DIFF:
        raise BuildError(
            f"smoke test of {platform}: the image scores {len(rows)} held-out rows differently "
            f"from the MLflow model: max abs difference {diff:.3g}, expected <= {MAX_ABS_DIFF:g}"
        )
    return SmokeReport(platform, image.emulated, image.seconds_to_ready, len(rows), diff)


def _score(url: str, rows: list[dict[str, Any]], log: Path) -> list[float]:
    try:
        response = httpx.post(f"{url}/predict_batch", json=rows, timeout=120.0)
    except httpx.HTTPError as err:
        raise StackError(f"/predict_batch: {err}") from err
    if response.status_code != 200:
        raise StackError(
            f"/predict_batch answered {response.status_code}: {response.text[:500]}\n"
            f"{processes.log_tail(log)}"
        )
    answers = response.json()
    if not isinstance(answers, list) or len(answers) != len(rows):
        raise StackError(f"/predict_batch answered {len(answers)} rows for {len(rows)}")
    return [float(answer["probability"]) for answer in answers]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])

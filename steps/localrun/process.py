"""Run one node's command as a subprocess: its own session, a deadline, a combined log file.

The process starts in a new session so that a deadline kills its whole process group (a shell
and everything it started), first with SIGTERM and, after a short grace period, SIGKILL.
Standard output and standard error both go to the node's log file; standard output is also kept
because Argo exposes it as ``outputs.result``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

KILL_GRACE_S = 2.0
_POLL_S = 0.05


@dataclass(frozen=True)
class ProcessResult:
    """How a process ended."""

    exit_code: int | None
    stdout: str
    timed_out: bool = False
    cancelled: bool = False
    start_error: str | None = None


def run_process(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log_path: Path,
    deadline: float | None,
    cancel: threading.Event,
) -> ProcessResult:
    """Run ``argv`` until it exits, ``deadline`` (``time.monotonic()``) passes or ``cancel`` is set.

    Returns:
        The exit code (None when the process could not start or was killed), its standard
        output, and whether it was killed for the deadline or a cancellation.
    """
    with log_path.open("ab") as log:
        try:
            process = subprocess.Popen(
                list(argv),
                cwd=cwd,
                env=dict(env),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as err:
            message = f"cannot start {argv[0]!r}: {err.strerror or err}"
            log.write(f"{message}\n".encode())
            return ProcessResult(exit_code=None, stdout="", start_error=message)
        lock = threading.Lock()
        stdout_chunks: list[bytes] = []
        readers = [
            threading.Thread(target=_pump, args=(process.stdout, log, lock, stdout_chunks)),
            threading.Thread(target=_pump, args=(process.stderr, log, lock, None)),
        ]
        for reader in readers:
            reader.start()
        timed_out, cancelled = _wait(process, deadline, cancel)
        for reader in readers:
            reader.join()
    stdout = b"".join(stdout_chunks).decode("utf-8", errors="replace")
    if timed_out or cancelled:
        return ProcessResult(None, stdout, timed_out=timed_out, cancelled=cancelled)
    return ProcessResult(process.returncode, stdout)


def _wait(
    process: subprocess.Popen[bytes], deadline: float | None, cancel: threading.Event
) -> tuple[bool, bool]:
    while True:
        try:
            process.wait(timeout=_POLL_S)
        except subprocess.TimeoutExpired:
            pass
        else:
            # Like a pod whose main container exited: nothing it left behind keeps running.
            _signal_group(process.pid, signal.SIGKILL)
            return False, False
        if cancel.is_set():
            _kill_group(process)
            return False, True
        if deadline is not None and time.monotonic() >= deadline:
            _kill_group(process)
            return True, False


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    for sig, wait_s in ((signal.SIGTERM, KILL_GRACE_S), (signal.SIGKILL, None)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait_s)
            if sig == signal.SIGTERM:
                # The leader exited; make sure nothing it started survives it.
                os.killpg(process.pid, signal.SIGKILL)
            break
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            break
    process.wait()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pump(
    stream: IO[bytes] | None, log: IO[bytes], lock: threading.Lock, keep: list[bytes] | None
) -> None:
    if stream is None:
        return
    with stream:
        for line in iter(stream.readline, b""):
            with lock:
                log.write(line)
                log.flush()
            if keep is not None:
                keep.append(line)

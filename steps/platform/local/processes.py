"""Detached processes with pid files: start, find, measure and stop the stack's parts.

Each part runs in its own session (``start_new_session``), so it outlives the command that
started it and its process group holds every child it forks (BentoML's workers, for one). The
pid file holds the pid, the process' start time (so a reused pid is not mistaken for the part)
and a fingerprint of what was started (so ``stack up`` restarts only what changed).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from steps.core.errors import StackError

LOG_TAIL_LINES = 25
_STARTED: dict[int, subprocess.Popen[bytes]] = {}
"""Parts this process started: kept so each is reaped (no zombie, no ResourceWarning)."""
STOP_DEADLINE_S = 30.0
POLL_S = 0.1


@dataclass(frozen=True)
class Running:
    """A part's process as its pid file records it."""

    pid: int
    fingerprint: str


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of ``/proc/PID/stat`` after the command name (state first), None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def is_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie is not running)."""
    fields = _stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def _start_ticks(pid: int) -> str:
    fields = _stat_fields(pid)
    return fields[19] if fields else ""


def group_members(pgid: int) -> list[int]:
    """Every live process of the part whose process group is ``pgid``: the group's members and
    all their descendants (BentoML starts its workers in process groups of their own, so the
    group alone would miss them and a stopped track would leave its workers running)."""
    table = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[0] not in ("Z", "X"):
                table[int(entry.name)] = fields
    members = {pid for pid, fields in table.items() if fields[2] == str(pgid)}
    children: dict[int, list[int]] = {}
    for pid, fields in table.items():
        children.setdefault(int(fields[1]), []).append(pid)
    pending = list(members)
    while pending:
        for child in children.get(pending.pop(), []):
            if child not in members:
                members.add(child)
                pending.append(child)
    return sorted(members)


def rss_bytes(pids: Sequence[int]) -> int:
    """Resident memory of ``pids`` together, in bytes (0 for processes that are gone)."""
    total = 0
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024
    return total


def read_pid_file(pid_file: Path) -> Running | None:
    """The part recorded in ``pid_file`` if it still runs; None otherwise."""
    try:
        pid_text, ticks, fingerprint = pid_file.read_text().split("\n")[:3]
        pid = int(pid_text)
    except (OSError, ValueError):
        return None
    if not is_alive(pid) or _start_ticks(pid) != ticks:
        return None
    return Running(pid, fingerprint)


def log_tail(log_file: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of a part's log (or a note that it has none)."""
    try:
        text = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {log_file})"
    return "\n".join(text.splitlines()[-lines:])


def start(
    argv: Sequence[str],
    *,
    pid_file: Path,
    log_file: Path,
    fingerprint: str,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> int:
    """Start ``argv`` detached, logging to ``log_file``, and record it in ``pid_file``.

    Raises:
        StackError: when the program cannot be executed (naming it).
    """
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as sink:
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError as err:
            raise StackError(f"{pid_file.stem}: cannot run {argv[0]}: {err}") from err
    _STARTED[process.pid] = process
    pid_file.write_text(f"{process.pid}\n{_start_ticks(process.pid)}\n{fingerprint}\n")
    return process.pid


def _reap(pid: int) -> None:
    """Collect ``pid``'s exit status when this process started it (no zombie left)."""
    process = _STARTED.get(pid)
    if process is not None and process.poll() is not None:
        del _STARTED[pid]


def _wait_reaped(pid: int, timeout_s: float = 5.0) -> None:
    """Collect the exit status of a part this process started, once it is signalled to stop.

    ``/proc`` shows a multi-threaded process (HAProxy, ``bentoml serve``) as a zombie as soon as
    its main thread exits, while its other threads still wind down; until they have, the kernel
    has no exit status to give, so a non-blocking poll would leave it unreaped (and Python warns
    at exit that it is "still running").
    """
    process = _STARTED.pop(pid, None)
    if process is not None:
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _STARTED[pid] = process  # still running: the caller reports the survivor


def wait_until(
    part: str,
    pid: int,
    ready: Callable[[], bool],
    timeout_s: float,
    log_file: Path,
) -> float:
    """Poll ``ready`` until it holds; return the seconds waited.

    Raises:
        StackError: naming ``part`` with the tail of its log, when its process exits or it is
            not ready within ``timeout_s``.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        _reap(pid)
        if not is_alive(pid):
            raise StackError(
                f"{part} exited before it was ready; the end of {log_file}:\n{log_tail(log_file)}"
            )
        if ready():
            return time.monotonic() - started
        time.sleep(POLL_S)
    raise StackError(
        f"{part} was not ready within {timeout_s:.0f} s; the end of {log_file}:\n"
        f"{log_tail(log_file)}"
    )


def stop(part: str, pid_file: Path, deadline_s: float = STOP_DEADLINE_S) -> bool:
    """Stop the part in ``pid_file`` and every process of its group: SIGTERM, then SIGKILL.

    Returns:
        True when a running part was stopped, False when none was running.

    Raises:
        StackError: when a process of the group survives SIGKILL.
    """
    running = read_pid_file(pid_file)
    pid_file.unlink(missing_ok=True)
    if running is None:
        return False
    # Taken before the signal: a descendant outside the group is orphaned once its parent exits.
    members = set(group_members(running.pid))
    _signal_group(running.pid, signal.SIGTERM)
    started = time.monotonic()
    while _alive(members) and time.monotonic() - started < deadline_s:
        members |= set(group_members(running.pid))
        _reap(running.pid)
        time.sleep(POLL_S)
    if _alive(members):
        _signal_group(running.pid, signal.SIGKILL)
        for pid in _alive(members):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(POLL_S)
    _wait_reaped(running.pid)
    survivors = _alive(members)
    if survivors:
        raise StackError(f"{part}: processes {survivors} survived SIGKILL")
    return True


def _alive(pids: set[int]) -> list[int]:
    return sorted(pid for pid in pids if is_alive(pid))


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, sig)


def answers_ok(url: str) -> bool:
    """True when ``url`` answers a GET with 200 within a second (a readiness probe)."""
    import httpx

    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.TransportError:
        return False

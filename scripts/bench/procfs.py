"""Memory of a server's whole process tree, read from /proc (Linux only).

A server is a supervisor plus workers (BentoML's arbiter and service worker, MLServer's main
process and inference pool, ...). :func:`tree_memory` sums the resident set (RSS, what the task
asks for, which counts shared pages once per process) and the proportional set (PSS, shared
pages split between the processes sharing them) over the root process and all its descendants.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessMemory:
    """One process's memory in KiB."""

    pid: int
    command: str
    rss_kib: int
    pss_kib: int


def parent_pid(stat_text: str) -> int:
    """Return the parent pid from the text of ``/proc/<pid>/stat``.

    The command name (field 2) is in parentheses and may itself hold spaces or parentheses, so
    the fields are counted from the last ``)``.

    Raises:
        ValueError: if the text is not in the stat format.
    """
    head, paren, rest = stat_text.rpartition(")")
    fields = rest.split()
    if not paren or not head or len(fields) < 2:
        raise ValueError(f"not a /proc/<pid>/stat line: {stat_text[:80]!r}")
    return int(fields[1])


def status_kib(status_text: str, field: str) -> int:
    """Return ``field`` (e.g. ``VmRSS`` or ``Pss``) in KiB from a /proc status-like text.

    Returns:
        The value, or 0 when the field is absent (a kernel thread or a zombie has no VmRSS).
    """
    for line in status_text.splitlines():
        name, _, value = line.partition(":")
        if name == field:
            return int(value.split()[0])
    return 0


def descendants(root: int, proc: Path = PROC) -> list[int]:
    """Return ``root`` and every live descendant pid, parents before children.

    Returns:
        The pids; only ``[root]`` if it has no children, ``[]`` if it is gone.
    """
    children: dict[int, list[int]] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = parent_pid((entry / "stat").read_text(encoding="utf-8", errors="replace"))
        except (OSError, ValueError):
            continue  # the process exited while we looked
        children.setdefault(ppid, []).append(int(entry.name))
    if not (proc / str(root)).exists():
        return []
    tree = [root]
    for pid in tree:  # grows while iterating: breadth-first
        tree.extend(sorted(children.get(pid, [])))
    return tree


def tree_memory(root: int, proc: Path = PROC) -> list[ProcessMemory]:
    """Return the memory of ``root`` and each of its descendants.

    Returns:
        One entry per live process of the tree.
    """
    found: list[ProcessMemory] = []
    for pid in descendants(root, proc):
        base = proc / str(pid)
        try:
            status = (base / "status").read_text(encoding="utf-8")
            rollup = (base / "smaps_rollup").read_text(encoding="utf-8")
            command = (base / "cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
        except OSError:
            continue
        found.append(
            ProcessMemory(pid, command, status_kib(status, "VmRSS"), status_kib(rollup, "Pss"))
        )
    return found

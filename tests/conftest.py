"""Shared pytest configuration: fixture plugins live in tests/fixtures/, one module per service.

It also guards the working tree: a run that leaves a new file inside the repository, or changes
a tracked one, fails and names the paths (``git status`` must be empty after ``make test``).
Tests write under ``tmp_path``; the tools' own caches are not counted.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

pytest_plugins = [
    "tests.fixtures.common",
    "tests.fixtures.s3",
    "tests.fixtures.mlflow_server",
    "tests.fixtures.training",
    "tests.fixtures.serving",
    "tests.fixtures.kube_api",
]

REPO = Path(__file__).resolve().parent.parent
TOOL_CACHES = frozenset(
    {".venv", ".tools", ".pytest_cache", ".mypy_cache", ".ruff_cache", "__pycache__"}
)
# Every changed, untracked or ignored path, except the virtualenv and uv (big, and not written
# by tests); --no-optional-locks: never rewrite the index while others use the checkout.
GIT_STATUS = [
    "git",
    "--no-optional-locks",
    "status",
    "--porcelain=v1",
    "-z",
    "--untracked-files=all",
    "--ignored",
    "--",
    ".",
    ":(exclude).venv",
    ":(exclude).tools",
]
STATUS_AT_START = pytest.StashKey[frozenset[str]]()
STRAY_PATHS = pytest.StashKey[list[str]]()


def working_tree_status() -> frozenset[str] | None:
    """Return ``git status`` entries: changed, untracked and ignored paths, without tool caches.

    Returns:
        One ``XY path`` entry per path; None when the repository is not a git checkout.
    """
    if not (REPO / ".git").exists():
        return None
    done = subprocess.run(GIT_STATUS, cwd=REPO, capture_output=True, check=True, timeout=120)
    entries = done.stdout.decode().split("\0")
    return frozenset(
        entry for entry in entries if entry and not TOOL_CACHES & set(Path(entry[3:]).parts)
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")  # an xdist worker: the controller checks


def pytest_sessionstart(session: pytest.Session) -> None:
    status = None if _is_worker(session.config) else working_tree_status()
    if status is not None:
        session.stash[STATUS_AT_START] = status


def pytest_sessionfinish(session: pytest.Session) -> None:
    before = session.stash.get(STATUS_AT_START, None)
    after = working_tree_status() if before is not None else None
    if before is None or after is None:
        return
    stray = sorted(after - before)
    if stray:
        session.config.stash[STRAY_PATHS] = stray
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    stray = terminalreporter.config.stash.get(STRAY_PATHS, None)
    if stray:
        title = "the working tree changed during the run: tests must write under tmp_path"
        terminalreporter.section(title, sep="=", red=True)
        for entry in stray:
            terminalreporter.line(entry)

"""The Makefile's own behaviour: what ``make help`` prints and what ``make clean`` removes.

Only ``make help``, dry runs (``make -n``) and runs whose ``rm`` is a recording stand-in are
made here: a test must never remove the state or caches of the working tree it runs in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    make = shutil.which("make")
    assert make is not None, "make is not on PATH"
    environ = {k: v for k, v in os.environ.items() if k not in ("LOOPLINE_STATE_DIR", "MAKEFLAGS")}
    return subprocess.run(
        [make, "--no-print-directory", *args],
        cwd=REPO,
        env={**environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
    )


def _help(*args: str) -> dict[str, str]:
    done = _make("-s", "help", *args)
    assert done.returncode == 0, done.stderr
    lines = [ANSI.sub("", line).strip() for line in done.stdout.splitlines() if line.strip()]
    return dict(line.split(maxsplit=1) for line in lines)


def test_help_prints_the_real_port_and_no_make_syntax() -> None:
    tasks = _help()

    assert not [text for text in tasks.values() if "$(" in text or "$$" in text]
    assert "127.0.0.1:3000" in tasks["serve"]


def test_help_prints_the_port_given_to_make() -> None:
    assert "127.0.0.1:3100 " in _help("SERVE_PORT=3100")["serve"]


def test_help_says_demo_runs_the_whole_workflow() -> None:
    demo = _help()["demo"]

    steps = ["train", "evaluate", "register", "build", "containerize", "deploy", "promote"]
    assert [demo.find(step) >= 0 for step in steps] == [True] * len(steps)
    assert [demo.find(step) for step in steps] == sorted(demo.find(step) for step in steps)


def _removed_by_dry_run(*args: str, env: dict[str, str] | None = None) -> str:
    done = _make("-n", "clean", *args, env=env)
    assert done.returncode == 0, done.stderr
    (removal,) = [line for line in done.stdout.splitlines() if line.startswith("rm -rf ")]
    return removal


def test_clean_removes_the_state_dir_given_on_the_command_line() -> None:
    removal = _removed_by_dry_run("LOOPLINE_STATE_DIR=/tmp/x")

    assert removal.split()[2] == "'/tmp/x'"
    assert "'.loopline'" not in removal


def test_clean_removes_the_state_dir_of_the_environment() -> None:
    removal = _removed_by_dry_run(env={"LOOPLINE_STATE_DIR": "/tmp/y"})

    assert removal.split()[2] == "'/tmp/y'"


def test_clean_removes_dot_loopline_by_default() -> None:
    removal = _removed_by_dry_run()

    assert removal.split()[2] == "'.loopline'"


def test_clean_stops_the_stack_of_that_state_dir_first() -> None:
    done = _make("-n", "clean", "LOOPLINE_STATE_DIR=/tmp/x")
    lines = done.stdout.splitlines()

    stop = next(i for i, line in enumerate(lines) if "loopline stack down" in line)
    removal = next(i for i, line in enumerate(lines) if line.startswith("rm -rf "))
    assert stop < removal
    assert "LOOPLINE_STATE_DIR='/tmp/x'" in lines[stop]


@pytest.fixture
def recording_rm(tmp_path: Path) -> tuple[dict[str, str], Path]:
    """An environment whose ``rm`` only records its arguments, and the record's path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    record = tmp_path / "rm-calls"
    stand_in = bin_dir / "rm"
    stand_in.write_text(f'#!/bin/sh\necho "$@" >> {record}\n')
    stand_in.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}"}, record


def test_clean_runs_rm_on_the_state_dir_when_it_is_elsewhere(
    recording_rm: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, record = recording_rm
    state = tmp_path / "state"

    done = _make("-s", "clean", f"LOOPLINE_STATE_DIR={state}", "VENV_STAMP=/nonexistent", env=env)

    assert done.returncode == 0, done.stderr
    assert record.read_text().split()[:2] == ["-rf", str(state)]


@pytest.mark.parametrize(
    "state_dir",
    ["/", ".", "..", "/..", str(REPO), str(REPO) + "/", str(REPO / "steps" / "..")],
    ids=["root", "dot", "parent", "root-parent", "repo", "repo-slash", "repo-dotdot"],
)
def test_clean_refuses_a_state_dir_holding_the_repository(
    recording_rm: tuple[dict[str, str], Path], state_dir: str
) -> None:
    env, record = recording_rm

    done = _make("-s", "clean", f"LOOPLINE_STATE_DIR={state_dir}", "VENV_STAMP=/none", env=env)

    assert done.returncode == 2
    assert "make clean: refusing to remove" in done.stderr
    assert not record.exists()


def test_clean_refuses_the_home_directory(
    recording_rm: tuple[dict[str, str], Path], tmp_path: Path
) -> None:
    env, record = recording_rm
    home = tmp_path / "home"

    done = _make("-s", "clean", f"LOOPLINE_STATE_DIR={home}/", env={**env, "HOME": str(home)})

    assert done.returncode == 2
    assert f"refusing to remove '{home}'" in done.stderr
    assert not record.exists()


def test_a_blank_state_dir_is_the_default() -> None:
    assert _removed_by_dry_run("LOOPLINE_STATE_DIR= ").split()[2] == "'.loopline'"

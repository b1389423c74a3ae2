"""Helpers for the local runner's tests: write workflow YAML to a tmp dir, run it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path

import pytest

from steps.core.settings import Settings
from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.record import RunRecord

WriteYaml = Callable[..., Path]
RunYaml = Callable[..., RunRecord]


@pytest.fixture
def argo_dir(tmp_path: Path) -> Path:
    """A directory for workflow files (template references resolve inside it)."""
    directory = tmp_path / "argo"
    directory.mkdir()
    return directory


@pytest.fixture
def write_yaml(argo_dir: Path) -> WriteYaml:
    """Write dedented YAML text to ``argo_dir/<name>`` and return the path."""

    def write(text: str, name: str = "workflow.yaml") -> Path:
        path = argo_dir / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write


@pytest.fixture
def run_yaml(loopline_env: Path, write_yaml: WriteYaml) -> RunYaml:
    """Write a workflow and run it with no retry backoff; return the record."""

    def run(
        text: str,
        parameters: Mapping[str, str] | None = None,
        *,
        name: str = "workflow.yaml",
        parallelism: int = 2,
    ) -> RunRecord:
        path = write_yaml(text, name)
        options = RunOptions(parallelism=parallelism, backoff_scale=0.0)
        return run_workflow(path, parameters or {}, settings=Settings(), options=options)

    return run


def line_of(path: Path, needle: str) -> int:
    """The 1-based line of the first line of ``path`` containing ``needle``."""
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(f"{needle!r} not in {path}")

"""``loopline run``: exit codes, progress lines, the failed task's log tail, --features."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steps.localrun.cli import parse_parameters, run_command
from steps.localrun.features import FEATURES, Support
from tests.steps.localrun.conftest import WriteYaml, line_of

WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: cli-
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: code
        value: "0"
  templates:
    - name: main
      dag:
        tasks:
          - name: prepare
            template: talk
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: train
            depends: prepare
            template: talk
            arguments: {parameters: [{name: code, value: "{{workflow.parameters.code}}"}]}
    - name: talk
      inputs:
        parameters:
          - name: code
      container:
        image: loopline:latest
        command: [python, -c]
        args:
          - "import sys\\nfor i in range(30): print('line', i)\\nsys.exit(int(sys.argv[1]))"
          - "{{inputs.parameters.code}}"
"""


@pytest.fixture
def cli() -> typer.Typer:
    """A Typer app holding only ``run`` (the root app imports every step's dependencies)."""
    app = typer.Typer()
    app.command("run")(run_command)

    @app.command("noop")
    def noop() -> None:  # a second command keeps ``run`` a sub-command, as in ``loopline``
        """Nothing."""

    return app


def invoke(cli: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["run", *args])
    return result.exit_code, result.output


def test_success_exits_0_and_prints_a_line_per_node_change(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, output = invoke(cli, str(write_yaml(WORKFLOW)), "--backoff-scale", "0")
    assert code == 0, output
    assert "cli-1 Succeeded" in output
    progress = [
        line.split()[:2] for line in output.splitlines() if line.startswith(("prepare", "train"))
    ]
    assert progress == [
        ["prepare", "Running"],
        ["prepare", "Succeeded"],
        ["train", "Running"],
        ["train", "Succeeded"],
    ]
    record = json.loads((loopline_env / "runs" / "cli-1" / "record.json").read_text())
    assert record["phase"] == "Succeeded"


def test_failure_exits_1_names_the_node_and_prints_its_log_tail(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, output = invoke(cli, str(write_yaml(WORKFLOW)), "-p", "code=5")
    assert code == 1
    assert "cli-1 Failed" in output
    assert "  train    Failed     exit code 5, 1 attempt\n" in output
    tail = [line.strip() for line in output.splitlines() if line.strip().startswith("line ")]
    assert tail == [f"line {i}" for i in range(10, 30)]  # the last 20 lines, not all 30


def test_unknown_parameter_exits_2_listing_the_declared_ones(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, output = invoke(cli, str(write_yaml(WORKFLOW)), "-p", "cod=5")
    assert code == 2
    assert "unknown parameter cod" in output and "(code)" in output
    assert not (loopline_env / "runs" / "cli-1").exists()


def test_unsupported_field_exits_2_with_field_and_line(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path
) -> None:
    path = write_yaml(
        WORKFLOW.replace("    - name: talk\n", "    - name: talk\n      sidecars: []\n")
    )
    code, output = invoke(cli, str(path))
    assert code == 2
    assert f"{path}:{line_of(path, 'sidecars')}:" in output
    assert "sidecars" in output
    assert "Traceback" not in output


def test_missing_file_and_bad_p_syntax_exit_2(
    cli: typer.Typer, tmp_path: Path, loopline_env: Path
) -> None:
    code, output = invoke(cli, str(tmp_path / "nope.yaml"))
    assert code == 2 and "cannot read workflow file" in output
    code, output = invoke(cli, str(tmp_path / "nope.yaml"), "-p", "novalue")
    assert code == 2 and "expected NAME=VALUE" in output


def test_parse_parameters_keeps_equals_signs_in_values() -> None:
    assert parse_parameters(["query=a=b", "empty="]) == {"query": "a=b", "empty": ""}


def test_features_prints_the_three_lists(cli: typer.Typer) -> None:
    code, output = invoke(cli, "--features")
    assert code == 0
    for support in Support:
        assert f"{support.value} fields" in output
    rejected = [f for f in FEATURES if f.support is Support.REJECTED]
    assert "sidecars" in output and "podGC" in output and "withItems" in output
    assert len(rejected) > 40

# ruff: noqa: E501 (the workflow YAML below holds one-line Python programs)
"""``loopline runs``: list, show, logs, retry in place, delete; interrupted runs recorded."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steps.localrun.cli import run_command, runs_app
from tests.steps.localrun.conftest import WriteYaml

WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: flaky-
spec:
  entrypoint: main
  arguments:
    parameters:
      - name: marker
  templates:
    - name: main
      dag:
        tasks:
          - name: prepare
            template: count
            arguments: {parameters: [{name: marker, value: "{{workflow.parameters.marker}}"}]}
          - name: train
            depends: prepare
            template: need
            arguments:
              parameters:
                - {name: marker, value: "{{workflow.parameters.marker}}"}
                - {name: seen, value: "{{tasks.prepare.outputs.parameters.seen}}"}
    - name: count
      inputs:
        parameters: [{name: marker}]
      outputs:
        parameters:
          - name: seen
            valueFrom: {path: /outputs/seen}
      container:
        image: loopline:latest
        command: [python, -c]
        args:
          - "import sys\\nopen(sys.argv[1] + '.count', 'a').write('x')\\nopen('/outputs/seen', 'w').write('prepared')\\nprint('prepare ran')"
          - "{{inputs.parameters.marker}}"
    - name: need
      inputs:
        parameters: [{name: marker}, {name: seen}]
      container:
        image: loopline:latest
        command: [python, -c]
        args:
          - "import os, sys\\nprint('train got', sys.argv[2])\\nsys.exit(0 if os.path.exists(sys.argv[1]) else 3)"
          - "{{inputs.parameters.marker}}"
          - "{{inputs.parameters.seen}}"
"""


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("run")(run_command)
    app.add_typer(runs_app, name="runs")
    return app


def invoke(cli: typer.Typer, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.output


def test_a_failed_run_is_listed_shown_logged_and_retried_keeping_what_succeeded(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    path = write_yaml(WORKFLOW)
    code, _ = invoke(cli, "run", str(path), "-p", f"marker={marker}", "--backoff-scale", "0")
    assert code == 1
    # list and show name the failed node, in JSON for scripts
    code, output = invoke(cli, "runs", "list", "-o", "json")
    assert code == 0
    (listed,) = json.loads(output)
    assert (listed["name"], listed["phase"], listed["failed"]) == ("flaky-1", "Failed", "train")
    code, output = invoke(cli, "runs", "show", "flaky-1", "-o", "json")
    nodes = {n["display_name"]: n for n in json.loads(output)[0]["nodes"]}
    assert (nodes["prepare"]["phase"], nodes["train"]["exit_code"]) == ("Succeeded", 3)
    code, output = invoke(cli, "runs", "logs", "flaky-1", "train")
    assert code == 0 and output == "train got prepared\n"
    # When the cause is fixed and the run retried
    marker.write_text("fixed")
    code, output = invoke(cli, "runs", "retry", "flaky-1", "--backoff-scale", "0")
    assert code == 0, output
    # Then prepare was not run again, its output reached train, and the record says so
    assert Path(f"{marker}.count").read_text() == "x"
    record = json.loads((loopline_env / "runs" / "flaky-1" / "record.json").read_text())
    assert (record["phase"], record["retries"]) == ("Succeeded", 1)
    phases = {n["display_name"]: (n["phase"], n["message"]) for n in record["nodes"]}
    assert phases["prepare"] == (
        "Succeeded",
        "kept from the earlier attempt of this run (Succeeded)",
    )
    assert phases["train"][0] == "Succeeded"
    code, output = invoke(cli, "runs", "logs", "flaky-1", "train")
    assert output == "train got prepared\n" * 2  # the failed attempt's, then the retry's
    code, output = invoke(cli, "runs", "logs", "flaky-1", "prepare")
    assert output == "prepare ran\n"  # kept: it ran once
    code, output = invoke(cli, "runs", "retry", "flaky-1")
    assert code == 2 and "Succeeded: nothing to retry" in output


def test_not_found_names_what_exists(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path, tmp_path: Path
) -> None:
    code, output = invoke(cli, "runs", "show", "flaky-1")
    assert code == 2 and "no run yet" in output and "make demo" in output
    marker = tmp_path / "marker"
    marker.write_text("present")
    invoke(cli, "run", str(write_yaml(WORKFLOW)), "-p", f"marker={marker}")
    code, output = invoke(cli, "runs", "show", "flaky-2")
    assert code == 2 and "no run named 'flaky-2'" in output and "closest: flaky-1" in output
    code, output = invoke(cli, "runs", "logs", "flaky-1", "trian")
    assert code == 2 and "its nodes: prepare, train" in output


def test_delete_by_name_and_by_age(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path, tmp_path: Path
) -> None:
    marker = tmp_path / "marker"
    marker.write_text("present")
    path = write_yaml(WORKFLOW)
    for _ in range(3):
        assert invoke(cli, "run", str(path), "-p", f"marker={marker}")[0] == 0
    code, output = invoke(cli, "runs", "delete", "flaky-2")
    assert code == 0 and "deleted 1 runs: flaky-2" in output
    assert not (loopline_env / "runs" / "flaky-2").exists()
    code, output = invoke(cli, "runs", "delete", "--older-than", "1d")
    assert code == 0 and "deleted 0 runs" in output  # both ended seconds ago
    code, output = invoke(cli, "runs", "delete", "--older-than", "soon")
    assert code == 2 and "expected a number and m, h or d" in output
    code, output = invoke(cli, "runs", "delete")
    assert code == 2 and "--older-than AGE" in output
    assert sorted(p.name for p in (loopline_env / "runs").iterdir()) == ["flaky-1", "flaky-3"]


SLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: slow-
spec:
  entrypoint: main
  templates:
    - name: main
      dag:
        tasks:
          - name: wait
            template: sleep
    - name: sleep
      container:
        image: loopline:latest
        command: [python, -c, "import time\\nprint('started', flush=True)\\ntime.sleep(60)"]
"""


def test_ctrl_c_exits_130_and_records_the_run_as_interrupted(
    write_yaml: WriteYaml, loopline_env: Path
) -> None:
    path = write_yaml(SLOW)
    log = loopline_env / "runs" / "slow-1" / "nodes" / "wait" / "log.txt"
    runner = subprocess.Popen(
        [str(Path(sys.executable).with_name("loopline")), "run", str(path)],
        env={**os.environ, "LOOPLINE_STATE_DIR": str(loopline_env)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while not (log.is_file() and "started" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.1)
    os.killpg(runner.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    output, _ = runner.communicate(timeout=60)
    assert runner.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
    record = json.loads((loopline_env / "runs" / "slow-1" / "record.json").read_text())
    assert record["phase"] == "Failed"
    assert record["message"].startswith("interrupted by the user (Ctrl-C)")
    assert "loopline runs retry slow-1" in record["message"]
    assert [(n["display_name"], n["phase"]) for n in record["nodes"] if n["type"] == "Pod"] == [
        ("wait", "Failed")
    ]


RETRIED = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: retried-
spec:
  entrypoint: main
  templates:
    - name: main
      retryStrategy:
        limit: "1"
      container:
        image: loopline:latest
        command: [python, -c, "import sys\\nprint('trying')\\nsys.exit(3)"]
"""


def test_a_retrying_node_shows_its_attempt_last_error_and_next_try(
    cli: typer.Typer, write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, output = invoke(cli, "run", str(write_yaml(RETRIED)), "--backoff-scale", "0")
    assert code == 1
    lines = [line.split(None, 2) for line in output.splitlines() if line.startswith("main ")]
    lines = [parts for parts in lines if len(parts) == 3]  # lines with a message
    waiting = [rest for _, phase, rest in lines if phase == "Running" and "next try" in rest]
    assert len(waiting) == 1
    assert waiting[0].startswith("attempt 1 of 2 failed: exit code 3; next try in 0 s (at ")
    running = [rest for _, phase, rest in lines if phase == "Running" and "attempt 2" in rest]
    assert running == ["attempt 2 of 2 running; attempt 1 failed: exit code 3"]

"""The run summary ``loopline run`` ends with: outputs, skip reasons, failures with log tails."""

from __future__ import annotations

from pathlib import Path

import typer
from typer.testing import CliRunner

from steps.localrun.cli import run_command
from steps.localrun.record import NodeOutputs, NodeRecord, RunRecord
from steps.localrun.summary import MAX_VALUE_CHARS, shorten, summary_lines
from tests.steps.localrun.conftest import WriteYaml

REASONS = "roc_auc 0.7012 is below the minimum 0.75; regression 0.0351 vs champion v1 0.7363"


def node(name: str, phase: str) -> NodeRecord:
    return NodeRecord(name=f"run.{name}", display_name=name, template=name, type="Pod", phase=phase)


def test_shorten_flattens_lines_and_cuts_long_values_noting_their_length() -> None:
    assert shorten("a\n  b\tc") == "a b c"
    long = "x" * 500
    cut = shorten(long, 60)
    assert len(cut) == 60
    assert cut.endswith("... (500 chars)")
    assert cut.startswith("x" * 40)
    assert shorten("y" * MAX_VALUE_CHARS) == "y" * MAX_VALUE_CHARS


def test_a_rejected_run_shows_the_gate_outputs_and_why_the_rest_was_skipped(
    tmp_path: Path,
) -> None:
    record = RunRecord(
        name="retrain-1", uid="u", namespace="default", file="f", kind="Workflow",
        entrypoint="retrain", run_dir=str(tmp_path), phase="Succeeded",
    )  # fmt: skip
    root = NodeRecord(name="retrain-1", display_name="retrain-1", template="retrain", type="DAG")
    evaluate = node("evaluate", "Succeeded")
    evaluate.outputs = NodeOutputs(
        parameters={"decision": "reject", "reasons": REASONS, "report_uri": "s3://b/" + "k" * 300}
    )
    register = node("register", "Skipped")
    register.type = "Skipped"
    register.message = "when 'reject == promote' evaluated false"
    record.nodes = [root, evaluate, register]

    lines = [line.plain for line in summary_lines(record)]

    assert lines[0] == "what the run decided:"
    assert lines[1] == "  evaluate  Succeeded  decision=reject"
    assert lines[2].split() == ["reasons=" + REASONS.split()[0], *REASONS.split()[1:]]
    assert lines[3].strip().startswith("report_uri=s3://b/kkk")
    assert lines[3].strip().endswith("... (307 chars)")
    assert lines[4] == "  register  Skipped    when 'reject == promote' evaluated false"
    assert len(lines) == 5  # the DAG itself is not a task


def test_a_failed_task_shows_exit_code_attempts_message_and_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text("".join(f"line {i}\n" for i in range(30)))
    failed = node("train", "Failed")
    failed.exit_code, failed.attempts, failed.log = 2, 1, str(log)
    failed.message = "exit code 2; not retried: retryStrategy.expression evaluated to false"
    lost = node("build", "Error")
    lost.attempts, lost.message = 3, "deadline exceeded: process killed"
    record = RunRecord(
        name="r", uid="u", namespace="default", file="f", kind="Workflow", entrypoint="main",
        run_dir=str(tmp_path), phase="Failed", nodes=[failed, lost],
    )  # fmt: skip

    lines = [line.plain for line in summary_lines(record, log_lines=3)]

    assert lines[0] == "what the run decided:"
    assert lines[1] == (
        "  train  Failed     exit code 2, 1 attempt: "
        "not retried: retryStrategy.expression evaluated to false"
    )
    assert lines[2].strip() == f"last 3 lines of {log}:"
    assert [line.strip() for line in lines[3:6]] == ["line 27", "line 28", "line 29"]
    assert lines[6] == "  build  Error      3 attempts: deadline exceeded: process killed"


GATE = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: gate-
spec:
  entrypoint: main
  arguments:
    parameters:
      - {name: score, value: "0.70"}
  templates:
    - name: main
      dag:
        tasks:
          - name: evaluate
            template: evaluate
            arguments: {parameters: [{name: score, value: "{{workflow.parameters.score}}"}]}
          - name: register
            depends: evaluate
            when: "{{tasks.evaluate.outputs.parameters.decision}} == promote"
            template: register
    - name: evaluate
      inputs:
        parameters:
          - name: score
      outputs:
        parameters:
          - {name: decision, valueFrom: {path: /tmp/outputs/decision}}
          - {name: reasons, valueFrom: {path: /tmp/outputs/reasons}}
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - |
            import pathlib, sys
            score = float(sys.argv[1])
            if score < 0:
                print("error: --score must be between 0 and 1")
                sys.exit(2)
            out = pathlib.Path("/tmp/outputs")
            out.mkdir(parents=True, exist_ok=True)
            decision = "promote" if score >= 0.75 else "reject"
            (out / "decision").write_text(decision)
            (out / "reasons").write_text(f"roc_auc {score:.4f} vs minimum 0.75")
          - "{{inputs.parameters.score}}"
      retryStrategy:
        limit: 2
        expression: asInt(lastRetry.exitCode) != 2
    - name: register
      outputs:
        parameters:
          - {name: model_version, valueFrom: {path: /tmp/outputs/model_version}}
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - |
            import pathlib
            pathlib.Path("/tmp/outputs").mkdir(parents=True, exist_ok=True)
            pathlib.Path("/tmp/outputs/model_version").write_text("7")
"""


def invoke(write_yaml: WriteYaml, *parameters: str) -> tuple[int, list[str]]:
    app = typer.Typer()
    app.command("run")(run_command)
    app.command("noop")(lambda: None)
    arguments = ["run", str(write_yaml(GATE)), "--backoff-scale", "0"]
    for parameter in parameters:
        arguments += ["-p", parameter]
    result = CliRunner().invoke(app, arguments, env={"COLUMNS": "200"})
    lines = result.output.splitlines()
    return result.exit_code, lines[lines.index("what the run decided:") :]


def test_loopline_run_ends_with_the_gate_reasons_of_a_rejected_run(
    write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, summary = invoke(write_yaml)
    assert code == 0
    assert summary[:4] == [
        "what the run decided:",
        "  evaluate  Succeeded  decision=reject",
        "                       reasons=roc_auc 0.7000 vs minimum 0.75",
        "  register  Skipped    when 'reject == promote' evaluated false",
    ]


def test_loopline_run_ends_with_the_outputs_of_a_promoting_run(
    write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, summary = invoke(write_yaml, "score=0.9")
    assert code == 0
    assert summary[1] == "  evaluate  Succeeded  decision=promote"
    assert summary[3] == "  register  Succeeded  model_version=7"


def test_loopline_run_ends_with_a_failed_tasks_exit_code_attempts_and_log(
    write_yaml: WriteYaml, loopline_env: Path
) -> None:
    code, summary = invoke(write_yaml, "score=-1")
    assert code == 1
    assert summary[1] == (
        "  evaluate  Failed     exit code 2, 1 attempt: "
        "not retried: retryStrategy.expression evaluated to false"
    )
    assert summary[2].strip().startswith("last 1 line of ")
    assert summary[3].strip() == "error: --score must be between 0 and 1"
    assert summary[4] == "  register  Omitted    omitted: depends condition not met"

"""Running workflows: parameters, outputs, when/depends, retries, deadlines, parallelism."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any, cast

import pytest

from steps.core.errors import WorkflowError
from steps.localrun.model import Backoff, RetryStrategy
from steps.localrun.pods import PodRunner
from steps.localrun.record import read_record
from tests.steps.localrun.conftest import RunYaml

HEADER = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: t-
spec:
"""

# A container template that prints its input and writes it (upper-cased) as an output parameter.
SHOUT = """
    - name: shout
      inputs:
        parameters:
          - name: text
          - name: suffix
            default: "!"
      outputs:
        parameters:
          - name: loud
            valueFrom:
              path: /tmp/outputs/loud
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - |
            import sys
            text = sys.argv[2].upper() + sys.argv[3]
            open(sys.argv[1], "w").write(text + "\\n")
            print("said", text)
          - /tmp/outputs/loud
          - "{{inputs.parameters.text}}"
          - "{{inputs.parameters.suffix}}"
"""

EXIT = """
    - name: exit
      inputs:
        parameters:
          - name: code
      script:
        image: python:3.11
        command: [python]
        source: |
          import sys
          print("exiting with {{inputs.parameters.code}}")
          sys.exit({{inputs.parameters.code}})
"""


EXIT_OK_TASK = """
          - name: ok
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
"""


def dag(tasks: str, *templates: str, arguments: str = "", fail_fast: bool | None = None) -> str:
    option = "" if fail_fast is None else f"        failFast: {str(fail_fast).lower()}\n"
    return (
        HEADER
        + "  entrypoint: main\n"
        + arguments
        + "  templates:\n    - name: main\n      dag:\n"
        + option
        + "        tasks:\n"
        + tasks
        + "".join(templates)
    )


PARAMS = """  arguments:
    parameters:
      - name: word
        value: hello
"""


def test_parameters_flow_into_tasks_and_outputs_flow_between_them(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: first
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{workflow.parameters.word}}"}
          - name: second
            depends: first
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{tasks.first.outputs.parameters.loud}}"}
                - {name: suffix, value: "?{{workflow.name}}"}
""",
            SHOUT,
            arguments=PARAMS,
        ),
        {"word": "hey"},
    )
    assert record.phase == "Succeeded"
    assert record.parameters == {"word": "hey"}
    assert record.name == "t-1"
    first, second = record.node("first"), record.node("second")
    assert first.outputs.parameters == {"loud": "HEY!"}
    assert first.outputs.result == "said HEY!"
    assert second.outputs.parameters == {"loud": f"HEY!?{record.name}"}
    assert Path(second.log or "").read_text().strip() == f"said HEY!?{record.name}"
    # The output path was re-rooted into the node's own directory.
    node_dir = Path(record.run_dir) / "nodes" / "first"
    assert (node_dir / "work" / "tmp" / "outputs" / "loud").read_text() == "HEY!\n"
    assert (
        not Path("/tmp/outputs/loud").exists() or "HEY" not in Path("/tmp/outputs/loud").read_text()
    )
    saved = read_record(Path(record.run_dir) / "record.json")
    assert saved.node("second").outputs.parameters == second.outputs.parameters
    assert saved.phase == "Succeeded"


def test_default_parameter_value_is_used_without_override(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: only
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{workflow.parameters.word}}"}
""",
            SHOUT,
            arguments=PARAMS,
        )
    )
    assert record.node("only").outputs.parameters["loud"] == "HELLO!"


def test_unknown_override_is_refused_before_anything_runs(
    run_yaml: RunYaml, loopline_env: Path
) -> None:
    with pytest.raises(WorkflowError, match=r"unknown parameter colour.*\(word\)"):
        run_yaml(
            dag(
                EXIT_OK_TASK.replace("ok", "only"),
                EXIT,
                arguments=PARAMS,
            ),
            {"colour": "red"},
        )
    assert not (loopline_env / "runs" / "t-1").exists()


WHEN_FLOW = """
          - name: decide
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{workflow.parameters.word}}"}
          - name: guarded
            depends: decide
            when: "'{{tasks.decide.outputs.parameters.loud}}' == 'GO!'"
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: after-plain
            depends: guarded
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: after-succeeded
            depends: guarded.Succeeded
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: after-skipped
            depends: guarded.Skipped
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
"""


def test_when_true_runs_the_task(run_yaml: RunYaml) -> None:
    record = run_yaml(dag(WHEN_FLOW, SHOUT, EXIT, arguments=PARAMS), {"word": "go"})
    phases = {n.display_name: n.phase for n in record.nodes}
    assert phases["guarded"] == "Succeeded"
    assert phases["after-plain"] == "Succeeded"
    assert phases["after-succeeded"] == "Succeeded"
    assert phases["after-skipped"] == "Omitted"
    assert record.phase == "Succeeded"


def test_when_false_skips_and_dependents_follow_argo(run_yaml: RunYaml) -> None:
    record = run_yaml(dag(WHEN_FLOW, SHOUT, EXIT, arguments=PARAMS), {"word": "stop"})
    guarded = record.node("guarded")
    assert guarded.phase == "Skipped"
    assert guarded.message == "when ''STOP!' == 'GO!'' evaluated false"
    assert guarded.attempts == 0
    assert record.node("after-plain").phase == "Succeeded"  # plain A: Succeeded or Skipped
    assert record.node("after-succeeded").phase == "Omitted"
    assert record.node("after-skipped").phase == "Succeeded"
    assert record.phase == "Succeeded"


def test_failed_branch_runs_the_failure_handler_and_omits_the_rest(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: train
            template: exit
            arguments: {parameters: [{name: code, value: "3"}]}
          - name: on-failure
            depends: train.Failed
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: deploy
            depends: train
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: either
            depends: "(train.Succeeded || on-failure.Succeeded) && !train.Errored"
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
""",
            EXIT,
            fail_fast=False,  # the deploy leaf fails its branch; run every branch anyway
        )
    )
    assert record.node("train").phase == "Failed"
    assert record.node("train").exit_code == 3
    assert record.node("on-failure").phase == "Succeeded"
    assert record.node("deploy").phase == "Omitted"
    assert record.node("either").phase == "Succeeded"
    # The deploy branch ends Omitted after a failure, so the DAG fails like Argo's.
    assert record.phase == "Failed"
    assert [n.display_name for n in record.failed_nodes()] == ["train"]


def test_handled_failure_leaves_the_dag_succeeded(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: train
            template: exit
            arguments: {parameters: [{name: code, value: "1"}]}
          - name: on-failure
            depends: train.Failed
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
""",
            EXIT,
        )
    )
    assert record.node("train").phase == "Failed"
    assert record.phase == "Succeeded"


def test_legacy_dependencies_and_continue_on(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: flaky
            template: exit
            continueOn: {failed: true}
            arguments: {parameters: [{name: code, value: "1"}]}
          - name: next
            dependencies: [flaky]
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
""",
            EXIT,
        )
    )
    assert record.node("flaky").phase == "Failed"
    assert record.node("next").phase == "Succeeded"
    assert record.phase == "Succeeded"


def test_reference_to_a_skipped_tasks_output_is_a_node_error(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: never
            when: "1 > 2"
            template: shout
            arguments: {parameters: [{name: text, value: x}]}
          - name: uses
            depends: never
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{tasks.never.outputs.parameters.loud}}"}
""",
            SHOUT,
        )
    )
    uses = record.node("uses")
    assert uses.phase == "Error"
    assert "cannot resolve {{tasks.never.outputs.parameters.loud}}" in uses.message
    assert record.phase == "Error"


RETRY = """
    - name: flaky
      inputs:
        parameters:
          - name: marker
      retryStrategy:
        limit: "{{workflow.parameters.limit}}"
        retryPolicy: OnFailure
        backoff: {duration: "30s", factor: 2, maxDuration: "10m"}
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - |
            import pathlib, sys
            marker = pathlib.Path(sys.argv[1])
            attempt = int(marker.read_text()) + 1 if marker.exists() else 1
            marker.write_text(str(attempt))
            print("attempt", attempt)
            sys.exit(0 if attempt >= 2 else 1)
          - "{{inputs.parameters.marker}}"
"""


def retry_workflow(tmp: Path) -> str:
    arguments = (
        "  arguments:\n    parameters:\n      - {name: limit, value: '2'}\n"
        f"      - {{name: marker, value: '{tmp / 'marker'}'}}\n"
    )
    return dag(
        """
          - name: flaky
            template: flaky
            arguments: {parameters: [{name: marker, value: "{{workflow.parameters.marker}}"}]}
""",
        RETRY,
        arguments=arguments,
    )


def test_retry_succeeds_on_the_second_attempt(run_yaml: RunYaml, tmp_path: Path) -> None:
    started = time.monotonic()
    record = run_yaml(retry_workflow(tmp_path))
    node = record.node("flaky")
    assert node.phase == "Succeeded"
    assert node.attempts == 2
    assert (tmp_path / "marker").read_text() == "2"
    log = Path(node.log or "").read_text()
    assert "attempt 1" in log and "--- retry 1 ---" in log and "attempt 2" in log
    assert time.monotonic() - started < 20  # --backoff-scale 0: no 30 s wait


def test_retries_stop_at_the_limit(run_yaml: RunYaml, tmp_path: Path) -> None:
    record = run_yaml(retry_workflow(tmp_path), {"limit": "0"})
    assert record.node("flaky").phase == "Failed"
    assert record.node("flaky").attempts == 1
    assert record.phase == "Failed"


SLEEPER = """
    - name: sleeper
      activeDeadlineSeconds: 1
      inputs:
        parameters:
          - name: marker
      container:
        image: python:3.11
        command: [sh, -c]
        args: ["echo started; sleep 30; touch {{inputs.parameters.marker}}"]
"""


def test_active_deadline_kills_the_process_group(run_yaml: RunYaml, tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    started = time.monotonic()
    record = run_yaml(
        dag(
            f"""
          - name: slow
            template: sleeper
            arguments: {{parameters: [{{name: marker, value: "{marker}"}}]}}
""",
            SLEEPER,
        )
    )
    elapsed = time.monotonic() - started
    node = record.node("slow")
    assert node.phase == "Failed"
    assert node.message.startswith("deadline exceeded")
    assert elapsed < 10
    time.sleep(0.2)
    assert not marker.exists()  # the shell's sleep was killed with it
    assert "started" in Path(node.log or "").read_text()


def test_workflow_deadline_fails_the_run(run_yaml: RunYaml, tmp_path: Path) -> None:
    marker = tmp_path / "finished"
    text = dag(
        f"""
          - name: slow
            template: sleeper
            arguments: {{parameters: [{{name: marker, value: "{marker}"}}]}}
          - name: later
            depends: slow
            template: sleeper
            arguments: {{parameters: [{{name: marker, value: "{marker}"}}]}}
""",
        SLEEPER.replace("activeDeadlineSeconds: 1", "activeDeadlineSeconds: 60"),
    ).replace("  entrypoint: main", "  entrypoint: main\n  activeDeadlineSeconds: 1")
    started = time.monotonic()
    record = run_yaml(text)
    assert time.monotonic() - started < 10
    assert record.phase == "Failed"
    assert record.node("slow").message.startswith("workflow deadline exceeded")
    assert "later" not in {n.display_name for n in record.nodes}


RENDEZVOUS = """
    - name: rendezvous
      inputs:
        parameters:
          - name: mine
          - name: theirs
      container:
        image: python:3.11
        command: [python, -c]
        args:
          - |
            import pathlib, sys, time
            pathlib.Path(sys.argv[1]).touch()
            deadline = time.monotonic() + 10
            while not pathlib.Path(sys.argv[2]).exists():
                if time.monotonic() > deadline:
                    sys.exit("the other node never ran alongside")
                time.sleep(0.02)
          - "{{inputs.parameters.mine}}"
          - "{{inputs.parameters.theirs}}"
"""


def rendezvous(tmp: Path) -> str:
    a, b = tmp / "a", tmp / "b"
    return dag(
        f"""
          - name: left
            template: rendezvous
            arguments:
              parameters: [{{name: mine, value: "{a}"}}, {{name: theirs, value: "{b}"}}]
          - name: right
            template: rendezvous
            arguments:
              parameters: [{{name: mine, value: "{b}"}}, {{name: theirs, value: "{a}"}}]
""",
        RENDEZVOUS,
    )


@pytest.mark.timeout(60)
def test_independent_nodes_run_in_parallel(run_yaml: RunYaml, tmp_path: Path) -> None:
    record = run_yaml(rendezvous(tmp_path), parallelism=2)
    assert record.node("left").phase == "Succeeded"
    assert record.node("right").phase == "Succeeded"


def test_spec_parallelism_caps_the_workers(run_yaml: RunYaml) -> None:
    text = dag(
        """
          - {name: one, template: nap}
          - {name: two, template: nap}
""",
        """
    - name: nap
      container:
        image: python:3.11
        command: [python, -c, "import time; time.sleep(0.3)"]
""",
    ).replace("  entrypoint: main", "  entrypoint: main\n  parallelism: 1")
    record = run_yaml(text, parallelism=4)
    one, two = record.node("one"), record.node("two")
    assert record.phase == "Succeeded"
    first, second = sorted([one, two], key=lambda n: str(n.started))
    assert second.started is not None and first.finished is not None
    assert second.started >= first.finished


def test_each_node_runs_in_its_own_directory_with_this_interpreter(run_yaml: RunYaml) -> None:
    text = dag(
        """
          - {name: one, template: where}
          - {name: two, template: where}
""",
        """
    - name: where
      container:
        image: python:3.11
        command: [python3, -c, "import os, sys; print(os.getcwd()); print(sys.executable)"]
        env:
          - {name: GREETING, value: hi}
""",
    )
    record = run_yaml(text)
    import sys

    cwd_one, exe_one = (record.node("one").outputs.result or "").splitlines()
    cwd_two, _ = (record.node("two").outputs.result or "").splitlines()
    assert cwd_one != cwd_two
    assert cwd_one == str(Path(record.run_dir) / "nodes" / "one" / "work")
    assert exe_one == sys.executable


def test_record_json_has_the_documented_fields(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            EXIT_OK_TASK,
            EXIT,
        )
    )
    data = json.loads((Path(record.run_dir) / "record.json").read_text())
    assert {
        "name",
        "uid",
        "phase",
        "started",
        "finished",
        "parameters",
        "nodes",
        "children",
    } <= data.keys()
    node = next(n for n in data["nodes"] if n["display_name"] == "ok")
    assert {
        "name",
        "template",
        "phase",
        "started",
        "finished",
        "duration_s",
        "exit_code",
        "attempts",
        "outputs",
        "log",
        "message",
    } <= node.keys()
    assert node["exit_code"] == 0 and node["attempts"] == 1


def test_workflow_variables_task_status_and_retries_resolve(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: first
            template: show
            arguments:
              parameters:
                - name: text
                  value: "{{workflow.name}} {{workflow.uid}} {{workflow.namespace}}"
          - name: second
            depends: first
            when: "{{tasks.first.status}} == Succeeded"
            template: show
            arguments:
              parameters:
                - {name: text, value: "{{workflow.creationTimestamp}} {{tasks.first.status}}"}
""",
            """
    - name: show
      inputs:
        parameters:
          - name: text
      container:
        image: python:3.11
        command: [python, -c, "import sys; print(sys.argv[1], sys.argv[2])"]
        args: ["{{inputs.parameters.text}}", "retry={{retries}}"]
""",
        )
    )
    assert record.node("first").outputs.result == f"{record.name} {record.uid} default retry=0"
    stamp, status, retries = (record.node("second").outputs.result or "").split()
    assert stamp == record.started.strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (status, retries) == ("Succeeded", "retry=0")


GATED_CHAIN = """
          - name: decide
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{workflow.parameters.word}}"}
          - name: first
            depends: decide
            when: "'{{tasks.decide.outputs.parameters.loud}}' == 'GO!'"
            template: shout
            arguments: {parameters: [{name: text, value: "one"}]}
          - name: second
            depends: first
            when: "'{{tasks.decide.outputs.parameters.loud}}' == 'GO!'"
            template: shout
            arguments:
              parameters:
                - {name: text, value: "{{tasks.first.outputs.parameters.loud}}"}
"""


def test_a_false_when_skips_before_arguments_naming_skipped_outputs_are_resolved(
    run_yaml: RunYaml,
) -> None:
    # Like the retrain DAG: register and build are both gated; build's argument names an output
    # of register, which does not exist when register was skipped.
    record = run_yaml(dag(GATED_CHAIN, SHOUT, arguments=PARAMS), {"word": "stop"})
    assert record.node("first").phase == "Skipped"
    assert record.node("second").phase == "Skipped"
    assert record.phase == "Succeeded"
    ran = run_yaml(dag(GATED_CHAIN, SHOUT, arguments=PARAMS), {"word": "go"})
    assert ran.node("second").outputs.parameters["loud"] == "ONE!!"  # shouted twice


# Argo's examples/dag-disable-failFast.yaml, with sleeps shortened: C fails while B still runs.
FAIL_FAST_FLOW = """
          - name: A
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: B
            depends: A
            template: slow
          - name: C
            depends: A
            template: exit
            arguments: {parameters: [{name: code, value: "2"}]}
          - name: D
            depends: B
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: E
            depends: D
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
"""
SLOW = """
    - name: slow
      script:
        image: python:3.11
        command: [python]
        source: import time; time.sleep(1.5)
"""


def test_by_default_a_failed_branch_stops_new_tasks_and_running_ones_finish(
    run_yaml: RunYaml,
) -> None:
    record = run_yaml(dag(FAIL_FAST_FLOW, EXIT, SLOW))

    phases = {n.display_name: n.phase for n in record.nodes}
    assert phases == {"main": "Failed", "A": "Succeeded", "B": "Succeeded", "C": "Failed"}
    assert record.node("main").message == "failFast: task 'C' ended Failed; not started: D, E"
    assert record.phase == "Failed"


def test_fail_fast_false_runs_every_branch_to_completion(run_yaml: RunYaml) -> None:
    record = run_yaml(dag(FAIL_FAST_FLOW, EXIT, SLOW, fail_fast=False))

    phases = {n.display_name: n.phase for n in record.nodes}
    assert phases["D"] == phases["E"] == "Succeeded"
    assert phases["C"] == "Failed"
    assert record.phase == "Failed"  # the C branch still fails the DAG at the end


def test_a_failure_a_dependent_handles_does_not_stop_the_dag(run_yaml: RunYaml) -> None:
    # examples/dag-enhanced-depends.yaml: C fails, but no leaf's branch does.
    record = run_yaml(
        dag(
            """
          - name: A
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
          - name: C
            depends: A
            template: exit
            arguments: {parameters: [{name: code, value: "1"}]}
          - name: handle
            depends: "A && (C.Succeeded || C.Failed)"
            template: slow
          - name: after
            depends: handle
            template: exit
            arguments: {parameters: [{name: code, value: "0"}]}
""",
            EXIT,
            SLOW,
        )
    )
    phases = {n.display_name: n.phase for n in record.nodes}
    assert phases["handle"] == phases["after"] == "Succeeded"
    assert record.phase == "Succeeded"
    assert record.message == ""  # the run succeeded: C's failure is not its message


ECHO = """
    - name: echo
      inputs:
        parameters:
          - name: text
      script:
        image: python:3.11
        command: [python]
        source: print("{{inputs.parameters.text}}")
"""


def test_a_task_reads_the_exit_code_of_a_task_it_depends_on(run_yaml: RunYaml) -> None:
    record = run_yaml(
        dag(
            """
          - name: check
            template: exit
            arguments: {parameters: [{name: code, value: "3"}]}
          - name: report
            depends: check.Failed
            template: echo
            arguments: {parameters: [{name: text, value: "check exited {{tasks.check.exitCode}}"}]}
""",
            EXIT,
            ECHO,
            fail_fast=False,
        )
    )
    assert record.node("report").outputs.result == "check exited 3"


def test_a_cron_workflow_runs_now_and_now_is_its_scheduled_time(run_yaml: RunYaml) -> None:
    cron = """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: nightly
spec:
  schedules: ["0 2 * * *"]
  workflowSpec:
    entrypoint: main
    templates:
      - name: main
        dag:
          tasks:
            - name: stamp
              template: echo
              arguments:
                parameters:
                  - name: text
                    value: "{{workflow.scheduledTime}} {{workflow.creationTimestamp}}"
""" + ECHO.replace("\n    ", "\n      ")
    record = run_yaml(cron)

    scheduled, created = (record.node("stamp").outputs.result or "").split()
    assert scheduled == created == record.started.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_backoff_cap_bounds_every_wait_as_argo_still_applies_it() -> None:
    runner = PodRunner(
        store=cast(Any, None),
        cancel=threading.Event(),
        workflow_deadline=None,
        backoff_scale=1.0,
        run_name="r",
        shared_env={},
    )
    capped = RetryStrategy(limit="5", backoff=Backoff(duration="10s", factor="2", cap="25s"))
    assert [runner.backoff_s(capped, n, {}) for n in range(4)] == [10, 20, 25, 25]
    uncapped = RetryStrategy(limit="5", backoff=Backoff(duration="10s", factor="2"))
    assert runner.backoff_s(uncapped, 3, {}) == 80


def test_outputs_of_a_skipped_task_fall_back_to_their_defaults(run_yaml: RunYaml) -> None:
    # Argo's skipped-output-defaults: the producer's valueFrom.default, else the input's default.
    record = run_yaml(
        dag(
            """
          - name: producer
            when: "'run' == 'skip'"
            template: produce
          - name: consumer
            depends: producer
            template: echo
            arguments:
              parameters:
                - name: text
                  value: "consumer got: [{{tasks.producer.outputs.parameters.msg}}]"
          - name: fallback
            depends: producer
            template: echo-or-default
            arguments:
              parameters: [{name: text, value: "{{tasks.producer.outputs.parameters.other}}"}]
""",
            ECHO,
            """
    - name: produce
      outputs:
        parameters:
          - name: msg
            valueFrom: {path: /tmp/msg, default: hello-from-producer}
          - name: other
            valueFrom: {path: /tmp/other}
      script:
        image: python:3.11
        command: [python]
        source: print("never runs")
    - name: echo-or-default
      inputs:
        parameters:
          - name: text
            default: fallback-from-input
      script:
        image: python:3.11
        command: [python]
        source: print("{{inputs.parameters.text}}")
""",
        )
    )
    assert record.node("producer").phase == "Skipped"
    assert record.node("consumer").outputs.result == "consumer got: [hello-from-producer]"
    assert record.node("fallback").outputs.result == "fallback-from-input"
    assert record.phase == "Succeeded"

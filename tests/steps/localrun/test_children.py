"""A resource template that creates a Workflow from a WorkflowTemplate runs it as a child run."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import WorkflowError
from steps.localrun.loader import load_workflow
from steps.localrun.record import read_record
from tests.steps.localrun.conftest import RunYaml, WriteYaml, line_of

RETRAIN = """
apiVersion: argoproj.io/v1alpha1
kind: WorkflowTemplate
metadata:
  name: retrain
spec:
  entrypoint: train
  arguments:
    parameters:
      - name: reason
        value: schedule
      - name: code
        value: "0"
  templates:
    - name: train
      inputs:
        parameters:
          - name: reason
          - name: code
      container:
        image: loopline:latest
        command: [python, -c]
        args:
          - "import sys; print('retraining because', sys.argv[1]); sys.exit(int(sys.argv[2]))"
          - "{{inputs.parameters.reason}}"
          - "{{inputs.parameters.code}}"
"""

DRIFT = """
apiVersion: argoproj.io/v1alpha1
kind: CronWorkflow
metadata:
  name: drift-check
spec:
  schedules: ["*/30 * * * *"]
  workflowSpec:
    entrypoint: main
    arguments:
      parameters:
        - name: code
          value: "0"
    templates:
      - name: main
        dag:
          tasks:
            - name: measure
              template: measure
            - name: trigger
              depends: measure
              when: "'{{tasks.measure.outputs.result}}' == 'drifted'"
              template: trigger
              arguments:
                parameters:
                  - name: reason
                    value: "{{tasks.measure.outputs.result}}"
            - name: announce
              depends: trigger
              template: announce
              arguments:
                parameters:
                  - name: child
                    value: "{{tasks.trigger.outputs.parameters.child}}"
      - name: measure
        container:
          image: loopline:latest
          command: [python, -c, "print('drifted')"]
      - name: announce
        inputs:
          parameters:
            - name: child
        container:
          image: loopline:latest
          command: [python, -c, "import sys; print('started', sys.argv[1])"]
          args: ["{{inputs.parameters.child}}"]
      - name: trigger
        inputs:
          parameters:
            - name: reason
        outputs:
          parameters:
            - name: child
              valueFrom:
                jsonPath: "{.metadata.name}"
        resource:
          action: create
          setOwnerReference: true
          SUCCESS_CONDITION
          manifest: |
            apiVersion: argoproj.io/v1alpha1
            kind: Workflow
            metadata:
              generateName: retrain-
            spec:
              workflowTemplateRef:
                name: retrain
              arguments:
                parameters:
                  - name: reason
                    value: "{{inputs.parameters.reason}}"
                  - name: code
                    value: "{{workflow.parameters.code}}"
"""


def drift(success_condition: str = "") -> str:
    line = f"successCondition: {success_condition}" if success_condition else ""
    return DRIFT.replace("SUCCESS_CONDITION", line)


def test_trigger_runs_the_referenced_template_as_a_child_with_passed_parameters(
    run_yaml: RunYaml, write_yaml: WriteYaml
) -> None:
    write_yaml(RETRAIN, "retrain.yaml")
    record = run_yaml(drift(), name="drift.yaml")
    assert record.phase == "Succeeded"
    assert record.name == "drift-check-1"
    trigger = record.node("trigger")
    assert trigger.phase == "Succeeded"
    assert trigger.type == "Resource"
    child_name = trigger.outputs.parameters["child"]
    assert child_name == "retrain-1" == trigger.child
    assert record.node("announce").outputs.result == f"started {child_name}"
    [child] = record.children
    assert (child.name, child.node, child.phase) == ("retrain-1", "trigger", "Succeeded")
    child_record = read_record(Path(child.record))
    assert child_record.parameters == {"reason": "drifted", "code": "0"}
    assert child_record.node("train").outputs.result == "retraining because drifted"
    assert read_record(Path(record.run_dir) / "record.json").children == record.children


def test_without_success_condition_a_failing_child_does_not_fail_the_parent(
    run_yaml: RunYaml, write_yaml: WriteYaml
) -> None:
    write_yaml(RETRAIN, "retrain.yaml")
    record = run_yaml(drift(), {"code": "4"}, name="drift.yaml")
    assert record.node("trigger").phase == "Succeeded"  # Argo's create: created is success
    assert record.phase == "Succeeded"
    assert record.children[0].phase == "Failed"


def test_success_condition_waits_for_the_child_and_takes_its_outcome(
    run_yaml: RunYaml, write_yaml: WriteYaml
) -> None:
    write_yaml(RETRAIN, "retrain.yaml")
    record = run_yaml(drift("status.phase == Succeeded"), {"code": "4"}, name="drift.yaml")
    trigger = record.node("trigger")
    assert trigger.phase == "Failed"
    assert "retrain-1 ended Failed" in trigger.message
    assert record.node("announce").phase == "Omitted"
    assert record.phase == "Failed"


def test_manifest_template_that_does_not_exist_fails_at_load(write_yaml: WriteYaml) -> None:
    path = write_yaml(drift().replace("name: retrain\n", "name: retrian\n"), "drift.yaml")
    with pytest.raises(
        WorkflowError, match=r"no WorkflowTemplate with metadata\.name 'retrian'"
    ) as caught:
        load_workflow(path)
    assert f"{path}:{line_of(path, 'name: retrian')}:" in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("action: create", "action: apply", "only action: create"),
        ("setOwnerReference: true", "mergeStrategy: json", "'mergeStrategy' is not supported"),
        ("kind: Workflow\n", "kind: ConfigMap\n", "kind: Workflow with spec.workflowTemplateRef"),
    ],
)
def test_other_resource_uses_are_refused(
    write_yaml: WriteYaml, old: str, new: str, message: str
) -> None:
    write_yaml(RETRAIN, "retrain.yaml")
    path = write_yaml(drift().replace(old, new, 1), "drift.yaml")
    with pytest.raises(WorkflowError, match=message):
        load_workflow(path)

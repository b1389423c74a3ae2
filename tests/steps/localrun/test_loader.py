"""Loading workflow YAML: what is accepted, what is refused (with field and line), parameters."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import WorkflowError
from steps.localrun.features import FEATURES, Support, scope_table
from steps.localrun.loader import load_workflow
from steps.localrun.model import parse_duration_s, resolve_parameters
from tests.steps.localrun.conftest import WriteYaml, line_of

BASE = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: base-
  labels: {team: ml}
spec:
  entrypoint: main
  serviceAccountName: argo-workflow
  podGC: {strategy: OnPodSuccess}
  arguments:
    parameters:
      - name: alpha
        value: "0.5"
  templates:
    - name: main
      dag:
        tasks:
          - name: a
            template: step
    - name: step
      nodeSelector: {kubernetes.io/arch: arm64}
      container:
        image: python:3.11
        imagePullPolicy: Always
        resources: {requests: {cpu: 100m}}
        command: [python, -c, "print(1)"]
"""


def test_ignored_cluster_fields_load_and_the_typed_model_holds_the_rest(
    write_yaml: WriteYaml,
) -> None:
    workflow = load_workflow(write_yaml(BASE))
    assert workflow.generate_name == "base-"
    assert workflow.entrypoint == "main"
    assert [p.name for p in workflow.arguments] == ["alpha"]
    step = workflow.templates["step"]
    assert step.kind == "container"
    assert step.process is not None
    assert step.process.command == ("python", "-c", "print(1)")
    assert workflow.templates["main"].tasks[0].template == "step"


@pytest.mark.parametrize(
    ("insert_after", "snippet", "field"),
    [
        ("    - name: step", "      volumes: []", "spec.templates[1].volumes"),
        ("    - name: step", "      sidecars: []", "spec.templates[1].sidecars"),
        ("    - name: step", "      initContainers: []", "spec.templates[1].initContainers"),
        ("    - name: step", "      daemon: true", "spec.templates[1].daemon"),
        ("    - name: step", "      memoize: {key: k}", "spec.templates[1].memoize"),
        ("    - name: step", "      synchronization: {}", "spec.templates[1].synchronization"),
        ("    - name: step", "      podSpecPatch: x", "spec.templates[1].podSpecPatch"),
        ("  entrypoint: main", "  onExit: cleanup", "spec.onExit"),
        ("  entrypoint: main", "  hooks: {}", "spec.hooks"),
        ("  entrypoint: main", "  volumes: []", "spec.volumes"),
        ("            template: step", "            withItems: [1, 2]", "withItems"),
        ("            template: step", "            withParam: '[1]'", "withParam"),
        ("            template: step", "            onExit: x", "dag.tasks[0].onExit"),
        ("            template: step", "            hooks: {}", "dag.tasks[0].hooks"),
        ("        command: [python", "        volumeMounts: []", "container.volumeMounts"),
        ("        command: [python", "        lifecycle: {}", "container.lifecycle"),
        ("        command: [python", "        colour: blue", "container.colour"),
    ],
)
def test_unsupported_fields_fail_at_load_naming_field_and_line(
    write_yaml: WriteYaml, insert_after: str, snippet: str, field: str
) -> None:
    text = BASE.replace(insert_after, f"{insert_after}\n{snippet}", 1)
    if insert_after.startswith("        command"):
        text = BASE.replace(
            '        command: [python, -c, "print(1)"]',
            f'        command: [python, -c, "print(1)"]\n{snippet}',
        )
    path = write_yaml(text)
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    message = str(caught.value)
    assert f"{path}:{line_of(path, snippet.strip())}:" in message
    assert field in message


def test_unknown_key_lists_the_known_ones(write_yaml: WriteYaml) -> None:
    path = write_yaml(BASE.replace("  entrypoint: main", "  entrypont: main"))
    with pytest.raises(WorkflowError, match="unknown field 'entrypont'") as caught:
        load_workflow(path)
    assert f":{line_of(path, 'entrypont')}:" in str(caught.value)
    assert "entrypoint" in str(caught.value)


@pytest.mark.parametrize(
    ("old", "new", "needle", "expected"),
    [
        (
            "            template: step",
            "            template: stpe",
            "template: stpe",
            "calls unknown template 'stpe'",
        ),
        (
            "            template: step",
            "            template: step\n            depends: b",
            "depends: b",
            "depends on unknown task(s) b",
        ),
        (
            '"print(1)"]',
            '"print(1)", "{{workflow.parameters.beta}}"]',
            "workflow.parameters.beta",
            "declares no parameter 'beta'",
        ),
        (
            '"print(1)"]',
            '"print(1)", "{{inputs.parameters.x}}"]',
            "inputs.parameters.x",
            "has no input parameter 'x'",
        ),
        (
            '"print(1)"]',
            '"print(1)", "{{=sprig.upper(x)}}"]',
            "sprig",
            "expression templates",
        ),
        (
            "            template: step",
            '            template: step\n            when: "{{tasks.a.outputs.result}} =="',
            "when:",
            "invalid when",
        ),
        (
            "            template: step",
            "            template: step\n            depends: a.Daemoned",
            "depends: a.Daemoned",
            "daemon",
        ),
        (
            "  entrypoint: main",
            "  entrypoint: mian",
            "entrypoint: mian",
            "no template named 'mian'",
        ),
    ],
)
def test_reference_and_structure_errors_name_the_line(
    write_yaml: WriteYaml, old: str, new: str, needle: str, expected: str
) -> None:
    path = write_yaml(BASE.replace(old, new, 1))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert expected in str(caught.value)
    assert f"{path}:{line_of(path, needle)}:" in str(caught.value)


def test_task_may_only_use_outputs_of_tasks_it_depends_on(write_yaml: WriteYaml) -> None:
    text = BASE.replace(
        "          - name: a\n            template: step",
        "          - name: a\n            template: step\n"
        "          - name: b\n            template: step\n"
        '            when: "{{tasks.a.outputs.result}} == 1"',
    )
    path = write_yaml(text)
    with pytest.raises(WorkflowError, match="must depend on 'a'"):
        load_workflow(path)


def test_dependency_cycle_is_refused(write_yaml: WriteYaml) -> None:
    text = BASE.replace(
        "          - name: a\n            template: step",
        "          - name: a\n            template: step\n            depends: b\n"
        "          - name: b\n            template: step\n            depends: a",
    )
    with pytest.raises(WorkflowError, match="cycle: a -> b -> a"):
        load_workflow(write_yaml(text))


def test_retry_strategy_without_limit_is_refused(write_yaml: WriteYaml) -> None:
    path = write_yaml(BASE.replace("    - name: step", "    - name: step\n      retryStrategy: {}"))
    with pytest.raises(WorkflowError, match="retryStrategy needs a limit"):
        load_workflow(path)


def test_parameters_overrides_unknown_and_missing(write_yaml: WriteYaml) -> None:
    text = BASE.replace(
        '        value: "0.5"',
        '        value: "0.5"\n      - name: mode\n        enum: [fast, full]\n'
        "        default: fast\n      - name: target",
    )
    path = write_yaml(text)
    workflow = load_workflow(path)
    assert resolve_parameters(workflow, {"target": "y"}) == {
        "alpha": "0.5",
        "mode": "fast",
        "target": "y",
    }
    assert resolve_parameters(workflow, {"target": "y", "alpha": "2"})["alpha"] == "2"
    with pytest.raises(WorkflowError, match=r"unknown parameter gamma.*\(alpha, mode, target\)"):
        resolve_parameters(workflow, {"gamma": "1", "target": "y"})
    with pytest.raises(WorkflowError, match="'target' has no value or default: pass -p target="):
        resolve_parameters(workflow, {})
    with pytest.raises(WorkflowError, match="not one of its enum values"):
        resolve_parameters(workflow, {"target": "y", "mode": "slow"})


def test_workflow_template_ref_merges_arguments_over_the_template(write_yaml: WriteYaml) -> None:
    write_yaml(
        BASE.replace("kind: Workflow", "kind: WorkflowTemplate").replace(
            "  generateName: base-", "  name: train-pipeline"
        ),
        "whatever-file-name.yaml",
    )
    path = write_yaml(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata:
          generateName: train-run-
        spec:
          workflowTemplateRef:
            name: train-pipeline
          arguments:
            parameters:
              - name: alpha
                value: "0.9"
        """,
        "submit.yaml",
    )
    workflow = load_workflow(path)
    assert workflow.generate_name == "train-run-"
    assert workflow.file == path
    assert resolve_parameters(workflow, {}) == {"alpha": "0.9"}
    assert "step" in workflow.templates


def test_missing_workflow_template_is_named(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: Workflow
        metadata: {generateName: x-}
        spec:
          workflowTemplateRef: {name: nowhere}
        """
    )
    with pytest.raises(WorkflowError, match=r"no WorkflowTemplate with metadata\.name 'nowhere'"):
        load_workflow(path)


def test_cron_workflow_runs_its_workflow_spec_and_ignores_the_schedule(
    write_yaml: WriteYaml,
) -> None:
    path = write_yaml(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: CronWorkflow
        metadata:
          name: drift
        spec:
          schedules: ["0 * * * *"]
          timezone: UTC
          concurrencyPolicy: Forbid
          successfulJobsHistoryLimit: 3
          workflowSpec:
            entrypoint: check
            templates:
              - name: check
                container:
                  image: python:3.11
                  command: [python, -c, "print(1)"]
        """
    )
    workflow = load_workflow(path)
    assert workflow.kind == "CronWorkflow"
    assert workflow.name is None
    assert workflow.generate_name == "drift-"
    assert workflow.entrypoint == "check"


def test_two_documents_in_the_run_file_are_refused(write_yaml: WriteYaml) -> None:
    with pytest.raises(WorkflowError, match="expected one YAML document, found 2"):
        load_workflow(write_yaml(BASE + "---\n" + BASE))


def test_invalid_yaml_names_the_line(write_yaml: WriteYaml, argo_dir: Path) -> None:
    path = write_yaml("apiVersion: x\nkind: [unclosed\n")
    with pytest.raises(WorkflowError, match=f"{path}:3: not valid YAML"):
        load_workflow(path)


@pytest.mark.parametrize(
    ("text", "seconds"), [("30", 30.0), ("10s", 10.0), ("1m30s", 90.0), ("500ms", 0.5)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration_s(text) == seconds


def test_bad_duration_is_refused() -> None:
    with pytest.raises(ValueError, match="10s, 1m30s"):
        parse_duration_s("ten seconds")


def test_every_scope_of_the_feature_table_is_used_and_the_lists_are_disjoint() -> None:
    scopes = {feature.scope for feature in FEATURES}
    for scope in scopes:
        keys = [f.key for f in FEATURES if f.scope == scope]
        assert len(keys) == len(set(keys)), scope
        assert scope_table(scope)
    assert {f.support for f in FEATURES} == set(Support)


def test_cron_workflow_may_reference_a_workflow_template(write_yaml: WriteYaml) -> None:
    write_yaml(
        BASE.replace("kind: Workflow", "kind: WorkflowTemplate").replace(
            "  generateName: base-", "  name: retrain"
        ),
        "retrain.yaml",
    )
    path = write_yaml(
        """
        apiVersion: argoproj.io/v1alpha1
        kind: CronWorkflow
        metadata:
          name: retrain-schedule
        spec:
          schedules: ["0 3 * * 1"]
          workflowSpec:
            arguments:
              parameters:
                - {name: alpha, value: "0.7"}
            workflowTemplateRef:
              name: retrain
        """,
        "schedule.yaml",
    )
    workflow = load_workflow(path)
    assert (workflow.kind, workflow.generate_name) == ("CronWorkflow", "retrain-schedule-")
    assert resolve_parameters(workflow, {}) == {"alpha": "0.7"}


def test_env_from_config_maps_is_ignored_locally(write_yaml: WriteYaml) -> None:
    text = BASE.replace(
        '        command: [python, -c, "print(1)"]',
        '        command: [python, -c, "print(1)"]\n'
        "        envFrom:\n          - configMapRef: {name: loopline-config}",
    )
    workflow = load_workflow(write_yaml(text))
    assert workflow.templates["step"].process is not None
    assert workflow.templates["step"].process.env == ()


TWO_TASKS = (
    "          - name: a\n            template: step\n{a_extra}"
    "          - name: b\n            template: step\n{b_extra}"
)


@pytest.mark.parametrize(
    ("a_extra", "b_extra", "needle", "expected"),
    [
        (
            "            continueOn: {failed: true}\n",
            "            depends: a\n",
            "continueOn",
            "a DAG using 'depends' cannot use 'continueOn'",
        ),
        (
            "            dependencies: []\n",
            "            depends: a\n",
            "dependencies",
            "a DAG cannot use both 'depends' and 'dependencies'",
        ),
    ],
    ids=["continueOn-with-depends", "depends-and-dependencies"],
)
def test_what_argo_refuses_at_submit_is_refused_at_load(
    write_yaml: WriteYaml, a_extra: str, b_extra: str, needle: str, expected: str
) -> None:
    tasks = TWO_TASKS.format(a_extra=a_extra, b_extra=b_extra)
    path = write_yaml(BASE.replace("          - name: a\n            template: step\n", tasks, 1))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert expected in str(caught.value)
    assert f"{path}:{line_of(path, needle)}:" in str(caught.value)


def test_continue_on_with_the_legacy_dependencies_list_still_loads(write_yaml: WriteYaml) -> None:
    tasks = TWO_TASKS.format(
        a_extra="            continueOn: {failed: true}\n",
        b_extra="            dependencies: [a]\n",
    )
    path = write_yaml(BASE.replace("          - name: a\n            template: step\n", tasks, 1))
    (main,) = [t for t in load_workflow(path).templates.values() if t.kind == "dag"]
    assert [task.continue_on_failed for task in main.tasks] == [True, False]
    assert main.fail_fast is True


def test_fail_fast_must_be_a_boolean(write_yaml: WriteYaml) -> None:
    path = write_yaml(
        BASE.replace("        tasks:", "        failFast: sometimes\n        tasks:", 1)
    )
    with pytest.raises(WorkflowError, match="expected true or false, got 'sometimes'") as caught:
        load_workflow(path)
    assert f"{path}:{line_of(path, 'failFast')}:" in str(caught.value)


def test_a_dag_output_from_an_expression_is_refused_at_the_expression(
    write_yaml: WriteYaml,
) -> None:
    # Argo's dag-conditional-parameters: the cause is the expr-lang expression.
    outputs = (
        "    - name: main\n      outputs:\n        parameters:\n          - name: stepresult\n"
        "            valueFrom:\n              expression: \"tasks.a.status == 'Succeeded'\"\n"
    )
    path = write_yaml(BASE.replace("    - name: main\n", outputs, 1))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert "valueFrom.expression (an expr-lang expression) is not supported" in str(caught.value)
    assert f"{path}:{line_of(path, 'expression:')}:" in str(caught.value)


def test_a_refused_field_says_where_to_find_what_is_supported(write_yaml: WriteYaml) -> None:
    path = write_yaml(BASE.replace("  entrypoint: main", "  entrypoint: main\n  hooks: {}", 1))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert str(caught.value).endswith("`loopline run --features` lists what is supported")

"""Tests of pipelines/canary.py: the promote step's templates and the canary WorkflowTemplates,
read from the rendered documents."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipelines.canary import action_deadline_s, promote_deadline_s
from pipelines.templates import OUT_DIR, retried_deadline_s
from scripts.manifest_schemas import SchemaCatalog, default_schemas_dir
from scripts.validate_manifests import validate_file
from steps.core.errors import WorkflowError
from steps.core.settings import CanarySettings, DeploySettings
from tests.pipelines.documents import (
    REPO,
    assert_bounded_non_root_step,
    document,
    parse_args,
    restricted_problems,
    task_arguments,
    tasks,
    templates,
)

CANARY_FILES = ("canary-promote.yaml", "canary-abort.yaml", "canary-rollback.yaml")
PROMOTE_OUTPUTS = {"outcome", "final_weight", "reasons", "report_uri"}


def _spec(name: str) -> dict[str, Any]:
    spec: dict[str, Any] = document(name)["spec"]
    return spec


def _only_step(spec: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The one DAG task of a canary template and the container template it runs."""
    (task,) = tasks(spec).values()
    return task, templates(spec)[task["template"]]


def test_canary_promote_passes_its_required_parameter_as_model_version() -> None:
    spec = _spec("canary-promote.yaml")
    parameters = {p["name"]: p for p in spec["arguments"]["parameters"]}

    task, template = _only_step(spec)

    assert "value" not in parameters["model-version"]  # argo submit needs -p model-version=...
    assert set(parameters) == {"model-version"}  # the image is fixed at render time
    assert template["container"]["command"] == ["python", "-m", "steps.promote"]
    assert task_arguments(task) == {
        "model-version": "{{workflow.parameters.model-version}}",
        "pipeline-run": "{{workflow.name}}",
    }
    values, switches = parse_args(template["container"]["args"])
    assert values == {
        "--model-version": "{{inputs.parameters.model-version}}",
        "--pipeline-run": "{{inputs.parameters.pipeline-run}}",
        "--out-dir": OUT_DIR,
    }
    assert switches == []  # the default action: promote


def test_canary_promote_runs_the_same_promote_template_as_retrain() -> None:
    _, template = _only_step(_spec("canary-promote.yaml"))

    assert template == templates(_spec("retrain.yaml"))["promote"]


@pytest.mark.parametrize("action", ["rollback", "abort"])
def test_rollback_and_abort_run_promote_with_their_action_and_no_version(action: str) -> None:
    spec = _spec(f"canary-{action}.yaml")

    task, template = _only_step(spec)

    assert (task["name"], template["name"]) == (action, action)
    assert template["container"]["command"] == ["python", "-m", "steps.promote"]
    values, switches = parse_args(template["container"]["args"])
    assert values == {
        "--action": action,
        "--pipeline-run": "{{inputs.parameters.pipeline-run}}",
        "--out-dir": OUT_DIR,
    }
    assert switches == []
    assert task_arguments(task) == {"pipeline-run": "{{workflow.name}}"}
    assert "arguments" not in spec  # nothing to choose, the image included
    declared = {p["name"]: p["valueFrom"]["path"] for p in template["outputs"]["parameters"]}
    assert declared == {name: f"{OUT_DIR}/{name}" for name in PROMOTE_OUTPUTS}


@pytest.mark.parametrize("name", CANARY_FILES)
def test_canary_templates_share_retrains_account_cleanup_and_step_checks(name: str) -> None:
    resource = document(name)
    retrain = _spec("retrain.yaml")
    spec = resource["spec"]

    _, template = _only_step(spec)

    assert resource["kind"] == "WorkflowTemplate"
    assert resource["metadata"]["name"] == name.removesuffix(".yaml") == spec["entrypoint"]
    labels = resource["metadata"]["labels"]
    assert labels == {
        "app.kubernetes.io/part-of": "loopline",
        "app.kubernetes.io/component": "canary",
    }
    assert spec["workflowMetadata"]["labels"] == labels  # the runs carry them too
    for field in ("serviceAccountName", "podGC", "ttlStrategy", "securityContext"):
        assert spec[field] == retrain[field], field
    assert_bounded_non_root_step(template["name"], template)
    assert restricted_problems(template) == []
    assert template["container"]["image"] == templates(retrain)["promote"]["container"]["image"]
    assert template["retryStrategy"] == templates(retrain)["promote"]["retryStrategy"] | {
        "backoff": template["retryStrategy"]["backoff"]  # maxDuration follows the deadline
    }


@pytest.mark.parametrize("name", CANARY_FILES)
def test_the_workflow_deadline_leaves_room_for_every_attempt(name: str) -> None:
    spec = _spec(name)
    _, template = _only_step(spec)
    attempts = int(template["retryStrategy"]["limit"]) + 1
    step_deadline_s = int(template["activeDeadlineSeconds"])

    assert spec["activeDeadlineSeconds"] >= attempts * step_deadline_s
    assert spec["activeDeadlineSeconds"] == retried_deadline_s(step_deadline_s, attempts - 1)


def test_retried_deadline_adds_the_doubling_backoff_waits() -> None:
    assert retried_deadline_s(100, 0) == 100
    assert retried_deadline_s(100, 2) == 3 * 100 + 30 + 60


def test_the_promote_deadline_grows_with_the_analysis_policy() -> None:
    default_s = promote_deadline_s()

    longer_interval = CanarySettings(interval_s=600.0)
    more_holds = CanarySettings(max_inconclusive=4)
    fewer_steps = DeploySettings(traffic_steps=(50, 100))

    # 4 steps x (1 + 3 holds) = 16 checks of 300 s, each with 1 + 2 + 4 s of query retries.
    assert promote_deadline_s(canary=longer_interval) - default_s == 16 * 300
    assert promote_deadline_s(canary=more_holds) - default_s == 4 * (300 + 7)
    assert default_s - promote_deadline_s(deploy=fewer_steps) == 2 * 4 * (300 + 7)
    assert promote_deadline_s(deploy=DeploySettings(rollout_timeout_s=900.0)) - default_s == 600
    assert promote_deadline_s(canary=CanarySettings(failure_limit=2)) - default_s == 2 * 307
    assert action_deadline_s() < default_s


@pytest.mark.parametrize("name", CANARY_FILES)
def test_canary_templates_validate_against_the_argo_schema(name: str) -> None:
    path = REPO / "argo" / name

    assert validate_file(path, SchemaCatalog(default_schemas_dir())) == []


def test_the_local_runner_refuses_canary_promote_without_a_model_version(tmp_path: Path) -> None:
    from steps.core.settings import Settings
    from steps.localrun.executor import run_workflow

    with pytest.raises(WorkflowError, match="parameter 'model-version' has no value or default"):
        run_workflow(REPO / "argo" / "canary-promote.yaml", {}, settings=Settings())

"""Every pod the rendered workflows in argo/ create meets Pod Security "restricted", the image
build's included; the Argo Events pods too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.pod_security import restricted_violations, workflow_pod_specs

ARGO = Path(__file__).resolve().parents[2] / "argo"
WORKFLOW_KINDS = {"Workflow", "WorkflowTemplate", "CronWorkflow"}
WORKFLOW_FILES = sorted(
    path.name
    for path in ARGO.glob("*.yaml")
    if yaml.safe_load(path.read_text())["kind"] in WORKFLOW_KINDS
)


def _load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ARGO / name).read_text())
    return loaded


def _defining_template(name: str) -> str:
    """The name of the WorkflowTemplate whose templates ``argo/<name>`` runs."""
    document = _load(name)
    spec = document["spec"].get("workflowSpec", document["spec"])
    reference = spec.get("workflowTemplateRef")
    return str(reference["name"] if reference else name.removesuffix(".yaml"))


def _pods(name: str) -> dict[str, dict[str, Any]]:
    document = _load(name)
    defining = _defining_template(name)
    referenced = _load(f"{defining}.yaml")["spec"] if f"{defining}.yaml" != name else None
    return workflow_pod_specs(document, referenced)


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_every_pod_of_every_rendered_workflow_is_restricted(name: str) -> None:
    violations = {
        template: restricted_violations(pod, loopline_hardening=False)
        for template, pod in _pods(name).items()
    }

    assert violations, f"{name} runs no pod: the resolution of its templates is broken"
    assert {template: rules for template, rules in violations.items() if rules} == {}


def test_every_workflow_file_is_checked() -> None:
    assert set(WORKFLOW_FILES) == {
        "retrain.yaml", "retrain-schedule.yaml", "retrain-submit.yaml", "drift-monitor.yaml",
        "canary-promote.yaml", "canary-abort.yaml", "canary-rollback.yaml",
    }  # fmt: skip


def test_the_build_pod_has_the_security_context_of_every_other_step() -> None:
    pods = _pods("retrain.yaml")
    build = pods["containerize"]
    context = build["containers"][0]["securityContext"]

    assert context == pods["train"]["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False
    assert context["capabilities"] == {"drop": ["ALL"]}
    assert context["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "appArmorProfile" not in context and "privileged" not in context
    assert build["automountServiceAccountToken"] is False
    assert build["securityContext"] == pods["train"]["securityContext"]


def test_the_check_refuses_the_build_pod_were_it_unconfined_again() -> None:
    build = _pods("retrain.yaml")["containerize"]
    context = build["containers"][0]["securityContext"]
    context.pop("allowPrivilegeEscalation")
    context.pop("capabilities")
    context["seccompProfile"] = context["appArmorProfile"] = {"type": "Unconfined"}

    assert restricted_violations(build, loopline_hardening=False) == [
        "containers[main]: allowPrivilegeEscalation must be false",
        "containers[main]: capabilities.drop must include ALL",
        "containers[main]: seccompProfile.type must be RuntimeDefault or Localhost"
        " (container or pod)",
        "containers[main]: appArmorProfile 'Unconfined' is not allowed",
    ]


def test_a_workflow_without_the_pod_level_context_fails_the_check() -> None:
    document = _load("drift-monitor.yaml")
    del document["spec"]["workflowSpec"]["securityContext"]

    pods = workflow_pod_specs(document)

    assert restricted_violations(pods["trigger-retrain"], loopline_hardening=False) == [
        "securityContext.runAsNonRoot must be true",
        "securityContext.seccompProfile must be set",
    ]
    assert restricted_violations(pods["drift"], loopline_hardening=False) == []  # its own


@pytest.mark.parametrize(
    "name", ["retrain-webhook-eventsource.yaml", "retrain-on-event-sensor.yaml"]
)
def test_the_argo_events_pods_are_restricted(name: str) -> None:
    template = _load(name)["spec"]["template"]

    pod = {
        "securityContext": template["securityContext"],
        "containers": [{"name": "main", **template["container"]}],
    }

    assert restricted_violations(pod, loopline_hardening=False) == []

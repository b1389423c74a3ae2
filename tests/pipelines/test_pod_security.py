"""Every pod the rendered workflows in argo/ create meets Pod Security "restricted", except those
in :data:`EXCEPTIONS`, each with its reason; the Argo Events pods too."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.templates import BUILDKIT_EXCEPTIONS
from scripts.pod_security import restricted_violations, workflow_pod_specs

ARGO = Path(__file__).resolve().parents[2] / "argo"
WORKFLOW_KINDS = {"Workflow", "WorkflowTemplate", "CronWorkflow"}
WORKFLOW_FILES = sorted(
    path.name
    for path in ARGO.glob("*.yaml")
    if yaml.safe_load(path.read_text())["kind"] in WORKFLOW_KINDS
)

EXCEPTIONS: dict[tuple[str, str], tuple[str, tuple[str, ...]]] = {
    ("retrain", "containerize"): (
        "rootless BuildKit: rootlesskit needs unshare/mount of a user namespace (seccomp and "
        "AppArmor Unconfined) and the setuid newuidmap/newgidmap (privilege escalation, "
        "CAP_SETUID/CAP_SETGID kept); see pipelines.templates.buildkit_security_context",
        tuple(f"containers[main]: {rule}" for rule in BUILDKIT_EXCEPTIONS),
    ),
}
"""(WorkflowTemplate, template) -> (why, the exact violations allowed), for the template's own
file and every workflow referencing it. Nothing else may break a rule."""


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
def test_every_pod_of_every_rendered_workflow_is_restricted_or_a_listed_exception(
    name: str,
) -> None:
    violations = {
        template: restricted_violations(pod, loopline_hardening=False)
        for template, pod in _pods(name).items()
    }

    assert violations, f"{name} runs no pod: the resolution of its templates is broken"
    defining = _defining_template(name)
    expected = {
        template: list(EXCEPTIONS.get((defining, template), ("", ()))[1]) for template in violations
    }
    assert violations == expected


def test_every_workflow_file_is_checked() -> None:
    assert set(WORKFLOW_FILES) == {
        "retrain.yaml", "retrain-schedule.yaml", "retrain-submit.yaml", "drift-monitor.yaml",
        "canary-promote.yaml", "canary-abort.yaml", "canary-rollback.yaml",
    }  # fmt: skip


def test_every_listed_exception_exists_and_says_why() -> None:
    for (defining, template), (reason, rules) in EXCEPTIONS.items():
        assert template in _pods(f"{defining}.yaml"), (defining, template)
        assert len(reason) > 40 and rules, (defining, template)


def test_the_build_pod_is_unconfined_only_where_buildkit_needs_it() -> None:
    pod = _pods("retrain.yaml")["containerize"]
    context = pod["containers"][0]["securityContext"]

    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert context["runAsNonRoot"] is True and context["runAsUser"] == 10001
    assert context["privileged"] is False
    assert "capabilities" not in context or "add" not in context["capabilities"]
    assert context["seccompProfile"] == context["appArmorProfile"] == {"type": "Unconfined"}


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

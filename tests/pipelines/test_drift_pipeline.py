"""The rendered drift monitor, webhook route and their RBAC, read from argo/ and k8s/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from steps.drift import REPORT_DIR, REPORT_FILE

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((REPO / "argo" / name).read_text()))


def _templates(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["spec"]["workflowSpec"]["templates"]}


def test_monitor_checks_then_creates_retrain_only_when_drifted() -> None:
    monitor = _load("drift-monitor.yaml")
    spec = monitor["spec"]
    assert monitor["kind"] == "CronWorkflow"
    assert spec["concurrencyPolicy"] == "Forbid" and spec["schedules"]
    templates = _templates(monitor)
    tasks = {t["name"]: t for t in templates["monitor"]["dag"]["tasks"]}
    assert tasks["trigger-retrain"]["depends"] == "check"
    assert tasks["trigger-retrain"]["when"] == "{{tasks.check.outputs.parameters.drifted}} == true"
    assert templates["drift"]["container"]["command"] == ["python", "-m", "steps.drift"]
    resource = templates["trigger-retrain"]["resource"]
    assert resource["action"] == "create"
    manifest = yaml.safe_load(resource["manifest"])
    assert manifest["kind"] == "Workflow"
    assert manifest["spec"]["workflowTemplateRef"] == {"name": "retrain"}
    parameters = {p["name"]: p["value"] for p in manifest["spec"]["arguments"]["parameters"]}
    # Nothing the check wrote reaches the manifest: the report's key comes from the run's name.
    assert parameters == {
        "reason": "drift",
        "drift-report-uri": f"{REPORT_DIR}/{{{{workflow.name}}}}/{REPORT_FILE}",
        "data-uri": "{{inputs.parameters.data-uri}}",
    }
    assert "tasks.check" not in resource["manifest"]
    assert tasks["check"]["arguments"]["parameters"][-1] == {
        "name": "run-name",
        "value": "{{workflow.name}}",
    }
    assert tasks["trigger-retrain"]["arguments"]["parameters"] == [
        {"name": "data-uri", "value": "{{workflow.parameters.data-uri}}"},
    ]


def test_the_check_holds_no_token_and_only_the_trigger_may_create_workflows() -> None:
    monitor = _load("drift-monitor.yaml")
    workflow_spec = monitor["spec"]["workflowSpec"]
    templates = _templates(monitor)

    check, trigger = templates["drift"], templates["trigger-retrain"]

    assert workflow_spec["serviceAccountName"] == "loopline-drift-check"
    assert check["automountServiceAccountToken"] is False
    assert check["executor"] == {"serviceAccountName": "loopline-drift-check"}
    assert "serviceAccountName" not in check
    assert trigger["serviceAccountName"] == "loopline-drift-trigger"
    assert "container" not in trigger and "script" not in trigger  # Argo's executor, no parsing
    # The trigger reads the check's `drifted` output only, in its `when`.
    task = next(t for t in templates["monitor"]["dag"]["tasks"] if t["name"] == "trigger-retrain")
    assert "tasks.check" not in yaml.safe_dump(task["arguments"])
    assert "tasks.check" not in yaml.safe_dump(trigger)
    assert not any("image" in p["name"] for p in workflow_spec["arguments"]["parameters"])


def test_retrain_declares_every_parameter_the_triggers_pass() -> None:
    declared = {p["name"] for p in _load("retrain.yaml")["spec"]["arguments"]["parameters"]}
    sensor = _load("retrain-on-event-sensor.yaml")
    trigger = sensor["spec"]["triggers"][0]["template"]["argoWorkflow"]
    workflow = trigger["source"]["resource"]
    passed = {p["name"] for p in workflow["spec"]["arguments"]["parameters"]}
    assert passed <= declared
    assert trigger["operation"] == "submit"
    destinations = {p["dest"]: p["src"]["dataKey"] for p in trigger["parameters"]}
    assert destinations == {
        "spec.arguments.parameters.0.value": "body.reason",
        "spec.arguments.parameters.1.value": "body.report_uri",
    }
    source = _load("retrain-webhook-eventsource.yaml")
    dependency = sensor["spec"]["dependencies"][0]
    assert dependency["eventSourceName"] == source["metadata"]["name"]
    assert dependency["eventName"] in source["spec"]["webhook"]


def test_drift_and_sensor_roles_grant_exactly_what_they_use() -> None:
    documents = list(yaml.safe_load_all((REPO / "k8s/pipeline/drift-rbac.yaml").read_text()))
    roles = {d["metadata"]["name"]: d["rules"] for d in documents if d["kind"] == "Role"}
    as_set = {
        name: {(g, r, v, ",".join(rule.get("resourceNames", [])))
               for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
        for name, rules in roles.items()
    }  # fmt: skip
    assert as_set["loopline-drift-check"] == {
        ("argoproj.io", "workflowtaskresults", "create", ""),
        ("argoproj.io", "workflowtaskresults", "patch", ""),
    }
    assert as_set["loopline-drift-trigger"] == {
        ("argoproj.io", "workflowtaskresults", "create", ""),
        ("argoproj.io", "workflowtaskresults", "patch", ""),
        ("argoproj.io", "workflows", "create", ""),
        ("argoproj.io", "workflows", "get", ""),
        ("argoproj.io", "workflows", "watch", ""),
    }
    assert as_set["loopline-sensor"] == {
        ("argoproj.io", "workflows", "create", ""),
        ("argoproj.io", "workflowtemplates", "get", "retrain"),
    }
    bindings = {
        d["metadata"]["name"]: d["subjects"][0]["name"]
        for d in documents
        if d["kind"] == "RoleBinding"
    }
    assert bindings == {name: name for name in roles}
    for rules in roles.values():
        for rule in rules:
            assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
    sensor = _load("retrain-on-event-sensor.yaml")
    assert sensor["spec"]["template"]["serviceAccountName"] == "loopline-sensor"


def test_the_webhook_requires_the_bearer_token_secret() -> None:
    source = _load("retrain-webhook-eventsource.yaml")

    webhook = source["spec"]["webhook"]["retrain"]

    assert webhook["authSecret"] == {"name": "loopline-webhook", "key": "token"}
    readme = (REPO / "k8s" / "README.md").read_text()
    assert "kubectl -n loopline create secret generic loopline-webhook" in readme
    assert "Authorization: Bearer" in readme

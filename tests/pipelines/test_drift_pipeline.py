"""The rendered drift monitor, webhook route and their RBAC, read from argo/ and k8s/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

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
    assert parameters == {
        "reason": "drift",
        "drift-report-uri": "{{inputs.parameters.report-uri}}",
        "data-uri": "{{inputs.parameters.data-uri}}",
    }
    assert tasks["trigger-retrain"]["arguments"]["parameters"] == [
        {"name": "report-uri", "value": "{{tasks.check.outputs.parameters.report_uri}}"},
        {"name": "data-uri", "value": "{{workflow.parameters.data-uri}}"},
    ]
    assert spec["workflowSpec"]["serviceAccountName"] == "loopline-drift"


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
        name: {(g, r, v) for rule in rules for g in rule["apiGroups"]
               for r in rule["resources"] for v in rule["verbs"]}
        for name, rules in roles.items()
    }  # fmt: skip
    assert as_set["loopline-drift"] == {
        ("argoproj.io", "workflowtaskresults", "create"),
        ("argoproj.io", "workflowtaskresults", "patch"),
        ("argoproj.io", "workflows", "create"),
        ("argoproj.io", "workflows", "get"),
        ("argoproj.io", "workflows", "watch"),
    }
    assert as_set["loopline-sensor"] == {
        ("argoproj.io", "workflows", "create"),
        ("argoproj.io", "workflowtemplates", "get"),
    }
    sensor = _load("retrain-on-event-sensor.yaml")
    assert sensor["spec"]["template"]["serviceAccountName"] == "loopline-sensor"

"""The drift monitor: a CronWorkflow that checks logged inference data and, when it drifted,
creates a ``retrain`` Workflow; plus the Argo Events route for drift detected elsewhere.

- CronWorkflow ``drift-monitor`` (:func:`drift_monitor`): DAG ``check`` -> ``trigger-retrain``.
  ``check`` runs ``python -m steps.drift``; ``trigger-retrain`` is a ``resource`` template
  (``action: create``) whose manifest is a Workflow with ``workflowTemplateRef: retrain`` and
  parameters ``reason=drift`` and ``drift-report-uri``, gated on ``drifted == true``.
- EventSource ``retrain-webhook`` and Sensor ``retrain-on-event`` (:func:`retrain_event_source`,
  :func:`retrain_sensor`): a POST to the webhook submits ``retrain`` with the event's reason and
  report URI. Hera has no Argo Events models, so these two are plain dicts.
"""

from __future__ import annotations

from typing import Any

import yaml
from hera.workflows import DAG, CronWorkflow, Parameter, Resource, Task
from hera.workflows.models import ValueFrom

from pipelines.retrain import DEFAULT_DATA_URI
from pipelines.templates import (
    PodProfile,
    keep_failed_pods,
    run_ttl,
    step_template,
    task_output,
)
from steps.core.settings import DriftSettings

MONITOR_NAME = "drift-monitor"
SCHEDULES = ("17 * * * *",)
"""Every hour at :17 in :data:`TIMEZONE`; change here and ``make render``."""
TIMEZONE = "UTC"
SERVICE_ACCOUNT = "loopline-drift"
SENSOR_SERVICE_ACCOUNT = "loopline-sensor"
RETRAIN_TEMPLATE = "retrain"
LABELS = {"app.kubernetes.io/part-of": "loopline", "app.kubernetes.io/component": "drift"}
DRIFTED_WHEN = f"{task_output('check', 'drifted')} == true"
WEBHOOK_PORT = "12000"
WEBHOOK_ENDPOINT = "/retrain"
EVENTS_API = "argoproj.io/v1alpha1"


def monitor_parameters() -> list[Parameter]:
    """Return the drift monitor's parameters, defaults taken from the settings."""
    drift = DriftSettings()
    return [
        Parameter(name="since", value=drift.since, description="window: recent duration"),
        Parameter(name="min-rows", value=str(drift.min_rows), description="fewer: no decision"),
        Parameter(
            name="drift-share",
            value=str(drift.drift_share),
            description="share of drifted features that triggers",
        ),
        Parameter(
            name="data-uri",
            value=DEFAULT_DATA_URI,
            description="training data the triggered retrain uses",
        ),
        Parameter(name="image", value=_pipeline_image(), description="pipeline image"),
    ]  # fmt: skip


def _pipeline_image() -> str:
    from pipelines.templates import PIPELINE_IMAGE

    return PIPELINE_IMAGE


def retrain_workflow(generate_name: str, parameters: dict[str, str]) -> dict[str, Any]:
    """Return a Workflow running the ``retrain`` WorkflowTemplate with ``parameters``."""
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {"generateName": generate_name, "labels": dict(LABELS)},
        "spec": {
            "workflowTemplateRef": {"name": RETRAIN_TEMPLATE},
            "arguments": {
                "parameters": [{"name": name, "value": value} for name, value in parameters.items()]
            },
        },
    }


def retrain_manifest() -> str:
    """Return the Workflow the ``trigger-retrain`` resource template creates, as YAML."""
    workflow = retrain_workflow(
        f"{RETRAIN_TEMPLATE}-drift-",
        {
            "reason": "drift",
            "drift-report-uri": "{{inputs.parameters.report-uri}}",
            "data-uri": "{{inputs.parameters.data-uri}}",
        },
    )
    return yaml.safe_dump(workflow, sort_keys=True)


def drift_monitor() -> CronWorkflow:
    """Return the ``drift-monitor`` CronWorkflow."""
    check = step_template(
        "drift",
        flags=("since", "min-rows", "drift-share", "run-name"),
        profile=PodProfile("1", "1Gi", "2", "2Gi", deadline_s=1800),
        retry_limit=2,
    )
    trigger = Resource(
        name="trigger-retrain",
        action="create",
        manifest=retrain_manifest(),
        inputs=[Parameter(name="report-uri"), Parameter(name="data-uri")],
        outputs=[
            Parameter(name="workflow-name", value_from=ValueFrom(json_path="{.metadata.name}")),
        ],
    )
    dag = DAG(
        name="monitor",
        tasks=[
            Task(
                name="check",
                template=check,
                arguments={
                    "since": "{{workflow.parameters.since}}",
                    "min-rows": "{{workflow.parameters.min-rows}}",
                    "drift-share": "{{workflow.parameters.drift-share}}",
                    "run-name": "{{workflow.name}}",
                },
            ),
            Task(
                name="trigger-retrain",
                template=trigger,
                arguments={
                    "report-uri": task_output("check", "report_uri"),
                    "data-uri": "{{workflow.parameters.data-uri}}",
                },
                depends="check",
                when=DRIFTED_WHEN,
            ),
        ],
    )
    return CronWorkflow(
        name=MONITOR_NAME,
        labels=dict(LABELS),
        schedules=list(SCHEDULES),
        timezone=TIMEZONE,
        concurrency_policy="Forbid",
        starting_deadline_seconds=300,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=5,
        entrypoint="monitor",
        arguments=monitor_parameters(),
        templates=[dag, check, trigger],
        service_account_name=SERVICE_ACCOUNT,
        active_deadline_seconds=3600,
        pod_gc=keep_failed_pods(),
        ttl_strategy=run_ttl(after_success_s=6 * 3600, after_failure_s=3 * 24 * 3600),
    )


def retrain_event_source() -> dict[str, Any]:
    """Return the webhook EventSource: POST http://<svc>:12000/retrain with a JSON body."""
    return {
        "apiVersion": EVENTS_API,
        "kind": "EventSource",
        "metadata": {"name": "retrain-webhook", "labels": dict(LABELS)},
        "spec": {
            "service": {"ports": [{"port": int(WEBHOOK_PORT), "targetPort": int(WEBHOOK_PORT)}]},
            "webhook": {
                "retrain": {
                    "port": WEBHOOK_PORT,
                    "endpoint": WEBHOOK_ENDPOINT,
                    "method": "POST",
                    # Informational (the schema requires it): where clients reach the webhook.
                    "url": f"http://retrain-webhook-eventsource-svc:{WEBHOOK_PORT}",
                }
            },
        },
    }


def retrain_sensor() -> dict[str, Any]:
    """Return the Sensor that submits ``retrain`` from a webhook event.

    The POSTed body may carry ``reason`` (default ``drift``) and ``report_uri``; they become the
    Workflow's ``reason`` and ``drift-report-uri`` parameters.
    """
    # The event fills these two by position (spec.arguments.parameters.N.value).
    workflow = retrain_workflow(
        f"{RETRAIN_TEMPLATE}-event-", {"reason": "drift", "drift-report-uri": ""}
    )
    return {
        "apiVersion": EVENTS_API,
        "kind": "Sensor",
        "metadata": {"name": "retrain-on-event", "labels": dict(LABELS)},
        "spec": {
            "template": {"serviceAccountName": SENSOR_SERVICE_ACCOUNT},
            "dependencies": [
                {
                    "name": "retrain-request",
                    "eventSourceName": "retrain-webhook",
                    "eventName": "retrain",
                }
            ],
            "triggers": [
                {
                    "template": {
                        "name": "submit-retrain",
                        "argoWorkflow": {
                            "operation": "submit",
                            "source": {"resource": workflow},
                            "parameters": [
                                {
                                    "src": _event_field("body.reason", "drift"),
                                    "dest": "spec.arguments.parameters.0.value",
                                },
                                {
                                    "src": _event_field("body.report_uri", ""),
                                    "dest": "spec.arguments.parameters.1.value",
                                },
                            ],
                        },
                    },
                    "retryStrategy": {"steps": 3},
                }
            ],
        },
    }  # fmt: skip


def _event_field(data_key: str, default: str) -> dict[str, str]:
    """A Sensor parameter source: a field of the webhook event, with a default."""
    return {"dependencyName": "retrain-request", "dataKey": data_key, "value": default}

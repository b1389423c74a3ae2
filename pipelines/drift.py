"""The drift monitor: a CronWorkflow that checks logged inference data and, when it drifted,
creates a ``retrain`` Workflow; plus the Argo Events route for drift detected elsewhere.

- CronWorkflow ``drift-monitor`` (:func:`drift_monitor`): DAG ``check`` -> ``trigger-retrain``.
  ``check`` runs ``python -m steps.drift``; ``trigger-retrain`` is a ``resource`` template
  (``action: create``) whose manifest is a Workflow with ``workflowTemplateRef: retrain`` and
  parameters ``reason=drift`` and ``drift-report-uri``, gated on ``drifted == true``.
- EventSource ``retrain-webhook`` and Sensor ``retrain-on-event`` (:func:`retrain_event_source`,
  :func:`retrain_sensor`): a POST to the webhook, with the bearer token of the Secret
  ``loopline-webhook``, submits ``retrain`` with the event's reason and report URI. Hera has no
  Argo Events models, so these two are plain dicts.

The check parses untrusted data (the inference log), so it holds no token that can do anything:
its container gets none (``automountServiceAccountToken: false``) and Argo's executor uses
``loopline-drift-check``, which may only report task results. Only ``trigger-retrain``, which
parses nothing and reads only the check's ``drifted`` output (in its ``when``), runs as
``loopline-drift-trigger``, allowed to create Workflows. Its manifest is fixed here: the values
substituted into it are the monitor's own name and ``data-uri``, never a check output, and the
``retrain`` template it references fixes the images (:class:`pipelines.templates.Images`).
"""

from __future__ import annotations

from typing import Any

import yaml
from hera.workflows import DAG, CronWorkflow, Parameter, Resource, Task
from hera.workflows.models import ValueFrom

from pipelines.retrain import DEFAULT_DATA_URI
from pipelines.templates import (
    Images,
    PodProfile,
    keep_failed_pods,
    pod_security_context,
    run_ttl,
    setting_defaults,
    step_template,
    task_output,
)
from steps.core.settings import DriftSettings

MONITOR_NAME = "drift-monitor"
SCHEDULES = ("17 * * * *",)
"""Every hour at :17 in :data:`TIMEZONE`; change here and ``make render``."""
TIMEZONE = "UTC"
CHECK_SERVICE_ACCOUNT = "loopline-drift-check"
"""The monitor's pods: task results only (``k8s/pipeline/drift-rbac.yaml``)."""
TRIGGER_SERVICE_ACCOUNT = "loopline-drift-trigger"
"""``trigger-retrain`` only: creates the ``retrain`` Workflow and watches it."""
SENSOR_SERVICE_ACCOUNT = "loopline-sensor"
# Names of a Secret and its key, not their values.
WEBHOOK_SECRET = "loopline-webhook"  # noqa: S105
WEBHOOK_SECRET_KEY = "token"  # noqa: S105
"""The Secret and key holding the webhook's bearer token (``Authorization: Bearer <token>``)."""
REPORT_KEY = "drift/{{workflow.name}}/report.html"
"""Where the check of this monitor run writes its report, under the artifact store: it is run
with ``--run-name {{workflow.name}}`` and writes ``steps.drift.REPORT_DIR/<run name>/report.html``.
The retrain gets this key rather than the check's ``report_uri`` output, which would let the
check (parsing untrusted data) write into the Workflow manifest."""
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
    ]  # fmt: skip


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
            "drift-report-uri": REPORT_KEY,
            "data-uri": "{{inputs.parameters.data-uri}}",
        },
    )
    return yaml.safe_dump(workflow, sort_keys=True)


def drift_monitor(images: Images | None = None) -> CronWorkflow:
    """Return the ``drift-monitor`` CronWorkflow."""
    check = step_template(
        "drift",
        flags=("since", "min-rows", "drift-share", "run-name"),
        profile=PodProfile("1", "1Gi", "2", "2Gi", deadline_s=1800),
        retry_limit=2,
        image=(images or Images()).pipeline,
        executor_service_account=CHECK_SERVICE_ACCOUNT,
    )
    trigger = Resource(
        name="trigger-retrain",
        action="create",
        manifest=retrain_manifest(),
        service_account_name=TRIGGER_SERVICE_ACCOUNT,
        inputs=[Parameter(name="data-uri")],
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
                arguments={"data-uri": "{{workflow.parameters.data-uri}}"},
                depends="check",
                when=DRIFTED_WHEN,
            ),
        ],
    )
    return CronWorkflow(
        name=MONITOR_NAME,
        labels=dict(LABELS),
        annotations=setting_defaults({"data-uri": "data.uri"}),
        schedules=list(SCHEDULES),
        timezone=TIMEZONE,
        concurrency_policy="Forbid",
        starting_deadline_seconds=300,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=5,
        entrypoint="monitor",
        arguments=monitor_parameters(),
        templates=[dag, check, trigger],
        service_account_name=CHECK_SERVICE_ACCOUNT,
        security_context=pod_security_context(),
        active_deadline_seconds=3600,
        pod_gc=keep_failed_pods(),
        ttl_strategy=run_ttl(after_success_s=6 * 3600, after_failure_s=3 * 24 * 3600),
    )


def events_pod_template(service_account: str | None = None) -> dict[str, Any]:
    """Return the ``spec.template`` of an Argo Events pod: Pod Security "restricted", with the
    image's own non-root user (Argo Events' images set one), and ``service_account`` if given."""
    template: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "container": {
            "securityContext": {
                "allowPrivilegeEscalation": False,
                "capabilities": {"drop": ["ALL"]},
            }
        },
    }
    if service_account is not None:
        template["serviceAccountName"] = service_account
    return template


def retrain_event_source() -> dict[str, Any]:
    """Return the webhook EventSource: POST http://<svc>:12000/retrain with a JSON body and
    ``Authorization: Bearer <token>``, the token being key ``token`` of Secret
    ``loopline-webhook`` (Argo Events answers 401 without it)."""
    return {
        "apiVersion": EVENTS_API,
        "kind": "EventSource",
        "metadata": {"name": "retrain-webhook", "labels": dict(LABELS)},
        "spec": {
            "template": events_pod_template(),
            "service": {"ports": [{"port": int(WEBHOOK_PORT), "targetPort": int(WEBHOOK_PORT)}]},
            "webhook": {
                "retrain": {
                    "port": WEBHOOK_PORT,
                    "endpoint": WEBHOOK_ENDPOINT,
                    "method": "POST",
                    "authSecret": {"name": WEBHOOK_SECRET, "key": WEBHOOK_SECRET_KEY},
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
            "template": events_pod_template(SENSOR_SERVICE_ACCOUNT),
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

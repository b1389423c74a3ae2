"""The canary promotion: the ``promote`` step's templates, and the WorkflowTemplates engineers
submit by hand.

``python -m steps.promote`` carries the canary from the route's current weight through the
traffic steps (10 -> 30 -> 50 -> 100 %), judging it every analysis interval, and promotes it at
100 % or rolls it back (exit 4, never retried). The retrain DAG runs it after ``deploy``
(:func:`promote_template`); these WorkflowTemplates run it on demand, as ``loopline-pipeline``
in ``loopline``, like ``retrain``:

- ``canary-promote`` (:func:`canary_promote`): promote version ``model-version``
  (``argo submit -n loopline --from workflowtemplate/canary-promote -p model-version=7``).
- ``canary-abort`` (:func:`canary_abort`): roll the canary in progress back now.
- ``canary-rollback`` (:func:`canary_rollback`): put ``previous_champion`` back on stable.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from hera.workflows import DAG, Container, Parameter, Task, WorkflowTemplate
from hera.workflows.models import WorkflowMetadata

from pipelines.templates import (
    SERVICE_ACCOUNT,
    Images,
    PodProfile,
    keep_failed_pods,
    pod_security_context,
    retried_deadline_s,
    run_ttl,
    step_template,
    workflow_parameter,
)
from steps.core.settings import CanarySettings, DeploySettings

PROMOTE_NAME = "canary-promote"
ABORT_NAME = "canary-abort"
ROLLBACK_NAME = "canary-rollback"
LABELS = {"app.kubernetes.io/part-of": "loopline", "app.kubernetes.io/component": "canary"}

Action = Literal["abort", "rollback"]

CLUSTER = "kubernetes"
"""The platform whose analysis interval the deadlines are sized for (the local one is shorter)."""
RETRY_LIMIT = 2
"""Retries of every ``steps.promote`` template (exit 1 only): it resumes from the route's
weight, so running it again is safe."""
ROLLOUTS = 2
"""Rollouts one run may wait for, each up to ``deploy.rollout_timeout_s``: the canary's (ready
again when a run resumes, or scaled down on a rollback) and stable's taking the version."""
OVERHEAD_S = 300
"""Per run: pod start, the promotion lock, registry tags, the analysis record and its upload."""


def promote_deadline_s(
    deploy: DeploySettings | None = None, canary: CanarySettings | None = None
) -> int:
    """Return the ``activeDeadlineSeconds`` of one promote attempt: its slowest honest run.

    With the default policy on a cluster: each of the 4 traffic steps is judged once per
    300 s interval and held for up to 3 more while the verdict is inconclusive (plus one per
    failed check tolerated over the run, ``failure_limit``, 0 by default), 4 x (1 + 3) x 300 s =
    4,800 s; each of those 16 checks may be retried 3 times on query errors, after 1 + 2 + 4 s,
    112 s; then 2 rollouts of up to 600 s and 300 s of overhead: 6,412 s (1 h 47 min) in all.

    A policy changed in ``loopline-config`` (a longer ``LOOPLINE_CANARY__INTERVAL_S``) needs its
    default changed here too, and ``make render``.

    Args:
        deploy: the traffic steps and rollout deadline; by default the settings' defaults.
        canary: the analysis policy; by default the settings' defaults.
    """
    deploy = deploy or DeploySettings()
    canary = canary or CanarySettings()
    checks = len(deploy.traffic_steps) * (1 + canary.max_inconclusive) + canary.failure_limit
    query_retries_s = sum(
        canary.error_backoff_s * 2.0**retry for retry in range(canary.error_retries)
    )
    analysis_s = checks * (canary.interval_for(CLUSTER) + query_retries_s)
    return math.ceil(analysis_s + ROLLOUTS * deploy.rollout_timeout_s + OVERHEAD_S)


def action_deadline_s(deploy: DeploySettings | None = None) -> int:
    """Return the ``activeDeadlineSeconds`` of an abort or rollback attempt: no analysis, only
    the rollouts (2 x 600 s by default) and the overhead, 1,500 s."""
    deploy = deploy or DeploySettings()
    return math.ceil(ROLLOUTS * deploy.rollout_timeout_s + OVERHEAD_S)


def _profile(deadline_s: int) -> PodProfile:
    # As deploy's: the MLflow and Kubernetes clients; plus the analysis record's plots.
    return PodProfile("200m", "512Mi", "1", "1Gi", deadline_s=deadline_s)


def promote_template(images: Images | None = None) -> Container:
    """Return the template ``promote``: ``python -m steps.promote --model-version V
    --pipeline-run NAME``, never retried on exit 2, 3 or 4, with :func:`promote_deadline_s`.
    It moves the HTTPRoute's weights, so its container gets the service-account token."""
    return step_template(
        "promote",
        flags=("model-version", "pipeline-run"),
        profile=_profile(promote_deadline_s()),
        retry_limit=RETRY_LIMIT,
        image=(images or Images()).pipeline,
        kubernetes_api=True,
    )


def action_template(action: Action, images: Images | None = None) -> Container:
    """Return the template named ``action``: ``python -m steps.promote --pipeline-run NAME
    --action <action>``, never retried on exit 2, 3 or 4, with :func:`action_deadline_s`."""
    return step_template(
        "promote",
        name=action,
        flags=("pipeline-run",),
        switches=("--action", action),
        profile=_profile(action_deadline_s()),
        retry_limit=RETRY_LIMIT,
        image=(images or Images()).pipeline,
        kubernetes_api=True,
    )


def _one_step_template(
    name: str,
    step: Container,
    arguments: Mapping[str, str],
    parameters: Sequence[Parameter] = (),
) -> WorkflowTemplate:
    """A WorkflowTemplate whose DAG ``name`` runs ``step`` once, given time for its retries."""
    task = Task(name=str(step.name), template=step, arguments=dict(arguments))
    deadline_s = retried_deadline_s(int(str(step.active_deadline_seconds)), RETRY_LIMIT)
    return WorkflowTemplate(
        name=name,
        labels=dict(LABELS),
        entrypoint=name,
        arguments=list(parameters) or None,
        templates=[DAG(name=name, tasks=[task]), step],
        service_account_name=SERVICE_ACCOUNT,
        security_context=pod_security_context(),
        active_deadline_seconds=deadline_s,
        pod_gc=keep_failed_pods(),
        ttl_strategy=run_ttl(),
        workflow_metadata=WorkflowMetadata(labels=dict(LABELS)),
    )


def canary_promote(images: Images | None = None) -> WorkflowTemplate:
    """Return the ``canary-promote`` WorkflowTemplate: promote the canary ``model-version``.

    ``model-version`` has no default: ``argo submit`` refuses a run without ``-p``.
    """
    model_version = Parameter(
        name="model-version", description="the registered version serving as the canary"
    )
    arguments = {
        "model-version": workflow_parameter("model-version"),
        "pipeline-run": "{{workflow.name}}",
    }
    return _one_step_template(PROMOTE_NAME, promote_template(images), arguments, [model_version])


def canary_abort(images: Images | None = None) -> WorkflowTemplate:
    """Return the ``canary-abort`` WorkflowTemplate: roll the canary in progress back now."""
    return _one_step_template(
        ABORT_NAME, action_template("abort", images), {"pipeline-run": "{{workflow.name}}"}
    )


def canary_rollback(images: Images | None = None) -> WorkflowTemplate:
    """Return the ``canary-rollback`` WorkflowTemplate: ``previous_champion`` back on stable."""
    return _one_step_template(
        ROLLBACK_NAME, action_template("rollback", images), {"pipeline-run": "{{workflow.name}}"}
    )

"""The Pod Security Standard "restricted" profile, checked offline on pod templates.

:func:`restricted_violations` applies the rules of the restricted profile (which includes the
baseline one) as Pod Security admission does (https://kubernetes.io/docs/concepts/security/
pod-security-standards/), plus Loopline's own hardening for serving pods: a read-only root
filesystem and no service-account token. The validator runs it on every workload a
kustomization builds (``scripts/validate_manifests.py``); :func:`workflow_pod_specs` gives the
pods an Argo workflow creates, so the same rules apply to ``argo/``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ALLOWED_VOLUME_SOURCES = frozenset(
    {
        "configMap",
        "csi",
        "downwardAPI",
        "emptyDir",
        "ephemeral",
        "persistentVolumeClaim",
        "projected",
        "secret",
    }
)
ALLOWED_SECCOMP = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_APPARMOR = frozenset({"RuntimeDefault", "Localhost"})
ALLOWED_ADDED_CAPABILITIES = frozenset({"NET_BIND_SERVICE"})
CONTAINER_FIELDS = ("initContainers", "containers", "ephemeralContainers")
WORKFLOW_KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate", "CronWorkflow")
POD_TEMPLATE_TYPES = ("container", "script", "resource")
"""Argo template types that run a pod (``dag``, ``steps`` and ``suspend`` do not)."""


def pod_spec(document: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """Return the pod spec a workload manifest creates pods from, or None for other kinds."""
    kind, spec = document.get("kind"), document.get("spec") or {}
    if kind == "Pod":
        return spec
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        template: Mapping[str, Any] = (spec.get("template") or {}).get("spec") or {}
        return template
    if kind == "CronJob":
        job = (spec.get("jobTemplate") or {}).get("spec") or {}
        cron_template: Mapping[str, Any] = (job.get("template") or {}).get("spec") or {}
        return cron_template
    return None


def workflow_pod_specs(
    document: Mapping[str, Any], referenced: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Return the pod spec of every template of an Argo workflow document that runs a pod.

    Each is what the workflow decides of the pod: the pod-level ``securityContext`` (the
    template's, else the workflow's), ``automountServiceAccountToken`` (the template's, else the
    workflow's) and the template's main container (``container``/``script``; none for a
    ``resource`` template, whose container Argo builds from its executor settings).

    Args:
        document: a Workflow, WorkflowTemplate, ClusterWorkflowTemplate or CronWorkflow.
        referenced: the spec of the WorkflowTemplate a ``workflowTemplateRef`` names, whose
            templates and pod-level fields the workflow runs (its own fields win).

    Returns:
        Template name -> pod spec; empty for other kinds.
    """
    if document.get("kind") not in WORKFLOW_KINDS:
        return {}
    spec: Mapping[str, Any] = document.get("spec") or {}
    if document.get("kind") == "CronWorkflow":
        spec = spec.get("workflowSpec") or {}
    merged = {**(referenced or {}), **spec}
    pods: dict[str, dict[str, Any]] = {}
    for template in merged.get("templates") or []:
        kind = next((t for t in POD_TEMPLATE_TYPES if t in template), None)
        if kind is None:
            continue
        pod: dict[str, Any] = {
            "securityContext": template.get("securityContext") or merged.get("securityContext"),
            "automountServiceAccountToken": template.get(
                "automountServiceAccountToken", merged.get("automountServiceAccountToken")
            ),
            "containers": [] if kind == "resource" else [{"name": "main", **template[kind]}],
        }
        pods[str(template.get("name"))] = pod
    return pods


def restricted_violations(spec: Mapping[str, Any], *, loopline_hardening: bool = True) -> list[str]:
    """Return every way the pod spec ``spec`` breaks the "restricted" profile.

    Args:
        spec: a pod spec (``pod_spec(document)``).
        loopline_hardening: also require ``readOnlyRootFilesystem: true`` on every container
            and ``automountServiceAccountToken: false`` (not part of the standard).

    Returns:
        One line per violation, naming the container or field; empty when compliant.
    """
    pod_context = spec.get("securityContext") or {}
    problems = _pod_level(spec, pod_context)
    if loopline_hardening and spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken must be false")
    for field_name in CONTAINER_FIELDS:
        for container in spec.get(field_name) or []:
            where = f"{field_name}[{container.get('name', '?')}]"
            context = container.get("securityContext") or {}
            problems += [f"{where}: {p}" for p in _container_level(context, pod_context)]
            if container.get("ports") and any(p.get("hostPort") for p in container["ports"]):
                problems.append(f"{where}: hostPort is forbidden")
            if loopline_hardening and context.get("readOnlyRootFilesystem") is not True:
                problems.append(f"{where}: readOnlyRootFilesystem must be true")
    return problems


def _pod_level(spec: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    problems = [
        f"{field_name} is forbidden"
        for field_name in ("hostNetwork", "hostPID", "hostIPC")
        if spec.get(field_name)
    ]
    for volume in spec.get("volumes") or []:
        sources = set(volume) - {"name"}
        if not sources <= ALLOWED_VOLUME_SOURCES:
            problems.append(f"volume {volume.get('name')!r}: {sorted(sources)} is not allowed")
    if pod_context.get("runAsUser") == 0:
        problems.append("securityContext.runAsUser must not be 0")
    seccomp = (pod_context.get("seccompProfile") or {}).get("type")
    if seccomp is not None and seccomp not in ALLOWED_SECCOMP:
        problems.append(f"securityContext.seccompProfile {seccomp!r} is not allowed")
    if not spec.get("containers"):
        # A pod whose containers someone else writes (Argo's resource pods): the pod level
        # must carry what restricted asks of every container.
        if pod_context.get("runAsNonRoot") is not True:
            problems.append("securityContext.runAsNonRoot must be true")
        if seccomp is None:
            problems.append("securityContext.seccompProfile must be set")
    apparmor = (pod_context.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in ALLOWED_APPARMOR:
        problems.append(f"securityContext.appArmorProfile {apparmor!r} is not allowed")
    return problems


def _container_level(context: Mapping[str, Any], pod_context: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    if context.get("privileged"):
        problems.append("privileged is forbidden")
    if context.get("allowPrivilegeEscalation") is not False:
        problems.append("allowPrivilegeEscalation must be false")
    capabilities = context.get("capabilities") or {}
    if "ALL" not in (capabilities.get("drop") or []):
        problems.append("capabilities.drop must include ALL")
    added = set(capabilities.get("add") or []) - ALLOWED_ADDED_CAPABILITIES
    if added:
        problems.append(f"capabilities.add {sorted(added)} is not allowed")
    non_root = context.get("runAsNonRoot", pod_context.get("runAsNonRoot"))
    if non_root is not True:
        problems.append("runAsNonRoot must be true (container or pod)")
    if context.get("runAsUser") == 0:
        problems.append("runAsUser must not be 0")
    seccomp = (context.get("seccompProfile") or pod_context.get("seccompProfile") or {}).get("type")
    if seccomp not in ALLOWED_SECCOMP:
        problems.append(
            "seccompProfile.type must be RuntimeDefault or Localhost (container or pod)"
        )
    apparmor = (context.get("appArmorProfile") or {}).get("type")
    if apparmor is not None and apparmor not in ALLOWED_APPARMOR:
        problems.append(f"appArmorProfile {apparmor!r} is not allowed")
    return problems

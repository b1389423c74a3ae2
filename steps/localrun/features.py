"""Which Argo Workflow fields the local runner supports, ignores or rejects: one table.

The loader classifies every key of the YAML with this table: a *supported* key is executed, an
*ignored* key only matters on a Kubernetes cluster and is skipped, a *rejected* key (and any key the
table does not know) fails the load naming the field and its line. The README and
``loopline run --features`` print the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Support(StrEnum):
    """How the local runner treats a field."""

    SUPPORTED = "supported"
    IGNORED = "ignored"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Feature:
    """One key of one kind of Argo object and how the runner treats it."""

    scope: str
    key: str
    support: Support
    note: str = ""


S, IGN, R = Support.SUPPORTED, Support.IGNORED, Support.REJECTED
_CLUSTER = "only matters on a cluster"
_FAN_OUT = "fan-out is not supported; write one task per item"

FEATURES: tuple[Feature, ...] = (
    # --- the document -------------------------------------------------------------------------
    Feature("document", "apiVersion", S, "argoproj.io/v1alpha1"),
    Feature("document", "kind", S, "Workflow, WorkflowTemplate or CronWorkflow"),
    Feature("document", "metadata", S),
    Feature("document", "spec", S),
    Feature("document", "status", IGN, "a saved run's status is not replayed"),
    Feature("metadata", "name", S, "the run's name (WorkflowTemplate/CronWorkflow: a prefix)"),
    Feature("metadata", "generateName", S, "prefix + a counter"),
    Feature("metadata", "namespace", S, "only as {{workflow.namespace}}"),
    Feature("metadata", "labels", IGN, _CLUSTER),
    Feature(
        "metadata",
        "annotations",
        IGN,
        "only matters on a cluster, but loopline.dev/parameter-settings: a parameter's local "
        "default from a setting",
    ),
    # --- CronWorkflow spec --------------------------------------------------------------------
    Feature("cron spec", "workflowSpec", S, "run once, now"),
    Feature("cron spec", "workflowMetadata", IGN, _CLUSTER),
    Feature("cron spec", "schedule", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "schedules", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "timezone", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "concurrencyPolicy", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "startingDeadlineSeconds", IGN, "the runner runs the workflowSpec once"),
    Feature("cron spec", "successfulJobsHistoryLimit", IGN, _CLUSTER),
    Feature("cron spec", "failedJobsHistoryLimit", IGN, _CLUSTER),
    Feature("cron spec", "suspend", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "stopStrategy", IGN, "the runner runs the workflowSpec once, now"),
    Feature("cron spec", "when", IGN, "the runner runs the workflowSpec once, now"),
    # --- workflow spec ------------------------------------------------------------------------
    Feature("workflow spec", "entrypoint", S),
    Feature("workflow spec", "arguments", S, "parameters; -p NAME=VALUE overrides"),
    Feature("workflow spec", "templates", S),
    Feature("workflow spec", "workflowTemplateRef", S, "resolved from the same directory"),
    Feature("workflow spec", "parallelism", S, "caps --parallelism"),
    Feature("workflow spec", "activeDeadlineSeconds", S, "kills running nodes, run Failed"),
    Feature("workflow spec", "podGC", IGN, _CLUSTER),
    Feature("workflow spec", "ttlStrategy", IGN, _CLUSTER),
    Feature("workflow spec", "serviceAccountName", IGN, _CLUSTER),
    Feature("workflow spec", "automountServiceAccountToken", IGN, _CLUSTER),
    Feature("workflow spec", "nodeSelector", IGN, _CLUSTER),
    Feature("workflow spec", "tolerations", IGN, _CLUSTER),
    Feature("workflow spec", "affinity", IGN, _CLUSTER),
    Feature("workflow spec", "securityContext", IGN, _CLUSTER),
    Feature("workflow spec", "podMetadata", IGN, _CLUSTER),
    Feature("workflow spec", "podPriorityClassName", IGN, _CLUSTER),
    Feature("workflow spec", "imagePullSecrets", IGN, _CLUSTER),
    Feature("workflow spec", "artifactRepositoryRef", IGN, "the configured artifact store is used"),
    Feature("workflow spec", "workflowMetadata", IGN, _CLUSTER),
    Feature("workflow spec", "priority", IGN, _CLUSTER),
    Feature("workflow spec", "archiveLogs", IGN, "logs are always files in the run directory"),
    Feature("workflow spec", "volumeClaimGC", IGN, _CLUSTER),
    Feature("workflow spec", "metrics", IGN, "Prometheus metrics are emitted by the controller"),
    Feature("workflow spec", "dnsPolicy", IGN, _CLUSTER),
    Feature("workflow spec", "executor", IGN, _CLUSTER),
    Feature("workflow spec", "podDisruptionBudget", IGN, _CLUSTER),
    Feature("workflow spec", "volumes", R, "Kubernetes volumes"),
    Feature("workflow spec", "volumeClaimTemplates", R, "Kubernetes volumes"),
    Feature("workflow spec", "onExit", R, "exit handlers"),
    Feature("workflow spec", "hooks", R, "lifecycle hooks"),
    Feature("workflow spec", "synchronization", R, "semaphores and mutexes"),
    Feature("workflow spec", "templateDefaults", R, "write the fields on each template"),
    Feature("workflow spec", "retryStrategy", R, "put retryStrategy on the templates"),
    Feature("workflow spec", "podSpecPatch", R, "pod patches"),
    Feature("workflow spec", "hostNetwork", R, "pod networking"),
    Feature("workflow spec", "shutdown", R, "a shut-down workflow does not run"),
    Feature("workflow spec", "suspend", R, "suspended workflows"),
    Feature("workflow spec", "memoize", R, "memoization"),
    Feature("workflowTemplateRef", "name", S, "<dir>/<name>.yaml or a document with that name"),
    Feature("workflowTemplateRef", "clusterScope", R, "ClusterWorkflowTemplates"),
    # --- arguments and parameters -------------------------------------------------------------
    Feature("arguments", "parameters", S),
    Feature("arguments", "artifacts", S, "from: {{tasks.T.outputs.artifacts.X}} or s3.key"),
    Feature("parameter", "name", S),
    Feature("parameter", "value", S),
    Feature("parameter", "default", S),
    Feature("parameter", "enum", S, "the value must be one of them"),
    Feature("parameter", "description", IGN, "documentation only"),
    Feature("parameter", "valueFrom", R, "ConfigMap and supplied values"),
    Feature("parameter", "globalName", R, "global outputs"),
    # --- templates ----------------------------------------------------------------------------
    Feature("template", "name", S),
    Feature("template", "container", S, "command + args run as a local subprocess"),
    Feature("template", "script", S, "source written to a file, run with command"),
    Feature("template", "dag", S),
    Feature("template", "resource", S, "action: create of a Workflow with workflowTemplateRef"),
    Feature("template", "inputs", S),
    Feature("template", "outputs", S),
    Feature("template", "retryStrategy", S),
    Feature("template", "activeDeadlineSeconds", S, "kills the process group: node Failed"),
    Feature("template", "timeout", S, "like activeDeadlineSeconds, as a duration"),
    Feature("template", "parallelism", S, "for dag templates"),
    Feature("template", "metadata", IGN, _CLUSTER),
    Feature("template", "nodeSelector", IGN, _CLUSTER),
    Feature("template", "tolerations", IGN, _CLUSTER),
    Feature("template", "affinity", IGN, _CLUSTER),
    Feature("template", "securityContext", IGN, _CLUSTER),
    Feature("template", "serviceAccountName", IGN, _CLUSTER),
    Feature("template", "automountServiceAccountToken", IGN, _CLUSTER),
    Feature("template", "priorityClassName", IGN, _CLUSTER),
    Feature("template", "priority", IGN, _CLUSTER),
    Feature("template", "schedulerName", IGN, _CLUSTER),
    Feature("template", "archiveLocation", IGN, "the configured artifact store is used"),
    Feature("template", "podMetadata", IGN, _CLUSTER),
    Feature("template", "executor", IGN, _CLUSTER),
    Feature("template", "hostAliases", IGN, _CLUSTER),
    Feature("template", "metrics", IGN, "Prometheus metrics are emitted by the controller"),
    Feature("template", "steps", R, "write a dag template instead"),
    Feature("template", "volumes", R, "Kubernetes volumes"),
    Feature("template", "sidecars", R, "sidecar containers"),
    Feature("template", "initContainers", R, "init containers"),
    Feature("template", "daemon", R, "daemon containers"),
    Feature("template", "memoize", R, "memoization"),
    Feature("template", "synchronization", R, "semaphores and mutexes"),
    Feature("template", "podSpecPatch", R, "pod patches"),
    Feature("template", "http", R, "HTTP templates"),
    Feature("template", "plugin", R, "executor plugins"),
    Feature("template", "suspend", R, "suspend templates"),
    Feature("template", "containerSet", R, "container sets"),
    Feature("template", "data", R, "data templates"),
    Feature("template", "failFast", R, "fail-fast of steps"),
    Feature("template", "hooks", R, "lifecycle hooks"),
    # --- container / script -------------------------------------------------------------------
    Feature("container", "command", S, "python/python3 -> this interpreter"),
    Feature("container", "args", S, "declared output/artifact paths re-rooted in the node dir"),
    Feature("container", "env", S, "entries with a literal value"),
    Feature("container", "image", IGN, "the project's environment is used"),
    Feature("container", "imagePullPolicy", IGN, _CLUSTER),
    Feature("container", "workingDir", IGN, "each node runs in its own directory"),
    Feature("container", "resources", IGN, _CLUSTER),
    Feature("container", "securityContext", IGN, _CLUSTER),
    Feature("container", "name", IGN, _CLUSTER),
    Feature("container", "ports", IGN, _CLUSTER),
    Feature("container", "livenessProbe", IGN, _CLUSTER),
    Feature("container", "readinessProbe", IGN, _CLUSTER),
    Feature("container", "startupProbe", IGN, _CLUSTER),
    Feature("container", "terminationMessagePath", IGN, _CLUSTER),
    Feature("container", "terminationMessagePolicy", IGN, _CLUSTER),
    Feature("container", "source", S, "script templates only"),
    Feature("container", "volumeMounts", R, "Kubernetes volumes"),
    Feature("container", "volumeDevices", R, "Kubernetes volumes"),
    Feature("container", "envFrom", IGN, "ConfigMaps/Secrets: the runner's own env applies"),
    Feature("container", "lifecycle", R, "container lifecycle hooks"),
    Feature("container", "stdin", R, "interactive containers"),
    Feature("container", "tty", R, "interactive containers"),
    Feature("env", "name", S),
    Feature("env", "value", S),
    Feature("env", "valueFrom", R, "Secrets, ConfigMaps and field refs"),
    # --- dag ----------------------------------------------------------------------------------
    Feature("dag", "tasks", S),
    Feature("dag", "failFast", S, "default true: once a leaf branch fails, nothing new starts"),
    Feature("dag", "target", R, "run the whole DAG"),
    Feature("dag task", "name", S),
    Feature("dag task", "template", S, "a template of the same workflow"),
    Feature("dag task", "arguments", S),
    Feature("dag task", "depends", S, "A, A.Succeeded|Failed|Errored|Skipped|Omitted, && || ! ()"),
    Feature("dag task", "dependencies", S, "legacy list, same as A && B"),
    Feature("dag task", "when", S, "== != < > <= >= =~ !~ && || ! (), no Python eval"),
    Feature("dag task", "continueOn", S, "failed / error; not in a DAG using depends (Argo)"),
    Feature("dag task", "withItems", R, _FAN_OUT),
    Feature("dag task", "withParam", R, _FAN_OUT),
    Feature("dag task", "withSequence", R, _FAN_OUT),
    Feature("dag task", "templateRef", R, "templates of other WorkflowTemplates"),
    Feature("dag task", "inline", R, "inline templates; name the template"),
    Feature("dag task", "onExit", R, "exit handlers"),
    Feature("dag task", "hooks", R, "lifecycle hooks"),
    # --- inputs / outputs / artifacts ---------------------------------------------------------
    Feature("inputs", "parameters", S),
    Feature("inputs", "artifacts", S, "copied into path before the node runs"),
    Feature("outputs", "parameters", S, "valueFrom.path / default; resource: jsonPath"),
    Feature("outputs", "artifacts", S, "copied to the artifact store after success"),
    Feature("outputs", "result", R, "result is set by the runner (stdout)"),
    Feature("outputs", "exitCode", R, "exitCode is set by the runner"),
    Feature("output parameter", "name", S),
    Feature("output parameter", "valueFrom", S),
    Feature("output parameter", "description", IGN, "documentation only"),
    Feature("output parameter", "globalName", R, "global outputs"),
    Feature("output parameter", "value", R, "use valueFrom"),
    Feature("valueFrom", "path", S, "read after success, relative to the node dir"),
    Feature("valueFrom", "default", S, "when the file is missing"),
    Feature("valueFrom", "jsonPath", S, "resource templates: {.metadata.name|namespace|uid}"),
    Feature("valueFrom", "parameter", R, "DAG outputs"),
    Feature("valueFrom", "expression", R, "expr expressions"),
    Feature("valueFrom", "jqFilter", R, "use jsonPath"),
    Feature("valueFrom", "event", R, "events"),
    Feature("valueFrom", "supplied", R, "supplied values"),
    Feature("valueFrom", "configMapKeyRef", R, "ConfigMaps"),
    Feature("artifact", "name", S),
    Feature("artifact", "path", S, "re-rooted in the node dir"),
    Feature("artifact", "from", S, "{{tasks.T.outputs.artifacts.X}}"),
    Feature("artifact", "s3", S, "key only: mapped to the configured artifact store"),
    Feature("artifact", "optional", S),
    Feature("artifact", "archive", IGN, "files and directories are copied as they are"),
    Feature("artifact", "mode", IGN, _CLUSTER),
    Feature("artifact", "recurseMode", IGN, _CLUSTER),
    Feature("artifact", "archiveLogs", IGN, "logs are always files in the run directory"),
    Feature("artifact", "artifactGC", IGN, _CLUSTER),
    Feature("artifact", "deleted", IGN, _CLUSTER),
    Feature("artifact", "description", IGN, "documentation only"),
    Feature("artifact", "globalName", R, "global outputs"),
    Feature("artifact", "fromExpression", R, "expr expressions"),
    Feature("artifact", "subPath", R, "artifact sub-paths"),
    Feature("artifact", "raw", R, "raw artifacts"),
    Feature("artifact", "http", R, "HTTP artifacts"),
    Feature("artifact", "git", R, "git artifacts"),
    Feature("artifact", "gcs", R, "GCS artifacts"),
    Feature("artifact", "azure", R, "Azure artifacts"),
    Feature("artifact", "hdfs", R, "HDFS artifacts"),
    Feature("artifact", "oss", R, "OSS artifacts"),
    Feature("artifact", "artifactory", R, "Artifactory artifacts"),
    Feature("artifact", "plugin", R, "plugin artifacts"),
    Feature("s3", "key", S, "relative to Settings().resolved_artifact_store"),
    Feature("s3", "bucket", R, "key-only: the configured store decides the bucket"),
    Feature("s3", "endpoint", R, "key-only: LOOPLINE_S3__ENDPOINT_URL decides"),
    Feature("s3", "region", R, "key-only: LOOPLINE_S3__REGION decides"),
    Feature("s3", "insecure", R, "key-only"),
    Feature("s3", "accessKeySecret", R, "key-only: credentials come from the environment"),
    Feature("s3", "secretKeySecret", R, "key-only: credentials come from the environment"),
    Feature("s3", "useSDKCreds", R, "key-only"),
    # --- retries ------------------------------------------------------------------------------
    Feature("retryStrategy", "limit", S, "int or string; required (no endless retries)"),
    Feature(
        "retryStrategy",
        "retryPolicy",
        S,
        "Always, OnFailure, OnError; default OnFailure, Always with an expression",
    ),
    Feature("retryStrategy", "backoff", S, "duration, factor, maxDuration, cap (--backoff-scale)"),
    Feature("retryStrategy", "affinity", IGN, _CLUSTER),
    Feature(
        "retryStrategy",
        "expression",
        S,
        "expr: lastRetry.*, retries, asInt, asFloat, comparisons, in, matches, && || !; "
        "parsed, never eval'd; ANDed with retryPolicy",
    ),
    Feature("backoff", "duration", S, "Go duration or seconds"),
    Feature("backoff", "factor", S),
    Feature("backoff", "maxDuration", S, "no retry starts later than this after the first"),
    Feature("backoff", "cap", S, "deprecated in Argo, still applied: no wait longer than cap"),
    # --- resource -----------------------------------------------------------------------------
    Feature("resource", "action", S, "create only"),
    Feature("resource", "manifest", S, "a Workflow with workflowTemplateRef: run as a child"),
    Feature("resource", "successCondition", S, "status.phase == X / in (X, Y): waits for child"),
    Feature("resource", "failureCondition", S, "status.phase == X / in (X, Y): waits for child"),
    Feature("resource", "setOwnerReference", IGN, _CLUSTER),
    Feature("resource", "flags", IGN, "kubectl flags"),
    Feature("resource", "mergeStrategy", R, "only create is supported"),
    Feature("resource", "manifestFrom", R, "write the manifest inline"),
)


def scope_table(scope: str) -> dict[str, Feature]:
    """Return the features of one kind of object, keyed by field name.

    Raises:
        KeyError: when no feature has that scope (a bug in the caller).
    """
    table = {feature.key: feature for feature in FEATURES if feature.scope == scope}
    if not table:
        raise KeyError(scope)
    return table

"""Building blocks of Loopline's Argo workflows: one container template per step CLI.

Every step runs as ``python -m steps.<name> --flag {{inputs.parameters.flag}} ... --out-dir
/tmp/outputs`` and writes each output parameter to ``/tmp/outputs/<name>``; Argo reads them with
``valueFrom.path``. Configuration that does not vary per run (MLflow URI, S3 endpoint, model name,
credentials) reaches the pod as environment from the ``loopline-config`` ConfigMap and the
``loopline-s3``/``loopline-mlflow`` Secrets (``k8s/pipeline/``); a step that needs fewer
(:func:`step_env_from`'s callers choose) gets fewer.

Every pod meets Pod Security "restricted", the image build's included: the workflow's pod-level
context (:func:`pod_security_context`) plus each container's (:func:`restricted_security_context`).
A step's main container gets no service-account token unless it calls the Kubernetes API
(``kubernetes_api=True``: deploy, promote); Argo's executor containers then use
``executor.serviceAccountName``'s token, which may only report task results.

The images are fixed at render time (:class:`Images`), never a workflow parameter: whoever can
submit a run cannot choose what it executes. ``python -m pipelines.render --pipeline-image ...``
renders another registry's copy.

Only plain ``container`` templates are built here, with the fields the local runner also
executes: no volumes, sidecars, ``podSpecPatch`` or exit handlers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from hera.workflows import (
    Artifact,
    ConfigMapEnvFrom,
    Container,
    Env,
    Parameter,
    Resources,
    RetryStrategy,
    S3Artifact,
    SecretEnvFrom,
)
from hera.workflows.models import (
    Backoff,
    Capabilities,
    ExecutorConfig,
    PodGC,
    PodSecurityContext,
    SeccompProfile,
    SecurityContext,
    TTLStrategy,
    ValueFrom,
)

from steps.core.errors import NOT_RETRIED_EXIT_CODES
from steps.core.names import SETTING_DEFAULTS_ANNOTATION, STEP_OUTPUTS

OUT_DIR = "/tmp/outputs"
"""Where every step writes its output parameter files (``--out-dir``)."""

PIPELINE_VERSION = "0.1.0"
"""Tag of the images built from the repository's Dockerfile; kept equal to pyproject's version."""

PIPELINE_IMAGE = f"ghcr.io/loopline/pipeline:{PIPELINE_VERSION}"
"""The image every step runs in by default: the Dockerfile's ``pipeline`` target."""

BUILDER_IMAGE = f"ghcr.io/loopline/pipeline-image-builder:{PIPELINE_VERSION}"
"""The image build's image by default: the Dockerfile's ``pipeline-image-builder`` target."""

SERVICE_ACCOUNT = "loopline-pipeline"
CONFIG_MAP = "loopline-config"
S3_CREDENTIALS = "loopline-s3"
MLFLOW_CREDENTIALS = "loopline-mlflow"
REGISTRY_CREDENTIALS = "loopline-registry"
"""The Secret holding ``DOCKER_AUTH_CONFIG`` (a docker ``config.json``), the build pod's only
credentials: the builder writes it to a private file for ``skopeo copy --authfile``."""
RUN_AS_USER = 10001
"""The non-root user of the pipeline images (Dockerfile ``USER``)."""


@dataclass(frozen=True)
class Images:
    """The images a rendered workflow runs.

    Fixed when rendering: a run cannot change them (``argo submit -p`` only sets declared
    parameters, and none names an image). Each must be ``host/path:tag`` or ``...@sha256:``.
    Where the model image goes is configuration, not rendering: ``LOOPLINE_IMAGE__REGISTRY`` in
    the ``loopline-config`` ConfigMap.

    Raises:
        ValueError: when a reference has a scheme, no registry host, or no tag or digest.
    """

    pipeline: str = PIPELINE_IMAGE
    builder: str = BUILDER_IMAGE

    def __post_init__(self) -> None:
        for name, reference in (("pipeline", self.pipeline), ("builder", self.builder)):
            last = reference.rsplit("/", 1)[-1]
            if "://" in reference or "/" not in reference or not (":" in last or "@" in last):
                raise ValueError(
                    f"{name} image {reference!r}: expected registry/path:tag or @sha256:digest"
                )


ARTIFACT_KEY_PREFIX = "workflows/{{workflow.name}}"
"""Key prefix of key-only S3 artifacts in the default artifact repository's bucket."""

BACKOFF_FIRST_S = 30
"""The wait before a step's first retry (:func:`service_retry`); each later wait doubles."""
BACKOFF_FACTOR = 2


@dataclass(frozen=True)
class PodProfile:
    """What a step's pod may use: requests, limits and a deadline.

    Quantities are Kubernetes strings (``"500m"``, ``"2Gi"``). ``deadline_s`` is the template's
    ``activeDeadlineSeconds``: each attempt (retries included) gets that long, so keep it above
    the step's slowest honest run.
    """

    cpu_request: str
    memory_request: str
    cpu_limit: str
    memory_limit: str
    deadline_s: int

    def resources(self) -> Resources:
        """Return the container's requests and limits."""
        return Resources(
            cpu_request=self.cpu_request,
            memory_request=self.memory_request,
            cpu_limit=self.cpu_limit,
            memory_limit=self.memory_limit,
        )


def retry_expression(not_retried: Sequence[int] = NOT_RETRIED_EXIT_CODES) -> str:
    """Return the ``retryStrategy.expression`` that never retries the exit codes ``not_retried``.

    Argo evaluates it after each failed attempt with ``lastRetry.exitCode`` as a string, ``"-1"``
    when the pod left none (deleted, evicted, lost with its node): ``asInt`` turns it into a
    number, and a missing code is not in the list, so a lost pod is still retried.
    """
    return " && ".join(f"asInt(lastRetry.exitCode) != {code}" for code in not_retried)


def service_retry(limit: int, attempt_deadline_s: int) -> RetryStrategy:
    """Return the retry strategy of a step that talks to MLflow, S3 or a registry.

    A step that exits 2 (bad input), 3 (a gate's no) or 4 (a canary rolled back) fails at once:
    retrying cannot change the outcome (:mod:`steps.core.errors`). Anything else (exit 1: a
    service failed; a failed or errored pod with no exit code) is retried with exponential
    backoff from :data:`BACKOFF_FIRST_S` (30 s, 60 s, 120 s, ...). Argo retries only when both
    the ``retryPolicy`` and the ``expression`` allow it (docs/retries.md); ``Always`` is written
    out, so the expression alone decides on every Argo version. ``maxDuration`` leaves room for
    every attempt to use its whole deadline. IntOrString fields are rendered as strings, Argo's
    canonical form, so the upstream schema accepts them unchanged.
    """
    max_duration_s = attempt_deadline_s * (limit + 1)
    return RetryStrategy(
        limit=str(limit),
        retry_policy="Always",
        expression=retry_expression(),
        backoff=Backoff(
            duration=f"{BACKOFF_FIRST_S}s",
            factor=str(BACKOFF_FACTOR),
            max_duration=f"{max_duration_s}s",
        ),
    )


def retried_deadline_s(attempt_deadline_s: int, retry_limit: int) -> int:
    """Return the longest a step under :func:`service_retry` can run: every attempt to its
    deadline, plus the backoff waits between them.

    A workflow running that one step gives itself this long, so its retries are not cut short.
    """
    waits_s = sum(BACKOFF_FIRST_S * int(BACKOFF_FACTOR**retry) for retry in range(retry_limit))
    return attempt_deadline_s * (retry_limit + 1) + waits_s


def keep_failed_pods() -> PodGC:
    """Return the pod GC of Loopline's workflows: pods of a successful run are deleted at once,
    those of a failed run stay for ``kubectl logs`` until the TTL removes the workflow."""
    return PodGC(strategy="OnWorkflowSuccess")


def run_ttl(after_success_s: int = 24 * 3600, after_failure_s: int = 7 * 24 * 3600) -> TTLStrategy:
    """Return how long a finished workflow is kept: by default a day after success, a week after
    failure (long enough to investigate one)."""
    return TTLStrategy(seconds_after_success=after_success_s, seconds_after_failure=after_failure_s)


EnvSource = ConfigMapEnvFrom | SecretEnvFrom


def step_env_from(*, s3: bool = True, mlflow: bool = True) -> list[EnvSource]:
    """Return the env sources a step container reads its ``LOOPLINE_*`` settings from: the
    ``loopline-config`` ConfigMap, plus the S3 and MLflow Secrets unless left out.

    The MLflow credentials are optional: an MLflow server without authentication needs none.
    """
    sources: list[EnvSource] = [ConfigMapEnvFrom(name=CONFIG_MAP)]
    if s3:
        sources.append(SecretEnvFrom(name=S3_CREDENTIALS))
    if mlflow:
        sources.append(SecretEnvFrom(name=MLFLOW_CREDENTIALS, optional=True))
    return sources


def registry_env_from() -> list[EnvSource]:
    """Return the image build's env sources: the ``loopline-config`` ConfigMap (for
    ``LOOPLINE_IMAGE__REGISTRY``) and the registry Secret (``DOCKER_AUTH_CONFIG``), no S3 or
    MLflow Secret.

    The Secret is optional: a registry that takes anonymous pushes (a cluster-local one) needs none.
    """
    return [
        *step_env_from(s3=False, mlflow=False),
        SecretEnvFrom(name=REGISTRY_CREDENTIALS, optional=True),
    ]


def pod_security_context() -> PodSecurityContext:
    """Return the pod-level security context of every workflow pod (Pod Security "restricted").

    Set on the workflow spec, so it covers Argo's own pods too (the executor containers and the
    ``resource`` templates' pods), whose container-level context the controller's
    ``executor.securityContext`` sets (k8s/README.md).
    """
    return PodSecurityContext(
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        run_as_group=RUN_AS_USER,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def restricted_security_context() -> SecurityContext:
    """Return the container security context of an ordinary step (Pod Security "restricted")."""
    return SecurityContext(
        allow_privilege_escalation=False,
        capabilities=Capabilities(drop=["ALL"]),
        run_as_non_root=True,
        run_as_user=RUN_AS_USER,
        seccomp_profile=SeccompProfile(type="RuntimeDefault"),
    )


def output_path(name: str) -> str:
    """Return the file a step writes output parameter ``name`` to."""
    return f"{OUT_DIR}/{name}"


def task_output(task: str, name: str) -> str:
    """Return the Argo expression of output parameter ``name`` of DAG task ``task``."""
    return f"{{{{tasks.{task}.outputs.parameters.{name}}}}}"


def workflow_parameter(name: str) -> str:
    """Return the Argo expression of workflow parameter ``name``."""
    return f"{{{{workflow.parameters.{name}}}}}"


def step_template(
    step: str,
    *,
    flags: Sequence[str],
    name: str | None = None,
    profile: PodProfile,
    switches: Sequence[str] = (),
    archive_out_dir_as: str | None = None,
    retry_limit: int | None = None,
    image: str = PIPELINE_IMAGE,
    env: Mapping[str, str] | None = None,
    env_from: Sequence[EnvSource] | None = None,
    security_context: SecurityContext | None = None,
    node_selector: Mapping[str, str] | None = None,
    outputs: Sequence[str] | None = None,
    artifacts_in: Mapping[str, str] | None = None,
    artifacts_out: Mapping[str, str] | None = None,
    kubernetes_api: bool = False,
    executor_service_account: str = SERVICE_ACCOUNT,
) -> Container:
    """Return the container template that runs ``python -m steps.<step>``.

    Args:
        step: the step module under ``steps/``.
        name: the template's name; by default ``step``. One step CLI can back several
            templates this way (``promote`` and ``rollback`` both run ``steps.promote``).
        flags: the CLI flags taking a value (``"run-id"`` for ``--run-id``); each becomes an
            input parameter of the same name, passed as ``--flag {{inputs.parameters.flag}}``.
        profile: requests, limits and the template's active deadline.
        switches: value-less flags appended verbatim (``"--no-fail-on-reject"``).
        archive_out_dir_as: when set, the whole out dir is also saved as a key-only S3 artifact
            of this name under ``workflows/{{workflow.name}}/<step>/<name>.tgz``.
        retry_limit: retries with backoff (for steps that talk to services); ``None``: none.
        image: the image reference, fixed at render time (:class:`Images`).
        env: plain environment variables the step's image needs (never secrets).
        env_from: the ConfigMaps and Secrets of its environment; :func:`step_env_from` by default.
        security_context: defaults to :func:`restricted_security_context`.
        node_selector: e.g. ``{"kubernetes.io/arch": "arm64"}`` to pin a native builder.
        outputs: the output parameters it declares; by default all of the step's outputs in
            :data:`steps.core.names.STEP_OUTPUTS`, read from ``/tmp/outputs/<name>``.
        artifacts_in: input artifact name -> the path Argo puts it at (the DAG task says which
            artifact, :class:`pipelines.retrain.Stage`).
        artifacts_out: output artifact name -> the path saved, as a key-only S3 artifact under
            ``workflows/{{workflow.name}}/<template name>/<name>.tgz``.
        kubernetes_api: the step calls the Kubernetes API (deploy, promote), so its container
            gets the workflow's service-account token. Otherwise it gets none
            (``automountServiceAccountToken: false``) and Argo's executor containers use
            ``executor_service_account``'s token to report outputs.
        executor_service_account: see ``kubernetes_api``.

    Returns:
        A Hera ``Container`` ready to be listed in a workflow's templates.
    """
    args: list[str] = []
    for flag in flags:
        args += [f"--{flag}", f"{{{{inputs.parameters.{flag}}}}}"]
    args += [*switches, "--out-dir", OUT_DIR]
    chosen = STEP_OUTPUTS[step] if outputs is None else tuple(outputs)
    unknown = sorted(set(chosen) - set(STEP_OUTPUTS[step]))
    if unknown:
        raise ValueError(f"step {step} has no outputs {unknown}")
    template_name = name or step
    output_specs: list[Parameter | Artifact] = [
        Parameter(name=output, value_from=ValueFrom(path=output_path(output))) for output in chosen
    ]
    saved = dict(artifacts_out or {})
    if archive_out_dir_as is not None:
        saved[archive_out_dir_as] = OUT_DIR
    for artifact, path in saved.items():
        key = f"{ARTIFACT_KEY_PREFIX}/{template_name}/{artifact}.tgz"
        output_specs.append(S3Artifact(name=artifact, path=path, key=key))
    input_specs: list[Parameter | Artifact] = [Parameter(name=flag) for flag in flags]
    input_specs += [Artifact(name=a, path=path) for a, path in (artifacts_in or {}).items()]
    return Container(
        name=template_name,
        image=image,
        command=["python", "-m", f"steps.{step}"],
        args=args,
        inputs=input_specs,
        outputs=output_specs or None,
        env=[Env(name=name, value=value) for name, value in sorted((env or {}).items())] or None,
        env_from=list(env_from) if env_from is not None else step_env_from(),
        automount_service_account_token=None if kubernetes_api else False,
        executor=(
            None
            if kubernetes_api
            else ExecutorConfig(service_account_name=executor_service_account)
        ),
        resources=profile.resources(),
        active_deadline_seconds=str(profile.deadline_s),
        retry_strategy=(
            service_retry(retry_limit, profile.deadline_s) if retry_limit is not None else None
        ),
        security_context=security_context or restricted_security_context(),
        node_selector=dict(node_selector) if node_selector else None,
    )


def setting_defaults(parameters: dict[str, str]) -> dict[str, str]:
    """The annotation telling the local runner which setting gives a parameter's default on a
    machine (``{"data-uri": "data.uri"}``: ``LOOPLINE_DATA__URI`` when set); Argo ignores it,
    and the parameter's own value stays the cluster's default."""
    return {SETTING_DEFAULTS_ANNOTATION: json.dumps(parameters, sort_keys=True)}

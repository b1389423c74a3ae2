"""The retrain pipeline: train -> evaluate -> register -> build -> fetch-bento -> containerize ->
deploy -> promote.

Three resources share it:

- WorkflowTemplate ``retrain`` (:func:`retrain_template`): the DAG and its parameters.
- CronWorkflow ``retrain-schedule`` (:func:`retrain_schedule`): runs the template weekly.
- Workflow ``retrain-`` (:func:`retrain_submit`): the file ``argo submit`` takes.

The DAG is built from a list of :class:`Stage` (:func:`retrain_stages`). Every stage after
``evaluate`` has :data:`PROMOTE_WHEN` as its gate; a later stage is appended to that list the
same way, and nothing already there is rewired. The last, ``promote``, is the canary promotion
of :mod:`pipelines.canary`.

The image build is two pods, both restricted: ``fetch-bento`` (holds the S3 credentials)
downloads the bento archive ``build`` exported and saves it as an Argo artifact;
``containerize`` receives that artifact, builds the image without a daemon or privileges
(:mod:`steps.image`), smoke-tests it and pushes it, holding only the registry Secret. The split
keeps the store's credentials out of the pod that talks to the registry and runs the image. The
images are fixed at render time (:class:`pipelines.templates.Images`), not run parameters; the
registry the model image goes to is ``LOOPLINE_IMAGE__REGISTRY`` in ``loopline-config``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, get_args

from hera.workflows import (
    DAG,
    Artifact,
    Container,
    CronWorkflow,
    Parameter,
    Task,
    Workflow,
    WorkflowTemplate,
)
from hera.workflows.models import (
    DAGTask,
    LabelValueFrom,
    WorkflowMetadata,
    WorkflowTemplateRef,
)

from pipelines.canary import promote_template
from pipelines.templates import (
    SERVICE_ACCOUNT,
    Images,
    PodProfile,
    keep_failed_pods,
    pod_security_context,
    registry_env_from,
    run_ttl,
    setting_defaults,
    step_env_from,
    step_template,
    task_output,
    workflow_parameter,
)
from steps.core.settings import DataSettings, GateSettings, ModelKind, Settings, TrainSettings

TEMPLATE_NAME = "retrain"
SCHEDULE_NAME = "retrain-schedule"
ENTRYPOINT = "retrain"
PROMOTE_WHEN = f"{task_output('evaluate', 'decision')} == promote"
"""The gate of every task after ``evaluate``: it runs only when the challenger is promoted."""

REASONS = ("manual", "schedule", "drift")
DEFAULT_DATA_URI = "s3://loopline/data/churn.parquet"
WORKFLOW_DEADLINE_S = 6 * 3600
"""Room for one attempt of every step, one after another: about 3 h 20 min up to ``deploy`` and
1 h 47 min for the canary promotion (:func:`pipelines.canary.promote_deadline_s`)."""
SCHEDULES = ("0 3 * * 1",)
"""Mondays 03:00 in :data:`TIMEZONE`."""
TIMEZONE = "UTC"
LABELS = {"app.kubernetes.io/part-of": "loopline", "app.kubernetes.io/component": "retrain"}
REASON_LABEL = "loopline.dev/reason"
BENTO_ARTIFACT = "bento-archive"
BENTO_DIR = "/tmp/bento"
"""Where ``fetch-bento`` writes the archive and ``containerize`` receives it (an Argo artifact)."""


@dataclass(frozen=True)
class Stage:
    """One DAG task of the retrain pipeline and the container template it runs.

    Attributes:
        template: the container template; the task has the template's name.
        arguments: input parameter name -> value (an Argo expression or a literal).
        after: names of the tasks this one depends on (joined with ``&&``).
        when: an Argo ``when`` condition, e.g. :data:`PROMOTE_WHEN`.
        artifacts: input artifact name -> the artifact it is, e.g.
            ``{{tasks.fetch-bento.outputs.artifacts.bento-archive}}``.
    """

    template: Container
    arguments: Mapping[str, str]
    after: tuple[str, ...] = ()
    when: str | None = None
    artifacts: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        if not self.template.name:
            raise ValueError("a stage's template needs a name")

    @property
    def name(self) -> str:
        """The task's name: its template's name."""
        return str(self.template.name)


def run_parameters() -> list[Parameter]:
    """Return the workflow parameters of the retrain pipeline, defaults taken from the settings.

    The recipe parameters (target, model kind, gate) default to empty: the run then trains the
    current champion's recipe (:mod:`steps.ml.recipe`), or the defaults in code when there is no
    champion yet. A value given with ``-p`` (or by the drift monitor) overrides that field only.

    Returns:
        One parameter per thing a run varies, each with its default (and allowed values).
    """
    data, train, gate = DataSettings(), TrainSettings(), GateSettings()
    seed = Settings.model_fields["seed"].default
    inherit = "empty: the champion's recipe, else {}"

    def declare(name: str, default: str, description: str, enum: Sequence[str] = ()) -> Parameter:
        allowed: list[Any] | None = list(enum) or None
        return Parameter(name=name, value=default, description=description, enum=allowed)

    return [
        declare("data-uri", DEFAULT_DATA_URI, "training data (CSV or Parquet)"),
        declare("target", "", "label column; " + inherit.format(data.target)),
        declare(
            "model-kind",
            "",
            "estimator; " + inherit.format(train.model_kind),
            enum=("", *get_args(ModelKind)),
        ),
        declare("seed", str(seed), "random seed"),
        declare(
            "min-value",
            "",
            "gate: absolute minimum of the metric; " + inherit.format(gate.min_value),
        ),
        declare(
            "max-regression",
            "",
            "gate: largest drop vs champion; " + inherit.format(gate.max_regression),
        ),
        declare("platforms", "linux/arm64", "image platforms (comma-separated)"),
        declare("reason", "manual", "why this run started", enum=REASONS),
        declare("drift-report-uri", "", "the drift report that started this run, if any"),
    ]


def _model_stages(images: Images) -> list[Stage]:
    train = step_template(
        "train",
        flags=(
            "data-uri",
            "target",
            "model-kind",
            "min-value",
            "max-regression",
            "seed",
            "pipeline-run",
        ),
        profile=PodProfile("1", "2Gi", "2", "4Gi", deadline_s=3600),
        retry_limit=2,
        image=images.pipeline,
    )
    evaluate = step_template(
        "evaluate",
        flags=("run-id",),
        switches=("--no-fail-on-reject",),
        archive_out_dir_as="evaluation",
        profile=PodProfile("500m", "1Gi", "1", "2Gi", deadline_s=1200),
        retry_limit=3,
        image=images.pipeline,
    )
    register = step_template(
        "register",
        flags=("run-id", "pipeline-run"),
        profile=PodProfile("100m", "256Mi", "500m", "512Mi", deadline_s=600),
        retry_limit=3,
        image=images.pipeline,
    )
    return [
        Stage(
            train,
            {
                "data-uri": workflow_parameter("data-uri"),
                "target": workflow_parameter("target"),
                "model-kind": workflow_parameter("model-kind"),
                "min-value": workflow_parameter("min-value"),
                "max-regression": workflow_parameter("max-regression"),
                "seed": workflow_parameter("seed"),
                "pipeline-run": "{{workflow.name}}",
            },
        ),
        Stage(
            evaluate,
            {"run-id": task_output("train", "run_id")},
            after=("train",),
        ),
        Stage(
            register,
            {"run-id": task_output("train", "run_id"), "pipeline-run": "{{workflow.name}}"},
            after=("evaluate",),
            when=PROMOTE_WHEN,
        ),
    ]


def _packaging_stages(images: Images) -> list[Stage]:
    build = step_template(
        "build",
        flags=("model-version", "platforms"),
        archive_out_dir_as="bento",
        profile=PodProfile("500m", "1Gi", "1", "3Gi", deadline_s=1800),
        retry_limit=2,
        image=images.pipeline,
    )
    # The store's half of the image build: a pod with the S3 credentials (no MLflow) downloads
    # the archive and Argo saves it as an artifact for containerize, so the pod that runs the
    # model image and pushes it never holds them.
    fetch_bento = step_template(
        "containerize",
        name="fetch-bento",
        flags=("archive-uri",),
        switches=("--fetch-to", BENTO_DIR),
        outputs=(),
        artifacts_out={BENTO_ARTIFACT: BENTO_DIR},
        profile=PodProfile("100m", "256Mi", "500m", "1Gi", deadline_s=600),
        retry_limit=2,
        image=images.pipeline,
        env_from=step_env_from(mlflow=False),
    )
    # The step CLI runs in the pipeline-image-builder image (steps + mmdebstrap, proot,
    # qemu-user-static, skopeo): the same daemonless builder as on a workstation, so one command
    # line serves the cluster and the local runner. It reads the bento from its input artifact
    # and holds only the registry Secret: no S3, MLflow or API token. Pinned to arm64 so the
    # smoke test runs the arm64 image natively; on an amd64 node it would run under QEMU user
    # emulation (the image has qemu-user-static), slower.
    containerize = step_template(
        "containerize",
        flags=("platforms",),
        switches=("--archive", BENTO_DIR),
        artifacts_in={BENTO_ARTIFACT: BENTO_DIR},
        profile=PodProfile("1", "2Gi", "2", "4Gi", deadline_s=3600),
        retry_limit=2,
        image=images.builder,
        env_from=registry_env_from(),
        node_selector={"kubernetes.io/arch": "arm64"},
    )
    return [
        Stage(
            build,
            {
                "model-version": task_output("register", "model_version"),
                "platforms": workflow_parameter("platforms"),
            },
            after=("register",),
            when=PROMOTE_WHEN,
        ),
        Stage(
            fetch_bento,
            {"archive-uri": task_output("build", "archive_uri")},
            after=("build",),
            when=PROMOTE_WHEN,
        ),
        Stage(
            containerize,
            {"platforms": workflow_parameter("platforms")},
            after=("fetch-bento",),
            when=PROMOTE_WHEN,
            artifacts={
                BENTO_ARTIFACT: f"{{{{tasks.fetch-bento.outputs.artifacts.{BENTO_ARTIFACT}}}}}"
            },
        ),
    ]


def _deploy_stages(images: Images) -> list[Stage]:
    # LOOPLINE_PLATFORM (kubernetes in the cluster's loopline-config, local under `loopline run`)
    # picks the artifact: the image on a cluster, the bento archive on the local stand-in. The
    # deadline leaves room for the rollout deadline (deploy.rollout_timeout_s) and the smoke test.
    deploy = step_template(
        "deploy",
        flags=("model-version", "archive-uri", "image-ref", "pipeline-run"),
        profile=PodProfile("200m", "512Mi", "1", "1Gi", deadline_s=1200),
        retry_limit=2,
        image=images.pipeline,
        kubernetes_api=True,
    )
    return [
        Stage(
            deploy,
            {
                "model-version": task_output("register", "model_version"),
                "archive-uri": task_output("build", "archive_uri"),
                "image-ref": task_output("containerize", "image_ref"),
                "pipeline-run": "{{workflow.name}}",
            },
            after=("containerize",),
            when=PROMOTE_WHEN,
        )
    ]


def _promote_stages(images: Images) -> list[Stage]:
    # It carries the canary deploy left at the first traffic step to 100 %, or rolls it back
    # (exit 4: the run fails, stable serves as before).
    return [
        Stage(
            promote_template(images),
            {
                "model-version": task_output("register", "model_version"),
                "pipeline-run": "{{workflow.name}}",
            },
            after=("deploy",),
            when=PROMOTE_WHEN,
        )
    ]


def retrain_stages(images: Images | None = None) -> list[Stage]:
    """Return the retrain DAG's stages in order: train, evaluate, register, build, fetch-bento,
    containerize, deploy, promote. A new stage is appended here.

    Args:
        images: the images the steps run in; the defaults of :class:`Images` when ``None``.

    Returns:
        A new list on every call, so callers may extend it without touching shared state.
    """
    chosen = images or Images()
    return [
        *_model_stages(chosen),
        *_packaging_stages(chosen),
        *_deploy_stages(chosen),
        *_promote_stages(chosen),
    ]


def build_dag(stages: Sequence[Stage]) -> DAG:
    """Return the DAG template running ``stages``, each after the stages it names.

    Raises:
        ValueError: when two stages share a name or one depends on a stage not listed before it.
    """
    seen: set[str] = set()
    tasks: list[Task | DAGTask] = []
    for stage in stages:
        if stage.name in seen:
            raise ValueError(f"stage {stage.name!r} is listed twice")
        unknown = [name for name in stage.after if name not in seen]
        if unknown:
            raise ValueError(f"stage {stage.name!r} depends on {unknown}, not listed before it")
        seen.add(stage.name)
        arguments: list[Parameter | Artifact] = [
            Parameter(name=name, value=value) for name, value in stage.arguments.items()
        ]
        arguments += [
            Artifact(name=name, from_=source) for name, source in (stage.artifacts or {}).items()
        ]
        tasks.append(
            Task(
                name=stage.name,
                template=stage.template,
                arguments=arguments or None,
                depends=" && ".join(stage.after) or None,
                when=stage.when,
            )
        )
    return DAG(name=ENTRYPOINT, tasks=tasks)


def retrain_template(
    stages: Sequence[Stage] | None = None, images: Images | None = None
) -> WorkflowTemplate:
    """Return the ``retrain`` WorkflowTemplate.

    Args:
        stages: the DAG's stages; ``None`` means :func:`retrain_stages` with ``images``.
        images: the images of the default stages; ignored when ``stages`` is given.

    Returns:
        The template with its parameters, deadlines, pod GC, TTL, service account and the
        pod-level security context of every pod.

    Raises:
        ValueError: from :func:`build_dag` when the stages are mis-wired.
    """
    chosen = list(stages) if stages is not None else retrain_stages(images)
    return WorkflowTemplate(
        name=TEMPLATE_NAME,
        labels=dict(LABELS),
        annotations=setting_defaults({"data-uri": "data.uri"}),
        entrypoint=ENTRYPOINT,
        arguments=run_parameters(),
        templates=[build_dag(chosen), *(stage.template for stage in chosen)],
        service_account_name=SERVICE_ACCOUNT,
        security_context=pod_security_context(),
        active_deadline_seconds=WORKFLOW_DEADLINE_S,
        pod_gc=keep_failed_pods(),
        ttl_strategy=run_ttl(),
        workflow_metadata=WorkflowMetadata(
            labels=dict(LABELS),
            labels_from={REASON_LABEL: LabelValueFrom(expression="workflow.parameters.reason")},
        ),
    )


def retrain_schedule() -> CronWorkflow:
    """Return the ``retrain-schedule`` CronWorkflow: the template weekly, reason ``schedule``."""
    return CronWorkflow(
        name=SCHEDULE_NAME,
        labels=dict(LABELS),
        schedules=list(SCHEDULES),
        timezone=TIMEZONE,
        concurrency_policy="Forbid",
        starting_deadline_seconds=600,
        successful_jobs_history_limit=3,
        failed_jobs_history_limit=5,
        workflow_template_ref=WorkflowTemplateRef(name=TEMPLATE_NAME),
        arguments=[Parameter(name="reason", value="schedule")],
    )


def retrain_submit() -> Workflow:
    """Return the Workflow ``argo submit`` takes: the template, reason ``manual``, ``-p`` others."""
    return Workflow(
        generate_name=f"{TEMPLATE_NAME}-",
        labels=dict(LABELS),
        workflow_template_ref=WorkflowTemplateRef(name=TEMPLATE_NAME),
        arguments=[Parameter(name="reason", value="manual")],
    )

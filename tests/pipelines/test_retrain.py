"""Tests of pipelines/retrain.py and pipelines/templates.py, read from the rendered documents."""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from pipelines.retrain import (
    PROMOTE_WHEN,
    Stage,
    build_dag,
    retrain_stages,
    retrain_template,
)
from pipelines.templates import (
    BUILDER_IMAGE,
    OUT_DIR,
    PIPELINE_IMAGE,
    PIPELINE_VERSION,
    Images,
    PodProfile,
    step_template,
)
from steps.core.names import STEP_OUTPUTS
from steps.core.settings import CanarySettings, DeploySettings, ModelKind
from tests.pipelines.documents import (
    REPO,
    assert_bounded_non_root_step,
    critical_path_s,
    parse_args,
    restricted_problems,
)
from tests.pipelines.documents import document as _document
from tests.pipelines.documents import tasks as _tasks
from tests.pipelines.documents import templates as _templates

GATE = "{{tasks.evaluate.outputs.parameters.decision}} == promote"

# The step CLI contract: flags taking a value, value-less switches, output parameters.
STEP_CONTRACT: dict[str, tuple[list[str], list[str], set[str]]] = {
    "train": (
        [
            "--data-uri",
            "--target",
            "--model-kind",
            "--min-value",
            "--max-regression",
            "--seed",
            "--pipeline-run",
        ],
        [],
        {"run_id", "data_hash", "model_uri"},
    ),
    "evaluate": (["--run-id"], ["--no-fail-on-reject"], {"decision", "reasons", "report_uri"}),
    "register": (["--run-id", "--pipeline-run"], [], {"model_version"}),
    "build": (["--model-version", "--platforms"], [], {"bento_tag", "archive_uri", "model_tag"}),
    "fetch-bento": (["--archive-uri", "--fetch-to"], [], set()),
    "containerize": (["--archive", "--platforms"], [], {"image_ref", "image_built"}),
    "deploy": (
        ["--model-version", "--archive-uri", "--image-ref", "--pipeline-run"],
        [],
        {"track", "canary_weight", "endpoint"},
    ),
    "promote": (
        ["--model-version", "--pipeline-run"],
        [],
        {"outcome", "final_weight", "reasons", "report_uri"},
    ),
}


@pytest.fixture(scope="module")
def template_spec() -> dict[str, Any]:
    spec: dict[str, Any] = _document("retrain.yaml")["spec"]
    return spec


def test_dag_edges_are_the_pipeline_order(template_spec: dict[str, Any]) -> None:
    tasks = _tasks(template_spec)

    edges = {(task.get("depends"), name) for name, task in tasks.items()}

    assert edges == {
        (None, "train"),
        ("train", "evaluate"),
        ("evaluate", "register"),
        ("register", "build"),
        ("build", "fetch-bento"),
        ("fetch-bento", "containerize"),
        ("containerize", "deploy"),
        ("deploy", "promote"),
    }


def test_every_task_after_evaluate_is_gated_on_promote(template_spec: dict[str, Any]) -> None:
    tasks = _tasks(template_spec)

    gated = {name for name, task in tasks.items() if task.get("when") == GATE}

    assert gated == {"register", "build", "fetch-bento", "containerize", "deploy", "promote"}
    assert "when" not in tasks["train"] and "when" not in tasks["evaluate"]
    assert PROMOTE_WHEN == GATE


def test_every_step_runs_its_cli_with_the_contract_flags(template_spec: dict[str, Any]) -> None:
    templates = _templates(template_spec)
    containers = {name: t for name, t in templates.items() if "container" in t}

    assert set(containers) == set(STEP_CONTRACT)
    for name, template in containers.items():
        flags, switches, _ = STEP_CONTRACT[name]
        container = template["container"]
        values, found_switches = parse_args(container["args"])
        step = "containerize" if name == "fetch-bento" else name
        assert container["command"] == ["python", "-m", f"steps.{step}"], name
        assert set(values) == {*flags, "--out-dir"}, name
        assert values["--out-dir"] == OUT_DIR
        assert found_switches == switches, name


def test_step_flags_take_the_template_inputs(template_spec: dict[str, Any]) -> None:
    for name, template in _templates(template_spec).items():
        if "container" not in template:
            continue
        values, _ = parse_args(template["container"]["args"])
        inputs = {parameter["name"] for parameter in template["inputs"]["parameters"]}
        from_inputs = {
            flag[2:]: value for flag, value in values.items() if "inputs.parameters" in value
        }
        assert set(from_inputs) == inputs, name
        for flag, value in from_inputs.items():
            assert value == f"{{{{inputs.parameters.{flag}}}}}", name


def test_outputs_are_read_from_files_in_the_out_dir(template_spec: dict[str, Any]) -> None:
    for name, template in _templates(template_spec).items():
        if "container" not in template:
            continue
        outputs = template.get("outputs", {})
        declared = {p["name"]: p["valueFrom"]["path"] for p in outputs.get("parameters", [])}
        assert set(declared) == STEP_CONTRACT[name][2], name
        for parameter, path in declared.items():
            assert path == f"{OUT_DIR}/{parameter}"
        for artifact in outputs.get("artifacts", []):
            assert artifact["path"].startswith((OUT_DIR, "/tmp/bento"))
            assert set(artifact["s3"]) == {"key"}, "key-only: the repository decides the rest"
            assert "{{workflow.name}}" in artifact["s3"]["key"]


def test_evaluation_report_and_bento_are_key_only_artifacts(template_spec: dict[str, Any]) -> None:
    templates = _templates(template_spec)

    artifacts = {
        name: [a["name"] for a in t.get("outputs", {}).get("artifacts", [])]
        for name, t in templates.items()
        if "container" in t
    }

    assert artifacts["evaluate"] == ["evaluation"]
    assert artifacts["build"] == ["bento"]
    assert artifacts["fetch-bento"] == ["bento-archive"]
    assert artifacts["train"] == artifacts["register"] == artifacts["containerize"] == []
    assert artifacts["deploy"] == artifacts["promote"] == []


def test_the_build_pod_takes_the_bento_as_an_artifact_and_no_store_credentials(
    template_spec: dict[str, Any],
) -> None:
    templates, tasks = _templates(template_spec), _tasks(template_spec)

    containerize = templates["containerize"]
    values, _ = parse_args(containerize["container"]["args"])

    assert containerize["inputs"]["artifacts"] == [{"name": "bento-archive", "path": "/tmp/bento"}]
    assert values["--archive"] == "/tmp/bento" and "--archive-uri" not in values
    assert tasks["containerize"]["arguments"]["artifacts"] == [
        {"name": "bento-archive", "from": "{{tasks.fetch-bento.outputs.artifacts.bento-archive}}"}
    ]
    assert templates["fetch-bento"]["outputs"]["artifacts"][0]["path"] == "/tmp/bento"
    fetch_values, _ = parse_args(templates["fetch-bento"]["container"]["args"])
    assert fetch_values["--fetch-to"] == "/tmp/bento"
    secrets = {
        source["secretRef"]["name"]
        for source in containerize["container"]["envFrom"]
        if "secretRef" in source
    }
    assert secrets == {"loopline-registry"}
    assert containerize["automountServiceAccountToken"] is False


def test_tasks_pass_outputs_of_the_tasks_they_depend_on(template_spec: dict[str, Any]) -> None:
    tasks = _tasks(template_spec)

    def argument(task: str, name: str) -> str:
        values: dict[str, str] = {
            p["name"]: p["value"] for p in tasks[task]["arguments"]["parameters"]
        }
        return values[name]

    assert argument("evaluate", "run-id") == "{{tasks.train.outputs.parameters.run_id}}"
    assert argument("register", "run-id") == "{{tasks.train.outputs.parameters.run_id}}"
    assert argument("register", "pipeline-run") == "{{workflow.name}}"
    assert argument("build", "model-version") == (
        "{{tasks.register.outputs.parameters.model_version}}"
    )
    assert argument("fetch-bento", "archive-uri") == (
        "{{tasks.build.outputs.parameters.archive_uri}}"
    )
    assert argument("containerize", "platforms") == "{{workflow.parameters.platforms}}"
    assert argument("deploy", "model-version") == (
        "{{tasks.register.outputs.parameters.model_version}}"
    )
    assert argument("deploy", "archive-uri") == "{{tasks.build.outputs.parameters.archive_uri}}"
    assert argument("deploy", "image-ref") == (
        "{{tasks.containerize.outputs.parameters.image_ref}}"
    )
    assert argument("deploy", "pipeline-run") == "{{workflow.name}}"
    assert argument("promote", "model-version") == (
        "{{tasks.register.outputs.parameters.model_version}}"
    )
    assert argument("promote", "pipeline-run") == "{{workflow.name}}"


def test_workflow_parameters_have_defaults_for_what_a_run_varies(
    template_spec: dict[str, Any],
) -> None:
    parameters = {p["name"]: p for p in template_spec["arguments"]["parameters"]}

    assert set(parameters) == {
        "data-uri",
        "target",
        "model-kind",
        "seed",
        "min-value",
        "max-regression",
        "platforms",
        "reason",
        "drift-report-uri",
    }
    assert parameters["reason"]["value"] == "manual"
    assert parameters["reason"]["enum"] == ["manual", "schedule", "drift"]
    assert parameters["drift-report-uri"]["value"] == ""
    assert parameters["model-kind"]["enum"] == ["", *get_args(ModelKind)]  # "": the champion's
    assert parameters["platforms"]["value"] == "linux/arm64"
    assert all(isinstance(p["value"], str) for p in parameters.values())


def test_image_tag_follows_the_project_version() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]

    assert project["version"] == PIPELINE_VERSION


def test_the_default_images_are_named_after_their_dockerfile_targets() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    targets = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, re.MULTILINE))

    names = {image.rsplit("/", 1)[-1] for image in (PIPELINE_IMAGE, BUILDER_IMAGE)}

    assert names == {f"pipeline:{PIPELINE_VERSION}", f"pipeline-image-builder:{PIPELINE_VERSION}"}
    assert {name.split(":")[0] for name in names} <= targets


def test_only_the_image_build_is_pinned_to_arm64_and_runs_the_builder_image(
    template_spec: dict[str, Any],
) -> None:
    templates = _templates(template_spec)

    pinned = {n for n, t in templates.items() if t.get("nodeSelector")}

    assert pinned == {"containerize"}
    assert templates["containerize"]["nodeSelector"] == {"kubernetes.io/arch": "arm64"}
    assert templates["containerize"]["container"]["image"] == BUILDER_IMAGE


def test_images_are_fixed_at_render_time_never_a_run_parameter(
    template_spec: dict[str, Any],
) -> None:
    templates = _templates(template_spec)

    images = {name: t["container"]["image"] for name, t in templates.items() if "container" in t}

    assert images == {name: PIPELINE_IMAGE for name in images} | {"containerize": BUILDER_IMAGE}
    assert not any("image" in p["name"] for p in template_spec["arguments"]["parameters"])
    other = Images("r.example/p:1", "r.example/b:1")
    spec = retrain_template(images=other).to_dict()["spec"]
    rendered = {t["name"]: t for t in spec["templates"]}
    assert rendered["train"]["container"]["image"] == "r.example/p:1"
    assert rendered["containerize"]["container"]["image"] == "r.example/b:1"


def test_the_model_registry_is_configuration_not_a_flag_or_a_parameter(
    template_spec: dict[str, Any],
) -> None:
    containerize = _templates(template_spec)["containerize"]["container"]
    values, _ = parse_args(containerize["args"])
    config = REPO / "k8s" / "pipeline" / "loopline-config.yaml"

    assert "--registry" not in values
    assert {"configMapRef": {"name": "loopline-config"}} in containerize["envFrom"]
    assert yaml.safe_load(config.read_text())["data"]["LOOPLINE_IMAGE__REGISTRY"] == (
        "ghcr.io/loopline"
    )
    assert not any("registry" in p["name"] for p in template_spec["arguments"]["parameters"])


@pytest.mark.parametrize(
    ("pipeline", "builder"),
    [("ghcr.io/loopline/pipeline", "r.example/b:1"), ("x:1", "r.example/b:1"),
     ("https://r/p:1", "r.example/b:1"), ("r.example/p:1", "r.example/b")],
)  # fmt: skip
def test_an_image_without_registry_or_tag_is_refused(pipeline: str, builder: str) -> None:
    with pytest.raises(ValueError, match="expected"):
        Images(pipeline=pipeline, builder=builder)


def test_every_step_has_limits_deadline_retries_and_runs_as_non_root(
    template_spec: dict[str, Any],
) -> None:
    steps = {n: t for n, t in _templates(template_spec).items() if "container" in t}

    for name, template in steps.items():
        assert_bounded_non_root_step(name, template)
    assert template_spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # Pod Security "restricted", the image build included (tests/pipelines/test_pod_security.py).
    assert {
        name: restricted_problems(t) for name, t in steps.items() if restricted_problems(t)
    } == {}


def test_only_deploy_and_promote_get_a_service_account_token(
    template_spec: dict[str, Any],
) -> None:
    steps = {n: t for n, t in _templates(template_spec).items() if "container" in t}

    with_token = {n for n, t in steps.items() if t.get("automountServiceAccountToken") is not False}

    assert with_token == {"deploy", "promote"}
    for name in set(steps) - with_token:
        assert steps[name]["executor"] == {"serviceAccountName": "loopline-pipeline"}, name


def test_the_workflow_deadline_covers_one_attempt_of_every_step_in_a_row(
    template_spec: dict[str, Any],
) -> None:
    deadlines = {
        name: int(t["activeDeadlineSeconds"])
        for name, t in _templates(template_spec).items()
        if "container" in t
    }

    # The DAG is a chain: its critical path is every step, the promotion included.
    assert critical_path_s(template_spec) == sum(deadlines.values())
    assert deadlines["promote"] > max(d for n, d in deadlines.items() if n != "promote")
    assert template_spec["activeDeadlineSeconds"] >= critical_path_s(template_spec)


def test_the_promote_deadline_covers_the_whole_canary_schedule(
    template_spec: dict[str, Any],
) -> None:
    deploy, canary = DeploySettings(), CanarySettings()
    # Every traffic step judged once, then held for each inconclusive verdict allowed, one
    # cluster interval each; then the rollouts (the canary's and stable's).
    intervals = len(deploy.traffic_steps) * (1 + canary.max_inconclusive)
    schedule_s = intervals * canary.interval_for("kubernetes") + 2 * deploy.rollout_timeout_s

    promote = _templates(template_spec)["promote"]

    assert int(promote["activeDeadlineSeconds"]) >= schedule_s
    assert int(promote["activeDeadlineSeconds"]) <= schedule_s * 1.5  # not a blanket "forever"


def test_promote_is_retried_twice_but_never_after_a_rollback(
    template_spec: dict[str, Any],
) -> None:
    from steps.localrun.retry_expression import LastRetry, parse_retry_expression

    retry = _templates(template_spec)["promote"]["retryStrategy"]
    expression = parse_retry_expression(retry["expression"])

    assert retry["limit"] == "2"
    retried = {
        code: expression.allows_retry(LastRetry(code, "Failed", 60.0, "", 0))
        for code in (1, 2, 3, 4)
    }
    assert retried == {1: True, 2: False, 3: False, 4: False}


def test_the_template_sets_deadline_gc_ttl_and_service_account(
    template_spec: dict[str, Any],
) -> None:
    assert template_spec["podGC"] == {"strategy": "OnWorkflowSuccess"}
    assert set(template_spec["ttlStrategy"]) == {"secondsAfterSuccess", "secondsAfterFailure"}
    assert template_spec["serviceAccountName"] == "loopline-pipeline"
    assert template_spec["workflowMetadata"]["labelsFrom"] == {
        "loopline.dev/reason": {"expression": "workflow.parameters.reason"}
    }


def test_no_step_passes_a_secret_as_plain_env(
    template_spec: dict[str, Any],
) -> None:
    for template in _templates(template_spec).values():
        if "container" not in template:
            continue
        for variable in template["container"].get("env", []):
            assert "SECRET" not in variable["name"] and "PASSWORD" not in variable["name"]


def test_cron_workflow_runs_the_template_weekly_with_reason_schedule() -> None:
    cron = _document("retrain-schedule.yaml")

    spec = cron["spec"]
    assert cron["kind"] == "CronWorkflow" and cron["metadata"]["name"] == "retrain-schedule"
    assert spec["schedules"] == ["0 3 * * 1"] and "schedule" not in spec
    assert spec["timezone"] == "UTC"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert spec["startingDeadlineSeconds"] == 600
    assert (spec["successfulJobsHistoryLimit"], spec["failedJobsHistoryLimit"]) == (3, 5)
    assert spec["workflowSpec"] == {
        "arguments": {"parameters": [{"name": "reason", "value": "schedule"}]},
        "workflowTemplateRef": {"name": "retrain"},
    }


def test_submit_file_is_a_workflow_referencing_the_template() -> None:
    submit = _document("retrain-submit.yaml")

    assert submit["kind"] == "Workflow"
    assert submit["metadata"]["generateName"] == "retrain-"
    assert "name" not in submit["metadata"]
    assert submit["spec"]["workflowTemplateRef"] == {"name": "retrain"}
    assert submit["spec"]["arguments"]["parameters"] == [{"name": "reason", "value": "manual"}]


def test_a_stage_appended_later_extends_the_dag_without_rewiring(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(STEP_OUTPUTS, "notify", ("sent",))
    notify = step_template(
        "notify",
        flags=("model-version",),
        profile=PodProfile("100m", "128Mi", "200m", "256Mi", deadline_s=600),
    )
    stages = [
        *retrain_stages(),
        Stage(
            notify,
            {"model-version": "{{tasks.register.outputs.parameters.model_version}}"},
            after=("promote",),
            when=PROMOTE_WHEN,
        ),
    ]

    spec = retrain_template(stages).to_dict()["spec"]

    tasks = _tasks(spec)
    assert list(tasks) == [
        "train", "evaluate", "register", "build", "fetch-bento", "containerize", "deploy",
        "promote", "notify",
    ]  # fmt: skip
    assert tasks["notify"]["depends"] == "promote"
    assert tasks["notify"]["when"] == GATE
    assert _tasks(_document("retrain.yaml")["spec"]) == {
        name: task for name, task in tasks.items() if name != "notify"
    }
    assert shlex.join(_templates(spec)["notify"]["container"]["command"]) == (
        "python -m steps.notify"
    )


def test_build_dag_rejects_a_dependency_not_listed_before() -> None:
    train, evaluate, *_ = retrain_stages()

    with pytest.raises(ValueError, match=r"stage 'evaluate' depends on \['train'\]"):
        build_dag([evaluate, train])


def test_build_dag_rejects_a_stage_listed_twice() -> None:
    train, *_ = retrain_stages()

    with pytest.raises(ValueError, match="stage 'train' is listed twice"):
        build_dag([train, train])


def test_the_local_runner_does_not_retry_the_rendered_train_step_on_bad_input(
    loopline_env: Path, tmp_path: Path
) -> None:
    from steps.core.settings import Settings
    from steps.localrun.executor import RunOptions, run_workflow
    from steps.localrun.pods import NOT_RETRIED

    missing = tmp_path / "missing.parquet"
    record = run_workflow(
        REPO / "argo" / "retrain.yaml",
        {"data-uri": str(missing)},
        settings=Settings(),
        options=RunOptions(backoff_scale=0.0),
    )

    train = record.node("train")
    retry = _templates(_document("retrain.yaml")["spec"])["train"]["retryStrategy"]
    assert int(retry["limit"]) >= 1  # retries are allowed: the expression refused them
    assert (train.phase, train.exit_code, train.attempts) == ("Failed", 2, 1)
    assert train.message == f"exit code 2; {NOT_RETRIED}"
    assert "--- retry" not in Path(train.log or "").read_text()
    assert f"data file {missing} does not exist" in Path(train.log or "").read_text()
    assert record.node("evaluate").phase == "Omitted"

"""Reading rendered workflow documents in tests: templates, DAG tasks, container args, deadlines,
and the checks every step template must pass."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipelines.render import render_all
from scripts.pod_security import restricted_violations

REPO = Path(__file__).resolve().parents[2]


def document(name: str) -> dict[str, Any]:
    """The freshly rendered resource of ``argo/<name>``."""
    loaded: dict[str, Any] = yaml.safe_load(render_all()[name])
    return loaded


def templates(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The templates of a workflow spec, by name."""
    return {template["name"]: template for template in spec["templates"]}


def tasks(spec: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The tasks of the entrypoint DAG, by name, in order."""
    dag = templates(spec)[spec["entrypoint"]]["dag"]
    return {task["name"]: task for task in dag["tasks"]}


def task_arguments(task: dict[str, Any]) -> dict[str, str]:
    """The parameters a DAG task passes, by name."""
    return {p["name"]: p["value"] for p in task.get("arguments", {}).get("parameters", [])}


def parse_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """Split container args into ``--flag value`` pairs and value-less switches."""
    values: dict[str, str] = {}
    switches: list[str] = []
    index = 0
    while index < len(args):
        flag = args[index]
        assert flag.startswith("--"), f"expected a flag, got {flag!r} in {args}"
        following = args[index + 1] if index + 1 < len(args) else None
        if following is None or following.startswith("--"):
            switches.append(flag)
            index += 1
        else:
            values[flag] = following
            index += 2
    return values, switches


def critical_path_s(spec: dict[str, Any]) -> int:
    """The longest chain of the entrypoint DAG, summing each task's template deadline (one
    attempt each); ``depends`` is read as ``a && b``, the only form the pipelines render."""
    dag_tasks, by_name = tasks(spec), templates(spec)
    finish_s: dict[str, int] = {}
    for name, task in dag_tasks.items():  # rendered in dependency order
        after = [part.strip() for part in task.get("depends", "").split("&&") if part.strip()]
        deadline_s = int(by_name[task["template"]]["activeDeadlineSeconds"])
        finish_s[name] = max((finish_s[a] for a in after), default=0) + deadline_s
    return max(finish_s.values())


CONFIG = {"configMapRef": {"name": "loopline-config"}}
S3 = {"secretRef": {"name": "loopline-s3"}}
MLFLOW = {"secretRef": {"name": "loopline-mlflow", "optional": True}}
REGISTRY = {"secretRef": {"name": "loopline-registry", "optional": True}}
ENV_FROM: dict[str, list[dict[str, Any]]] = {
    "fetch-bento": [CONFIG, S3],  # the archive from S3, nothing from MLflow
    "containerize": [CONFIG, REGISTRY],  # the image build: the registry Secret, no store's
}
"""The env sources of the templates that do not read every one (the default)."""


def assert_bounded_non_root_step(name: str, template: dict[str, Any]) -> None:
    """A step template has requests and limits, a deadline, retries with backoff, runs as the
    image's non-root user, and reads its settings from the ConfigMap and Secrets it needs."""
    container = template["container"]
    assert set(container["resources"]) == {"requests", "limits"}, name
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}, name
    assert int(template["activeDeadlineSeconds"]) > 0, name
    retry = template["retryStrategy"]
    assert isinstance(retry["limit"], str) and int(retry["limit"]) >= 1, name
    assert set(retry["backoff"]) == {"duration", "factor", "maxDuration"}, name
    assert container["securityContext"]["runAsNonRoot"] is True, name
    assert container["securityContext"]["runAsUser"] == 10001, name
    assert container["envFrom"] == ENV_FROM.get(name, [CONFIG, S3, MLFLOW]), name


def restricted_problems(template: dict[str, Any]) -> list[str]:
    """How a step's container breaks Pod Security "restricted" (no pod-level context is set)."""
    return restricted_violations({"containers": [template["container"]]}, loopline_hardening=False)

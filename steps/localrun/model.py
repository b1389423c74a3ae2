"""The typed representation of a workflow the local runner can execute.

Built by :mod:`steps.localrun.loader` from a Workflow, WorkflowTemplate or CronWorkflow file after
every field has been checked; everything here is immutable and already validated, except values
that contain ``{{...}}`` references, which are resolved when the node runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from steps.core.errors import WorkflowError
from steps.localrun.expressions import DependsExpr

TemplateKind = Literal["container", "script", "dag", "resource"]
RetryPolicy = Literal["Always", "OnFailure", "OnError"]


@dataclass(frozen=True)
class Parameter:
    """A workflow argument, a template input or a task argument."""

    name: str
    value: str | None = None
    default: str | None = None
    enum: tuple[str, ...] = ()
    where: str = ""  # file:line, for messages

    @property
    def given(self) -> str | None:
        """The value, else the default, else None (Argo's precedence)."""
        return self.value if self.value is not None else self.default


@dataclass(frozen=True)
class OutputParameter:
    """An output parameter: read from a file (``valueFrom.path``) or the child (``jsonPath``)."""

    name: str
    path: str | None = None
    default: str | None = None
    json_path: str | None = None


@dataclass(frozen=True)
class Artifact:
    """An input, output or argument artifact (paths and keys may hold ``{{...}}``)."""

    name: str
    path: str | None = None
    key: str | None = None
    source: str | None = None  # ``from``
    optional: bool = False


@dataclass(frozen=True)
class Process:
    """What a container or script template runs."""

    command: tuple[str, ...]
    args: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    source: str | None = None  # script templates


@dataclass(frozen=True)
class Backoff:
    """Retry backoff; each value is a literal or a ``{{...}}`` string."""

    duration: str | None = None
    factor: str | None = None
    max_duration: str | None = None
    cap: str | None = None  # deprecated in Argo, still applied: no single wait is longer


@dataclass(frozen=True)
class RetryStrategy:
    """How often and when to retry a failed node.

    ``policy`` defaults to OnFailure, or to Always when an ``expression`` is given (Argo >= 3.5);
    a retry happens only when both the policy and the expression allow it.
    """

    limit: str
    policy: RetryPolicy = "OnFailure"
    backoff: Backoff | None = None
    expression: str | None = None  # expr-lang, possibly templated; syntax checked at load


@dataclass(frozen=True)
class PhaseCondition:
    """A resource ``successCondition``/``failureCondition`` on the child's ``status.phase``."""

    text: str
    phases: frozenset[str]
    negated: bool = False

    def matches(self, phase: str) -> bool:
        """Return whether the child's final phase satisfies the condition."""
        return (phase in self.phases) != self.negated


@dataclass(frozen=True)
class ChildWorkflow:
    """A resource template that creates a Workflow from a WorkflowTemplate: a child run."""

    manifest: str
    manifest_line: int
    directory: Path
    success: PhaseCondition | None = None
    failure: PhaseCondition | None = None


@dataclass(frozen=True)
class DagTask:
    """One task of a DAG template."""

    name: str
    template: str
    parameters: tuple[Parameter, ...] = ()
    artifacts: tuple[Artifact, ...] = ()
    depends: DependsExpr | None = None
    when: str | None = None
    continue_on_failed: bool = False
    continue_on_error: bool = False
    line: int = 0


@dataclass(frozen=True)
class Template:
    """A template of the workflow, of one of the kinds the runner executes."""

    name: str
    kind: TemplateKind
    inputs: tuple[Parameter, ...] = ()
    input_artifacts: tuple[Artifact, ...] = ()
    outputs: tuple[OutputParameter, ...] = ()
    output_artifacts: tuple[Artifact, ...] = ()
    process: Process | None = None
    tasks: tuple[DagTask, ...] = ()
    child: ChildWorkflow | None = None
    retry: RetryStrategy | None = None
    active_deadline: str | None = None  # seconds, possibly templated
    timeout: str | None = None  # a duration, possibly templated
    parallelism: int | None = None
    fail_fast: bool = True  # a DAG's failFast: Argo's default is true
    line: int = 0


@dataclass(frozen=True)
class Workflow:
    """A runnable workflow: the rendered YAML of one file, checked and typed."""

    file: Path
    kind: str
    name: str | None
    generate_name: str
    namespace: str
    entrypoint: str
    arguments: tuple[Parameter, ...]
    templates: Mapping[str, Template] = field(default_factory=dict)
    parallelism: int | None = None
    active_deadline_s: float | None = None
    setting_defaults: Mapping[str, str] = field(default_factory=dict)
    """Parameter -> dotted setting (``data.uri``) giving its local default (the annotation
    :data:`steps.core.names.SETTING_DEFAULTS_ANNOTATION`)."""

    @property
    def directory(self) -> Path:
        """The directory of the file: where referenced WorkflowTemplates are looked up."""
        return self.file.parent


def resolve_parameters(workflow: Workflow, overrides: Mapping[str, str]) -> dict[str, str]:
    """Return the value of every workflow parameter, ``overrides`` (``-p``) winning.

    Raises:
        WorkflowError: for an override the workflow does not declare (listing the declared
            ones), a parameter with neither value nor default that is not given, or a value
            outside a parameter's ``enum``.
    """
    declared = {parameter.name: parameter for parameter in workflow.arguments}
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        listing = ", ".join(declared) or "none"
        raise WorkflowError(
            f"{workflow.file}: unknown parameter {', '.join(unknown)}: "
            f"-p only sets parameters the workflow declares ({listing})"
        )
    values: dict[str, str] = {}
    for name, parameter in declared.items():
        value = overrides.get(name, parameter.given)
        if value is None:
            raise WorkflowError(
                f"{parameter.where}: parameter {name!r} has no value or default: "
                f"pass -p {name}=VALUE"
            )
        if parameter.enum and value not in parameter.enum:
            raise WorkflowError(
                f"{parameter.where}: parameter {name}={value!r} is not one of "
                f"its enum values ({', '.join(parameter.enum)})"
            )
        values[name] = value
    return values


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_S = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration_s(text: str) -> float:
    """Parse an Argo duration: seconds (``"30"``) or a Go duration (``"10s"``, ``"1m30s"``).

    Returns:
        The duration in seconds.

    Raises:
        ValueError: when the text is neither form.
    """
    stripped = text.strip()
    try:
        return float(stripped)
    except ValueError:
        pass
    parts = _DURATION_PART.findall(stripped)
    if not parts or "".join(number + unit for number, unit in parts) != stripped:
        raise ValueError(f"expected seconds or a duration like 10s, 1m30s, 2h; got {text!r}")
    return sum(float(number) * _UNIT_S[unit] for number, unit in parts)

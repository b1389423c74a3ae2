"""Load-time checks of what templates and tasks refer to.

Every ``{{...}}`` must name something that will exist when the node runs (a declared workflow
parameter, an input of the template, an output of an ancestor task); every task must call a
template of the file with the inputs it declares; templates must not call themselves.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from steps.localrun.expressions import references
from steps.localrun.model import DagTask, Parameter, Template
from steps.localrun.source import Document, FieldPath

_SUPPORTED_REFERENCES = (
    "the runner resolves workflow.parameters.X, "
    "workflow.name/uid/namespace/creationTimestamp/scheduledTime, inputs.parameters.X, retries, "
    "and in dag tasks tasks.T.outputs.parameters.X, tasks.T.outputs.result, "
    "tasks.T.outputs.artifacts.X, tasks.T.status, tasks.T.exitCode"
)
WORKFLOW_VARIABLES = frozenset(
    {
        "workflow.name",
        "workflow.uid",
        "workflow.namespace",
        "workflow.creationTimestamp",
        "workflow.scheduledTime",
    }
)


@dataclass(frozen=True)
class _Field:
    path: FieldPath
    text: str
    template: str
    task: str | None = None  # set for the fields of a dag task
    artifact_from: bool = False


class ReferenceChecker:
    """Collects the string fields of a document's templates, then checks them all at once."""

    def __init__(self, document: Document) -> None:
        self.doc = document
        self.fields: list[_Field] = []
        self.paths: dict[str, FieldPath] = {}

    def add_template(self, template: Template, path: FieldPath, data: Mapping[str, Any]) -> None:
        """Record the fields of one template (``data`` is its raw mapping) for :meth:`check_all`."""
        self.paths[template.name] = path
        name = template.name

        def add(field_path: FieldPath, text: str | None) -> None:
            if text:
                self.fields.append(_Field(field_path, text, name))

        if template.process:
            body = (*path, template.kind)
            for key in ("command", "args"):
                for index, text in enumerate(getattr(template.process, key)):
                    add((*body, key, index), text)
            for index, (_, value) in enumerate(template.process.env):
                add((*body, "env", index, "value"), value)
            add((*body, "source"), template.process.source)
        for index, output in enumerate(template.outputs):
            add((*path, "outputs", "parameters", index, "valueFrom", "path"), output.path)
            add((*path, "outputs", "parameters", index, "valueFrom", "default"), output.default)
        for group, artifacts in (
            ("inputs", template.input_artifacts),
            ("outputs", template.output_artifacts),
        ):
            for index, artifact in enumerate(artifacts):
                add((*path, group, "artifacts", index, "path"), artifact.path)
                add((*path, group, "artifacts", index, "s3", "key"), artifact.key)
        if template.child:
            add((*path, "resource", "manifest"), template.child.manifest)
        if template.retry:
            add((*path, "retryStrategy", "limit"), template.retry.limit)
            add((*path, "retryStrategy", "expression"), template.retry.expression)
            backoff = template.retry.backoff
            if backoff:
                for backoff_key, backoff_value in (
                    ("duration", backoff.duration),
                    ("factor", backoff.factor),
                    ("maxDuration", backoff.max_duration),
                ):
                    add((*path, "retryStrategy", "backoff", backoff_key), backoff_value)
        add((*path, "activeDeadlineSeconds"), template.active_deadline)
        add((*path, "timeout"), template.timeout)
        for index, task in enumerate(template.tasks):
            self.add_task(task, (*path, "dag", "tasks", index), name)

    def add_task(self, task: DagTask, path: FieldPath, dag: str) -> None:
        """Record the fields of one dag task."""
        for index, parameter in enumerate(task.parameters):
            for key in ("value", "default"):
                text = getattr(parameter, key)
                if text:
                    self.fields.append(
                        _Field((*path, "arguments", "parameters", index, key), text, dag, task.name)
                    )
        for index, artifact in enumerate(task.artifacts):
            item = (*path, "arguments", "artifacts", index)
            if artifact.source:
                self.fields.append(
                    _Field((*item, "from"), artifact.source, dag, task.name, artifact_from=True)
                )
            if artifact.key:
                self.fields.append(_Field((*item, "s3", "key"), artifact.key, dag, task.name))
        if task.when:
            self.fields.append(_Field((*path, "when"), task.when, dag, task.name))

    def check_all(
        self, templates: Mapping[str, Template], arguments: tuple[Parameter, ...]
    ) -> None:
        """Check calls between templates and every recorded reference.

        Raises:
            WorkflowError: naming the field and line of the first problem.
        """
        for template in templates.values():
            for index, task in enumerate(template.tasks):
                self.check_call(
                    task, (*self.paths[template.name], "dag", "tasks", index), templates
                )
        self.check_recursion(templates)
        parameters = {parameter.name for parameter in arguments}
        for field in self.fields:
            for name in references(field.text):
                problem = self.problem(name, field, templates, parameters)
                if problem:
                    raise self.doc.error(field.path, problem)

    def check_call(self, task: DagTask, path: FieldPath, templates: Mapping[str, Template]) -> None:
        called = templates.get(task.template)
        if called is None:
            raise self.doc.error(
                (*path, "template"),
                f"task {task.name!r} calls unknown template {task.template!r} "
                f"(templates: {', '.join(templates)})",
            )
        inputs = {parameter.name: parameter for parameter in called.inputs}
        given = {parameter.name for parameter in task.parameters}
        for index, parameter in enumerate(task.parameters):
            if parameter.name not in inputs:
                raise self.doc.error(
                    (*path, "arguments", "parameters", index),
                    f"template {called.name!r} has no input parameter {parameter.name!r} "
                    f"(inputs: {', '.join(inputs) or 'none'})",
                )
        missing = [
            name
            for name, parameter in inputs.items()
            if parameter.given is None and name not in given
        ]
        if missing:
            raise self.doc.error(
                path,
                f"task {task.name!r} does not supply input(s) {', '.join(missing)} "
                f"of template {called.name!r}",
            )
        artifact_inputs = {artifact.name: artifact for artifact in called.input_artifacts}
        for index, artifact in enumerate(task.artifacts):
            if artifact.name not in artifact_inputs:
                raise self.doc.error(
                    (*path, "arguments", "artifacts", index),
                    f"template {called.name!r} has no input artifact {artifact.name!r}",
                )
        supplied = {artifact.name for artifact in task.artifacts}
        for artifact in called.input_artifacts:
            if artifact.name not in supplied and artifact.key is None and not artifact.optional:
                raise self.doc.error(
                    path,
                    f"task {task.name!r} does not supply input artifact {artifact.name!r} "
                    f"of template {called.name!r}",
                )

    def check_recursion(self, templates: Mapping[str, Template]) -> None:
        def visit(name: str, trail: tuple[str, ...]) -> None:
            for task in templates[name].tasks:
                if task.template in trail:
                    raise self.doc.error(
                        self.paths[name],
                        f"template {name!r} calls itself through "
                        f"{' -> '.join((*trail, task.template))}",
                    )
                visit(task.template, (*trail, task.template))

        for name in templates:
            visit(name, (name,))

    def problem(
        self, name: str, field: _Field, templates: Mapping[str, Template], parameters: set[str]
    ) -> str | None:
        if name.startswith("="):
            return f"expression templates {{{{{name}}}}} are not supported; use plain references"
        if name in WORKFLOW_VARIABLES:
            return None
        head, _, rest = name.partition(".")
        template = templates[field.template]
        if name.startswith("workflow.parameters."):
            known = name.removeprefix("workflow.parameters.")
            return (
                None
                if known in parameters
                else f"{{{{{name}}}}}: the workflow declares no parameter {known!r} "
                f"(declared: {', '.join(sorted(parameters)) or 'none'})"
            )
        if name.startswith("inputs.parameters."):
            known = name.removeprefix("inputs.parameters.")
            inputs = [parameter.name for parameter in template.inputs]
            return (
                None
                if known in inputs
                else f"{{{{{name}}}}}: template {template.name!r} has no input parameter {known!r}"
            )
        if name == "retries" and field.task is None:
            return None
        if head == "tasks" and field.task is not None:
            return self.task_problem(name, rest, field, template, templates)
        return f"unsupported reference {{{{{name}}}}} ({_SUPPORTED_REFERENCES})"

    def task_problem(
        self, name: str, rest: str, field: _Field, dag: Template, templates: Mapping[str, Template]
    ) -> str | None:
        tasks = {task.name: task for task in dag.tasks}
        target, _, what = rest.partition(".")
        if target not in tasks:
            return f"{{{{{name}}}}}: no task {target!r} in this dag"
        if target not in _ancestors(field.task or "", tasks):
            return (
                f"{{{{{name}}}}}: task {field.task!r} must depend on {target!r} to use its outputs"
            )
        called = templates[tasks[target].template]
        if what == "status":
            return None
        if what == "exitCode":
            return (
                None
                if called.kind in ("container", "script")
                else f"{{{{{name}}}}}: a {called.kind} template has no exit code"
            )
        if what == "outputs.result":
            return (
                None
                if called.kind in ("container", "script")
                else f"{{{{{name}}}}}: a {called.kind} template has no result"
            )
        if what.startswith("outputs.parameters."):
            output = what.removeprefix("outputs.parameters.")
            return (
                None
                if output in {o.name for o in called.outputs}
                else f"{{{{{name}}}}}: template {called.name!r} has no output parameter {output!r}"
            )
        if what.startswith("outputs.artifacts.") and field.artifact_from:
            output = what.removeprefix("outputs.artifacts.")
            return (
                None
                if output in {a.name for a in called.output_artifacts}
                else f"{{{{{name}}}}}: template {called.name!r} has no output artifact {output!r}"
            )
        return f"unsupported reference {{{{{name}}}}}"


def _ancestors(task: str, tasks: Mapping[str, DagTask]) -> set[str]:
    seen: set[str] = set()
    pending = [task]
    while pending:
        current = tasks.get(pending.pop())
        if current is None or current.depends is None:
            continue
        for dependency in current.depends.tasks - seen:
            seen.add(dependency)
            pending.append(dependency)
    return seen

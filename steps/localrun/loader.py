"""Load a workflow file into :mod:`steps.localrun.model`, or say which field at which line is wrong.

Every key is classified by :data:`steps.localrun.features.FEATURES`: supported keys are read,
ignored keys are skipped, rejected and unknown keys fail the load. Template references
(``{{...}}``), ``depends``, ``when`` syntax, task arguments and template names are checked here
too, so a run never starts on a file that cannot finish.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

from steps.core.errors import WorkflowError
from steps.core.names import SETTING_DEFAULTS_ANNOTATION
from steps.localrun.expressions import (
    DependsExpr,
    ExpressionError,
    check_when,
    dependencies_expr,
    parse_depends,
    with_placeholders,
)
from steps.localrun.features import Support, scope_table
from steps.localrun.model import (
    Artifact,
    Backoff,
    ChildWorkflow,
    DagTask,
    OutputParameter,
    Parameter,
    PhaseCondition,
    Process,
    RetryStrategy,
    Template,
    Workflow,
    parse_duration_s,
)
from steps.localrun.references import ReferenceChecker
from steps.localrun.retry_expression import parse_retry_expression
from steps.localrun.source import Document, FieldPath, iter_yaml_files, load_documents
from steps.localrun.source import parse_documents as parse_yaml

API_VERSION = "argoproj.io/v1alpha1"
WORKFLOW_KINDS = ("Workflow", "WorkflowTemplate", "CronWorkflow")
JSON_PATHS = {"{.metadata.name}": "name", "{.metadata.namespace}": "namespace"}
JSON_PATHS["{.metadata.uid}"] = "uid"
_CONDITION = re.compile(r"^\s*status\.phase\s*(==|=|!=|in|notin)\s*(.+?)\s*$")


def load_workflow(path: Path) -> Workflow:
    """Load and check the one workflow document of ``path``.

    Returns:
        The typed workflow (WorkflowTemplate references and child manifests resolved).

    Raises:
        WorkflowError: naming the file, line and field of the first problem.
    """
    documents = load_documents(path)
    if len(documents) != 1:
        raise WorkflowError(
            f"{path}: expected one YAML document, found {len(documents)}; put each workflow "
            "in its own file"
        )
    return _Loader(documents[0], frozenset()).workflow()


def load_child_manifest(child: ChildWorkflow, manifest: str, file: Path) -> Workflow:
    """Load a resource template's (substituted) manifest as a Workflow to run as a child.

    Raises:
        WorkflowError: when the manifest is not a Workflow with ``workflowTemplateRef``.
    """
    documents = parse_yaml(manifest, file, child.manifest_line)
    return _child_workflow(documents, file, child.manifest_line, frozenset())


def _child_workflow(
    documents: list[Document], file: Path, line: int, visiting: frozenset[str]
) -> Workflow:
    if len(documents) != 1:
        raise WorkflowError(f"{file}:{line}: a resource manifest must hold one document")
    document = documents[0]
    data = document.data if isinstance(document.data, dict) else {}
    spec = data.get("spec")
    if data.get("kind") != "Workflow" or not (
        isinstance(spec, dict) and "workflowTemplateRef" in spec
    ):
        raise document.error(
            ("kind",), "the runner only creates a kind: Workflow with spec.workflowTemplateRef"
        )
    return _Loader(document, visiting).workflow()


def find_template_document(directory: Path, name: str, origin: str) -> Document:
    """Find the WorkflowTemplate ``name``: ``<dir>/<name>.yaml`` or any document named so.

    Raises:
        WorkflowError: when no YAML file of the directory holds a WorkflowTemplate of that name.
    """
    candidates = [directory / f"{name}.yaml", directory / f"{name}.yml"]
    candidates += [path for path in iter_yaml_files(directory) if path not in candidates]
    for path in candidates:
        if not path.is_file():
            continue
        try:
            documents = load_documents(path)
        except WorkflowError:
            continue  # an unrelated broken file does not hide the template we look for
        for document in documents:
            data = document.data if isinstance(document.data, dict) else {}
            metadata = data.get("metadata")
            if not isinstance(metadata, dict):
                continue
            if data.get("kind") == "WorkflowTemplate" and metadata.get("name") == name:
                return document
    raise WorkflowError(
        f"{origin}: workflowTemplateRef {name!r}: no WorkflowTemplate with metadata.name "
        f"{name!r} in {directory} (looked for {name}.yaml and every *.yaml there)"
    )


class _Loader:
    """Reads one document; collects the reference checks to run once all templates are known."""

    def __init__(self, document: Document, visiting: frozenset[str]) -> None:
        self.doc = document
        self.visiting = visiting
        self.references = ReferenceChecker(document)

    # --- typed accessors ---------------------------------------------------------------------

    def where(self, path: FieldPath) -> str:
        return f"{self.doc.file}:{self.doc.line(path)}"

    def mapping(self, value: Any, path: FieldPath, scope: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.doc.error(path, f"expected a mapping ({scope}), got {_kind(value)}")
        table = scope_table(scope)
        kept: dict[str, Any] = {}
        for key, item in value.items():
            feature = table.get(str(key))
            if feature is None:
                known = ", ".join(k for k, f in table.items() if f.support is not Support.REJECTED)
                raise self.doc.error(
                    (*path, str(key)), f"unknown field {key!r} in {scope} (known: {known})"
                )
            if feature.support is Support.REJECTED:
                raise self.doc.error(
                    (*path, str(key)),
                    f"{key!r} is not supported by the local runner ({feature.note}); "
                    "`loopline run --features` lists what is supported",
                )
            if feature.support is Support.SUPPORTED:
                kept[str(key)] = item
        return kept

    def sequence(self, value: Any, path: FieldPath) -> list[Any]:
        if not isinstance(value, list):
            raise self.doc.error(path, f"expected a list, got {_kind(value)}")
        return value

    def text(
        self, data: dict[str, Any], path: FieldPath, key: str, *, required: bool = False
    ) -> str | None:
        value = data.get(key)
        if value is None:
            if required:
                raise self.doc.error((*path, key) if key in data else path, f"{key} is required")
            return None
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float | str):
            return str(value)
        raise self.doc.error((*path, key), f"expected a string or number, got {_kind(value)}")

    def required_text(self, data: dict[str, Any], path: FieldPath, key: str) -> str:
        value = self.text(data, path, key, required=True)
        assert value is not None
        return value

    def positive_int(self, data: dict[str, Any], path: FieldPath, key: str) -> int | None:
        value = data.get(key)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self.doc.error((*path, key), f"expected a positive integer, got {value!r}")
        return value

    def strings(self, data: dict[str, Any], path: FieldPath, key: str) -> tuple[str, ...]:
        items = self.sequence(data.get(key, []), (*path, key))
        return tuple(
            self.required_text({"item": item}, (*path, key, i), "item")
            for i, item in enumerate(items)
        )

    # --- documents ---------------------------------------------------------------------------

    def workflow(self) -> Workflow:
        data = self.mapping(self.doc.data, (), "document")
        if data.get("apiVersion") != API_VERSION:
            raise self.doc.error(("apiVersion",), f"expected apiVersion {API_VERSION}")
        kind = data.get("kind")
        if kind not in WORKFLOW_KINDS:
            raise self.doc.error(
                ("kind",), f"expected kind one of {', '.join(WORKFLOW_KINDS)}, got {kind!r}"
            )
        metadata = self.mapping(data.get("metadata", {}), ("metadata",), "metadata")
        name = self.text(metadata, ("metadata",), "name")
        generate_name = self.text(metadata, ("metadata",), "generateName")
        namespace = self.text(metadata, ("metadata",), "namespace") or "default"
        raw_metadata = data.get("metadata")
        setting_defaults = self.setting_defaults(
            raw_metadata if isinstance(raw_metadata, dict) else {}
        )
        if kind != "Workflow":
            if name is None:
                raise self.doc.error(("metadata",), f"a {kind} needs metadata.name")
            name, generate_name = None, f"{name}-"
        elif name is None and generate_name is None:
            raise self.doc.error(("metadata",), "a Workflow needs metadata.name or generateName")
        spec_path: FieldPath = ("spec",)
        if "spec" not in data:
            raise self.doc.error((), "spec is required")
        spec_data = data["spec"]
        if kind == "CronWorkflow":
            cron = self.mapping(spec_data, spec_path, "cron spec")
            spec_path = ("spec", "workflowSpec")
            if "workflowSpec" not in cron:
                raise self.doc.error(("spec",), "a CronWorkflow needs spec.workflowSpec")
            spec_data = cron["workflowSpec"]
        spec = self.mapping(spec_data, spec_path, "workflow spec")
        header = {"name": name, "generate_name": generate_name or "", "namespace": namespace,
                  "setting_defaults": setting_defaults}  # fmt: skip
        if "workflowTemplateRef" in spec:
            if kind == "WorkflowTemplate":
                raise self.doc.error(
                    (*spec_path, "workflowTemplateRef"), f"a {kind} cannot use workflowTemplateRef"
                )
            return self.referencing_workflow(str(kind), spec, spec_path, header)
        return self.own_workflow(str(kind), spec, spec_path, header)

    def own_workflow(
        self, kind: str, spec: dict[str, Any], path: FieldPath, header: dict[str, Any]
    ) -> Workflow:
        arguments = self.workflow_arguments(spec, path)
        raw_templates = self.sequence(spec.get("templates"), (*path, "templates"))
        templates: dict[str, Template] = {}
        for index, raw in enumerate(raw_templates):
            template = self.template(raw, (*path, "templates", index))
            if template.name in templates:
                raise self.doc.error(
                    (*path, "templates", index, "name"),
                    f"duplicate template name {template.name!r}",
                )
            templates[template.name] = template
        entrypoint = self.required_text(spec, path, "entrypoint")
        if entrypoint not in templates:
            raise self.doc.error(
                (*path, "entrypoint"),
                f"no template named {entrypoint!r} (templates: {', '.join(templates)})",
            )
        self.references.check_all(templates, arguments)
        deadline = self.positive_int(spec, path, "activeDeadlineSeconds")
        return Workflow(
            file=self.doc.file,
            kind=kind,
            entrypoint=entrypoint,
            arguments=arguments,
            templates=templates,
            parallelism=self.positive_int(spec, path, "parallelism"),
            active_deadline_s=float(deadline) if deadline else None,
            **header,
        )

    def setting_defaults(self, metadata: dict[str, Any]) -> dict[str, str]:
        """The annotation naming each parameter's setting (``{"data-uri": "data.uri"}``)."""
        path: FieldPath = ("metadata", "annotations", SETTING_DEFAULTS_ANNOTATION)
        annotations = metadata.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise self.doc.error(path[:2], "expected a mapping of annotation names to strings")
        raw = annotations.get(SETTING_DEFAULTS_ANNOTATION)
        if raw is None:
            return {}
        try:
            value = json.loads(str(raw))
        except ValueError:
            value = None
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self.doc.error(
                path, 'expected a JSON object of parameter: setting, e.g. {"data-uri": "data.uri"}'
            )
        return dict(value)

    def referencing_workflow(
        self, kind: str, spec: dict[str, Any], path: FieldPath, header: dict[str, Any]
    ) -> Workflow:
        if "templates" in spec:
            raise self.doc.error(
                (*path, "templates"),
                "a Workflow with workflowTemplateRef takes its templates from the WorkflowTemplate",
            )
        ref_path = (*path, "workflowTemplateRef")
        ref = self.mapping(spec["workflowTemplateRef"], ref_path, "workflowTemplateRef")
        name = self.required_text(ref, ref_path, "name")
        if name in self.visiting:
            raise self.doc.error(ref_path, f"WorkflowTemplate {name!r} creates itself (a cycle)")
        document = find_template_document(
            self.doc.file.parent, name, self.where((*ref_path, "name"))
        )
        base = _Loader(document, self.visiting | {name}).workflow()
        arguments = {parameter.name: parameter for parameter in base.arguments}
        for parameter in self.workflow_arguments(spec, path):
            inherited = arguments.get(parameter.name)
            enum = parameter.enum or (inherited.enum if inherited else ())
            arguments[parameter.name] = dataclasses.replace(parameter, enum=enum)
        entrypoint = self.text(spec, path, "entrypoint") or base.entrypoint
        if entrypoint not in base.templates:
            raise self.doc.error(
                (*path, "entrypoint"), f"no template named {entrypoint!r} in {name}"
            )
        deadline = self.positive_int(spec, path, "activeDeadlineSeconds")
        return dataclasses.replace(
            base,
            file=self.doc.file,
            kind=kind,
            entrypoint=entrypoint,
            arguments=tuple(arguments.values()),
            parallelism=self.positive_int(spec, path, "parallelism") or base.parallelism,
            active_deadline_s=float(deadline) if deadline else base.active_deadline_s,
            **{
                **header,
                "setting_defaults": {**base.setting_defaults, **header["setting_defaults"]},
            },
        )

    def workflow_arguments(self, spec: dict[str, Any], path: FieldPath) -> tuple[Parameter, ...]:
        arguments = self.mapping(spec.get("arguments", {}), (*path, "arguments"), "arguments")
        if "artifacts" in arguments:
            raise self.doc.error(
                (*path, "arguments", "artifacts"),
                "workflow-level artifact arguments are not supported",
            )
        return self.parameters(arguments, (*path, "arguments"))

    # --- pieces ------------------------------------------------------------------------------

    def parameters(self, holder: dict[str, Any], path: FieldPath) -> tuple[Parameter, ...]:
        result: list[Parameter] = []
        for index, raw in enumerate(
            self.sequence(holder.get("parameters", []), (*path, "parameters"))
        ):
            item_path = (*path, "parameters", index)
            data = self.mapping(raw, item_path, "parameter")
            name = self.required_text(data, item_path, "name")
            if name in {parameter.name for parameter in result}:
                raise self.doc.error(item_path, f"duplicate parameter {name!r}")
            result.append(
                Parameter(
                    name=name,
                    value=self.text(data, item_path, "value"),
                    default=self.text(data, item_path, "default"),
                    enum=self.strings(data, item_path, "enum"),
                    where=self.where(item_path),
                )
            )
        return tuple(result)

    def artifacts(self, holder: dict[str, Any], path: FieldPath, role: str) -> tuple[Artifact, ...]:
        result: list[Artifact] = []
        for index, raw in enumerate(
            self.sequence(holder.get("artifacts", []), (*path, "artifacts"))
        ):
            item_path = (*path, "artifacts", index)
            data = self.mapping(raw, item_path, "artifact")
            key = None
            if "s3" in data:
                s3 = self.mapping(data["s3"], (*item_path, "s3"), "s3")
                key = self.required_text(s3, (*item_path, "s3"), "key")
            artifact = Artifact(
                name=self.required_text(data, item_path, "name"),
                path=self.text(data, item_path, "path"),
                key=key,
                source=self.text(data, item_path, "from"),
                optional=bool(data.get("optional", False)),
            )
            self.check_artifact_role(artifact, item_path, role)
            result.append(artifact)
        return tuple(result)

    def check_artifact_role(self, artifact: Artifact, path: FieldPath, role: str) -> None:
        if role == "argument":
            if (artifact.source is None) == (artifact.key is None):
                raise self.doc.error(
                    path, "an argument artifact needs exactly one of from or s3.key"
                )
            if artifact.path is not None:
                raise self.doc.error(
                    (*path, "path"),
                    "an argument artifact has no path (the template's input declares it)",
                )
            return
        if artifact.path is None:
            raise self.doc.error(path, f"an {role} artifact needs a path")
        if artifact.source is not None:
            raise self.doc.error(
                (*path, "from"), f"from belongs in a task's arguments, not in an {role} artifact"
            )

    def template(self, raw: Any, path: FieldPath) -> Template:
        data = self.mapping(raw, path, "template")
        name = self.required_text(data, path, "name")
        kinds = [kind for kind in ("container", "script", "dag", "resource") if kind in data]
        if len(kinds) != 1:
            raise self.doc.error(
                path,
                f"template {name!r} needs exactly one of container, script, dag, resource "
                f"(found {', '.join(kinds) or 'none'})",
            )
        kind = kinds[0]
        inputs = self.mapping(data.get("inputs", {}), (*path, "inputs"), "inputs")
        outputs = self.mapping(data.get("outputs", {}), (*path, "outputs"), "outputs")
        template = Template(
            name=name,
            kind=kind,
            inputs=self.parameters(inputs, (*path, "inputs")),
            input_artifacts=self.artifacts(inputs, (*path, "inputs"), "input"),
            outputs=self.output_parameters(outputs, (*path, "outputs"), kind),
            output_artifacts=self.artifacts(outputs, (*path, "outputs"), "output"),
            process=self.process(data[kind], (*path, kind), kind)
            if kind in ("container", "script")
            else None,
            tasks=self.dag(data[kind], (*path, kind)) if kind == "dag" else (),
            child=self.resource(data[kind], (*path, kind)) if kind == "resource" else None,
            retry=self.retry(data["retryStrategy"], (*path, "retryStrategy"))
            if "retryStrategy" in data
            else None,
            active_deadline=self.text(data, path, "activeDeadlineSeconds"),
            timeout=self.text(data, path, "timeout"),
            parallelism=self.positive_int(data, path, "parallelism"),
            fail_fast=self.boolean(
                self.mapping(data["dag"], (*path, "dag"), "dag"), (*path, "dag"), "failFast", True
            )
            if kind == "dag"
            else True,
            line=self.doc.line(path),
        )
        if kind in ("dag", "resource") and template.output_artifacts:
            raise self.doc.error(
                (*path, "outputs", "artifacts"),
                f"{kind} templates have no output artifacts locally",
            )
        if template.active_deadline and "{{" not in template.active_deadline:
            self.literal_duration(template.active_deadline, (*path, "activeDeadlineSeconds"))
        if template.timeout and "{{" not in template.timeout:
            self.literal_duration(template.timeout, (*path, "timeout"))
        self.references.add_template(template, path, data)
        return template

    def literal_duration(self, text: str, path: FieldPath) -> float:
        try:
            return parse_duration_s(text)
        except ValueError as err:
            raise self.doc.error(path, str(err)) from err

    def output_parameters(
        self, outputs: dict[str, Any], path: FieldPath, kind: str
    ) -> tuple[OutputParameter, ...]:
        result: list[OutputParameter] = []
        for index, raw in enumerate(
            self.sequence(outputs.get("parameters", []), (*path, "parameters"))
        ):
            item_path = (*path, "parameters", index)
            data = self.mapping(raw, item_path, "output parameter")
            name = self.required_text(data, item_path, "name")
            if kind == "dag":
                source = data.get("valueFrom")
                if isinstance(source, dict) and "expression" in source:
                    raise self.doc.error(
                        (*item_path, "valueFrom", "expression"),
                        "valueFrom.expression (an expr-lang expression) is not supported, and "
                        "outputs of dag templates are not supported",
                    )
                raise self.doc.error(item_path, "outputs of dag templates are not supported")
            if "valueFrom" not in data:
                raise self.doc.error(item_path, f"output parameter {name!r} needs valueFrom")
            source_path = (*item_path, "valueFrom")
            source = self.mapping(data["valueFrom"], source_path, "valueFrom")
            output = OutputParameter(
                name=name,
                path=self.text(source, source_path, "path"),
                default=self.text(source, source_path, "default"),
                json_path=self.text(source, source_path, "jsonPath"),
            )
            if kind == "resource" and output.json_path not in JSON_PATHS:
                raise self.doc.error(
                    source_path,
                    f"a resource output needs valueFrom.jsonPath, one of {', '.join(JSON_PATHS)}",
                )
            if kind != "resource" and output.path is None:
                raise self.doc.error(source_path, "a container/script output needs valueFrom.path")
            result.append(output)
        return tuple(result)

    def process(self, raw: Any, path: FieldPath, kind: str) -> Process:
        data = self.mapping(raw, path, "container")
        command = self.strings(data, path, "command")
        if not command:
            raise self.doc.error(
                path, "command is required locally (the image's entrypoint is unknown)"
            )
        source = self.text(data, path, "source")
        if kind == "script" and source is None:
            raise self.doc.error(path, "a script template needs source")
        if kind == "container" and source is not None:
            raise self.doc.error((*path, "source"), "source belongs to script templates")
        env: list[tuple[str, str]] = []
        for index, raw_env in enumerate(self.sequence(data.get("env", []), (*path, "env"))):
            env_path = (*path, "env", index)
            entry = self.mapping(raw_env, env_path, "env")
            env.append(
                (
                    self.required_text(entry, env_path, "name"),
                    self.text(entry, env_path, "value") or "",
                )
            )
        return Process(
            command=command, args=self.strings(data, path, "args"), env=tuple(env), source=source
        )

    def dag(self, raw: Any, path: FieldPath) -> tuple[DagTask, ...]:
        data = self.mapping(raw, path, "dag")
        tasks: dict[str, DagTask] = {}
        raw_tasks = self.sequence(data.get("tasks"), (*path, "tasks"))
        self.check_depends_rules(raw_tasks, (*path, "tasks"))
        for index, raw_task in enumerate(raw_tasks):
            task = self.task(raw_task, (*path, "tasks", index))
            if task.name in tasks:
                raise self.doc.error(
                    (*path, "tasks", index, "name"), f"duplicate task name {task.name!r}"
                )
            tasks[task.name] = task
        if not tasks:
            raise self.doc.error(path, "a dag needs at least one task")
        for index, task in enumerate(tasks.values()):
            missing = sorted(task.depends.tasks - set(tasks)) if task.depends else []
            if missing:
                task_path = (*path, "tasks", index)
                key = "depends" if (*task_path, "depends") in self.doc.lines else "dependencies"
                raise self.doc.error(
                    (*task_path, key),
                    f"task {task.name!r} depends on unknown task(s) {', '.join(missing)}",
                )
        cycle = _find_cycle(
            {
                name: task.depends.tasks if task.depends else frozenset()
                for name, task in tasks.items()
            }
        )
        if cycle:
            raise self.doc.error(path, f"the dag's dependencies form a cycle: {' -> '.join(cycle)}")
        return tuple(tasks.values())

    def check_depends_rules(self, raw_tasks: list[Any], path: FieldPath) -> None:
        """Argo's submit-time rules for a DAG using ``depends`` (what ``argo lint`` refuses)."""
        tasks = [task if isinstance(task, dict) else {} for task in raw_tasks]
        if not any("depends" in task for task in tasks):
            return
        for index, task in enumerate(tasks):
            if "dependencies" in task:
                raise self.doc.error(
                    (*path, index, "dependencies"),
                    "a DAG cannot use both 'depends' and 'dependencies' (Argo refuses it at "
                    "submit); write every task's dependencies as depends",
                )
            if "continueOn" in task:
                raise self.doc.error(
                    (*path, index, "continueOn"),
                    "a DAG using 'depends' cannot use 'continueOn' (Argo refuses it at submit); "
                    "depend on 'TASK.Failed' or 'TASK.Errored' instead",
                )

    def boolean(self, data: dict[str, Any], path: FieldPath, key: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.doc.error((*path, key), f"expected true or false, got {value!r}")
        return value

    def task(self, raw: Any, path: FieldPath) -> DagTask:
        data = self.mapping(raw, path, "dag task")
        name = self.required_text(data, path, "name")
        depends: DependsExpr | None = None
        try:
            if "depends" in data:
                depends = parse_depends(self.required_text(data, path, "depends"))
            elif "dependencies" in data:
                names = list(self.strings(data, path, "dependencies"))
                depends = dependencies_expr(names) if names else None
        except ExpressionError as err:
            raise self.doc.error(
                (*path, "depends" if "depends" in data else "dependencies"), str(err)
            ) from err
        when = self.text(data, path, "when")
        if when is not None:
            try:
                check_when(when)
            except ExpressionError as err:
                raise self.doc.error((*path, "when"), f"invalid when {when!r}: {err}") from err
        continue_on = data.get("continueOn", {})
        if not isinstance(continue_on, dict) or set(continue_on) - {"failed", "error"}:
            raise self.doc.error(
                (*path, "continueOn"), "expected continueOn with failed and/or error: true"
            )
        arguments = self.mapping(data.get("arguments", {}), (*path, "arguments"), "arguments")
        return DagTask(
            name=name,
            template=self.required_text(data, path, "template"),
            parameters=self.parameters(arguments, (*path, "arguments")),
            artifacts=self.artifacts(arguments, (*path, "arguments"), "argument"),
            depends=depends,
            when=when,
            continue_on_failed=bool(continue_on.get("failed", False)),
            continue_on_error=bool(continue_on.get("error", False)),
            line=self.doc.line(path),
        )

    def resource(self, raw: Any, path: FieldPath) -> ChildWorkflow:
        data = self.mapping(raw, path, "resource")
        action = self.required_text(data, path, "action")
        if action != "create":
            raise self.doc.error(
                (*path, "action"), f"only action: create is supported, got {action!r}"
            )
        manifest = self.required_text(data, path, "manifest")
        manifest_line = self.doc.line((*path, "manifest"))
        child = ChildWorkflow(
            manifest=manifest,
            manifest_line=manifest_line,
            directory=self.doc.file.parent,
            success=self.condition(data, path, "successCondition"),
            failure=self.condition(data, path, "failureCondition"),
        )
        documents = parse_yaml(
            with_placeholders(manifest, "placeholder"), self.doc.file, manifest_line
        )
        _child_workflow(documents, self.doc.file, manifest_line, self.visiting)
        return child

    def condition(self, data: dict[str, Any], path: FieldPath, key: str) -> PhaseCondition | None:
        text = self.text(data, path, key)
        if text is None:
            return None
        match = _CONDITION.match(text)
        if not match:
            raise self.doc.error(
                (*path, key),
                "expected 'status.phase == Succeeded' or 'status.phase in (Failed, Error)', "
                f"got {text!r}",
            )
        operator, operand = match.groups()
        phases = frozenset(p.strip() for p in operand.strip("()").split(",") if p.strip())
        return PhaseCondition(text=text, phases=phases, negated=operator in ("!=", "notin"))

    def retry(self, raw: Any, path: FieldPath) -> RetryStrategy:
        data = self.mapping(raw, path, "retryStrategy")
        if "limit" not in data:
            raise self.doc.error(
                path, "retryStrategy needs a limit (without one Argo retries forever)"
            )
        limit = self.required_text(data, path, "limit")
        if "{{" not in limit and not limit.isdigit():
            raise self.doc.error(
                (*path, "limit"), f"expected a non-negative integer, got {limit!r}"
            )
        expression = self.text(data, path, "expression")
        if expression is not None:
            try:
                parse_retry_expression(with_placeholders(expression, "0"))
            except ExpressionError as err:
                raise self.doc.error(
                    (*path, "expression"), f"invalid expression {expression!r}: {err}"
                ) from err
        policy = self.text(data, path, "retryPolicy") or (
            "Always" if expression is not None else "OnFailure"
        )
        if policy not in ("Always", "OnFailure", "OnError"):
            raise self.doc.error(
                (*path, "retryPolicy"), f"expected Always, OnFailure or OnError, got {policy!r}"
            )
        backoff = None
        if "backoff" in data:
            backoff_path = (*path, "backoff")
            values = self.mapping(data["backoff"], backoff_path, "backoff")
            backoff = Backoff(
                duration=self.text(values, backoff_path, "duration"),
                factor=self.text(values, backoff_path, "factor"),
                max_duration=self.text(values, backoff_path, "maxDuration"),
                cap=self.text(values, backoff_path, "cap"),
            )
            for key, value in (
                ("duration", backoff.duration),
                ("maxDuration", backoff.max_duration),
                ("cap", backoff.cap),
            ):
                if value and "{{" not in value:
                    self.literal_duration(value, (*backoff_path, key))
        return RetryStrategy(
            limit=limit,
            policy=policy,  # type: ignore[arg-type]
            backoff=backoff,
            expression=expression,
        )


def _find_cycle(edges: dict[str, frozenset[str]]) -> list[str]:
    """Return one cycle of a dependency graph (``task -> its dependencies``), or []."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        stack.append(node)
        for dependency in sorted(edges.get(node, ())):
            if state.get(dependency) == 1:
                return [*stack[stack.index(dependency) :], dependency]
            if dependency not in state:
                found = visit(dependency)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def _kind(value: Any) -> str:
    return {dict: "a mapping", list: "a list", type(None): "nothing"}.get(type(value), repr(value))

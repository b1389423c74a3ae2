"""Execute a loaded workflow on this machine: DAG scheduling, retries, deadlines, child runs.

Pod templates (container, script) and resource templates run in a thread pool of
``parallelism`` workers; a DAG template waits for its tasks in a thread of its own, so nested
DAGs never hold a worker. A DAG's phase follows Argo's assessment: each leaf task's branch takes
the phase of its last task that ran (Omitted and Skipped tasks inherit it), and the DAG fails
when a branch ends Failed or Error without ``continueOn``.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path

from steps.core.errors import WorkflowError
from steps.core.settings import Settings
from steps.io.artifact_store import ArtifactStore
from steps.localrun.expressions import (
    ExpressionError,
    TaskOutcome,
    UnresolvedReferenceError,
    evaluate_when,
    substitute,
)
from steps.localrun.loader import load_child_manifest, load_workflow
from steps.localrun.model import (
    DagTask,
    Template,
    Workflow,
    resolve_parameters,
)
from steps.localrun.pods import PodRunner
from steps.localrun.record import (
    ChildRun,
    NodeRecord,
    NodeType,
    RunRecord,
    now,
    write_record,
)

Progress = Callable[[str, NodeRecord], None]  # (run name, node)
_FAILED = ("Failed", "Error")
_COMPLETED = ("Succeeded", "Failed", "Error")
_DAG_WAITERS = 32


INTERRUPTED = "interrupted by the user (Ctrl-C)"


@dataclass(frozen=True)
class RunOptions:
    """How to run: worker count, retry backoff scale (tests use ~0) and a progress callback."""

    parallelism: int = 2
    backoff_scale: float = 1.0
    progress: Progress | None = None
    reuse: RunRecord | None = None
    """A earlier record of the same run (``loopline runs retry``): its Succeeded pod nodes are
    kept with their outputs, not run again, as ``argo retry`` does."""


def run_workflow(
    path: Path,
    parameters: Mapping[str, str],
    *,
    settings: Settings,
    options: RunOptions | None = None,
) -> RunRecord:
    """Load the workflow file at ``path`` and run it to completion on this machine.

    Args:
        path: a Workflow, WorkflowTemplate or CronWorkflow YAML file (rendered by Hera).
        parameters: ``-p`` overrides; only parameters the workflow declares.
        settings: where the state directory and the artifact store are.
        options: parallelism, backoff scale and progress callback.

    Returns:
        The run record (also written to ``<state_dir>/runs/<name>/record.json``); its ``phase``
        is Succeeded, Failed or Error.

    Raises:
        WorkflowError: when the file uses something the runner cannot run (naming the field
            and line), or a parameter is unknown or missing. A node that fails does not raise:
            it is in the record.
    """
    workflow = load_workflow(path)
    return run_loaded(workflow, parameters, settings=settings, options=options or RunOptions())


def run_loaded(
    workflow: Workflow, parameters: Mapping[str, str], *, settings: Settings, options: RunOptions
) -> RunRecord:
    """Run an already loaded workflow; see :func:`run_workflow`.

    Returns:
        The run record.

    Raises:
        WorkflowError: for unknown or missing parameters, or a run name already taken.
    """
    values = resolve_parameters(workflow, {**local_defaults(workflow, settings), **parameters})
    name, run_dir = allocate_run_dir(settings.state_path / "runs", workflow)
    return _Run(workflow, values, settings, options, name, run_dir).execute()


def local_defaults(workflow: Workflow, settings: Settings) -> dict[str, str]:
    """The parameters whose default on this machine comes from a setting that is set (the
    workflow's :attr:`~steps.localrun.model.Workflow.setting_defaults`): ``data-uri`` from
    ``LOOPLINE_DATA__URI``, say. A setting left unset keeps the YAML's default."""
    declared = {parameter.name for parameter in workflow.arguments}
    found = {}
    for parameter, dotted in workflow.setting_defaults.items():
        value: object = settings
        for part in dotted.split("."):
            value = getattr(value, part, None)
        if parameter in declared and value is not None:
            found[parameter] = str(value)
    return found


def retry_run(earlier: RunRecord, *, settings: Settings, options: RunOptions) -> RunRecord:
    """Run ``earlier`` again in place (same name, directory and parameters, its workflow file
    read again): its Succeeded pod nodes keep their outputs, every other node runs.

    Raises:
        WorkflowError: when the run Succeeded already, or its workflow file is gone or no
            longer loads.
    """
    if earlier.phase == "Succeeded":
        raise WorkflowError(f"run {earlier.name!r} Succeeded: nothing to retry")
    file = Path(earlier.file)
    if not file.is_file():
        raise WorkflowError(f"run {earlier.name!r}: its workflow file {file} is gone")
    workflow = load_workflow(file)
    options = dataclasses.replace(options, reuse=earlier)
    run = _Run(workflow, dict(earlier.parameters), settings, options, earlier.name,
               Path(earlier.run_dir))  # fmt: skip
    run.record.retries = earlier.retries + 1
    return run.execute()


def allocate_run_dir(runs_root: Path, workflow: Workflow) -> tuple[str, Path]:
    """Create the run's directory: ``metadata.name``, or ``generateName`` + the next free number.

    Returns:
        The run's name and its new, empty directory.

    Raises:
        WorkflowError: when ``metadata.name`` is set and a run of that name exists.
    """
    runs_root.mkdir(parents=True, exist_ok=True)
    if workflow.name:
        run_dir = runs_root / workflow.name
        try:
            run_dir.mkdir()
        except FileExistsError as err:
            raise WorkflowError(
                f"a run named {workflow.name!r} already exists ({run_dir}); like Argo, a fixed "
                "metadata.name runs once: use metadata.generateName or remove that directory"
            ) from err
        return workflow.name, run_dir
    for number in itertools.count(1):
        name = f"{workflow.generate_name}{number}"
        try:
            (runs_root / name).mkdir()
        except FileExistsError:
            continue
        return name, runs_root / name
    raise AssertionError("unreachable")  # pragma: no cover


class _Run:
    """One run of one workflow (a child run is another instance)."""

    def __init__(
        self,
        workflow: Workflow,
        values: dict[str, str],
        settings: Settings,
        options: RunOptions,
        name: str,
        run_dir: Path,
    ) -> None:
        self.workflow = workflow
        self.settings = settings
        self.options = options
        self.run_dir = run_dir
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        started = time.monotonic()
        self.deadline = started + workflow.active_deadline_s if workflow.active_deadline_s else None
        self.record = RunRecord(
            name=name,
            uid=str(uuid.uuid4()),
            namespace=workflow.namespace,
            file=str(workflow.file),
            kind=workflow.kind,
            entrypoint=workflow.entrypoint,
            run_dir=str(run_dir),
            parameters=values,
        )
        stamp = self.record.started.strftime("%Y-%m-%dT%H:%M:%SZ")
        self.globals = {
            "workflow.name": name,
            "workflow.uid": self.record.uid,
            "workflow.namespace": workflow.namespace,
            "workflow.creationTimestamp": stamp,
            "workflow.scheduledTime": stamp,  # a CronWorkflow runs once, now
            **{f"workflow.parameters.{key}": value for key, value in values.items()},
        }
        workers = min(options.parallelism, workflow.parallelism or options.parallelism)
        self.pod_pool = ThreadPoolExecutor(max(workers, 1), thread_name_prefix="loopline-node")
        self.dag_pool = ThreadPoolExecutor(_DAG_WAITERS, thread_name_prefix="loopline-dag")
        self.child_pool = ThreadPoolExecutor(_DAG_WAITERS, thread_name_prefix="loopline-child")
        self.children: list[tuple[NodeRecord, Future[RunRecord]]] = []
        self.pods = PodRunner(
            store=ArtifactStore(settings),
            cancel=self.cancel,
            workflow_deadline=self.deadline,
            backoff_scale=options.backoff_scale,
            run_name=name,
            shared_env={"LOOPLINE_STATE_DIR": str(settings.state_path)},
            report=self.report,
        )

    # --- the run -----------------------------------------------------------------------------

    def execute(self) -> RunRecord:
        """Run the entrypoint, wait for child runs, write and return the record."""
        write_record(self.record, self.run_dir / "record.json")
        entry = self.workflow.templates[self.workflow.entrypoint]
        try:
            given = {
                p.name: self.record.parameters[p.name]
                for p in entry.inputs
                if p.name in self.record.parameters
            }
            root = self.run_template(entry, self.record.name, entry.name, given, {})
        except KeyboardInterrupt:
            self.cancel.set()
            self.interrupted()
            raise
        finally:
            self.pod_pool.shutdown(wait=True)
            self.dag_pool.shutdown(wait=True)
            self.record.children = [self.wait_child(node, future) for node, future in self.children]
            self.child_pool.shutdown(wait=True)
        self.record.phase = root.phase
        failed = self.record.failed_nodes()
        # A run that succeeded has no failure to report, even if a node was allowed to fail.
        self.record.message = (
            ""
            if root.phase == "Succeeded"
            else root.message
            or (f"{failed[0].display_name}: {failed[0].message}" if failed else "")
        )
        self.record.finished = now()
        self.record.duration_s = round(
            (self.record.finished - self.record.started).total_seconds(), 3
        )
        write_record(self.record, self.run_dir / "record.json")
        return self.record

    def interrupted(self) -> None:
        """Record a run stopped by Ctrl-C: Failed, its unfinished nodes Failed, and how to
        resume it."""
        for node in self.record.nodes:
            if node.phase in ("Pending", "Running"):
                node.finish("Failed", INTERRUPTED)
        self.record.phase = "Failed"
        self.record.message = (
            f"{INTERRUPTED}; `loopline runs retry {self.record.name}` runs what did not succeed"
        )
        self.record.finished = now()
        self.record.duration_s = round(
            (self.record.finished - self.record.started).total_seconds(), 3
        )
        write_record(self.record, self.run_dir / "record.json")

    def wait_child(self, node: NodeRecord, future: Future[RunRecord]) -> ChildRun:
        child = future.result()
        return ChildRun(
            node=node.display_name,
            name=child.name,
            phase=child.phase,
            record=str(Path(child.run_dir) / "record.json"),
        )

    def aborted(self) -> bool:
        return self.cancel.is_set() or (
            self.deadline is not None and time.monotonic() >= self.deadline
        )

    def report(self, node: NodeRecord) -> None:
        if self.options.progress is not None:
            self.options.progress(self.record.name, node)

    def new_node(
        self,
        name: str,
        display: str,
        template: Template,
        phase: str | None = None,
        message: str = "",
    ) -> NodeRecord:
        kinds: dict[str, NodeType] = {"dag": "DAG", "resource": "Resource"}
        node_type: NodeType = "Skipped" if phase is not None else kinds.get(template.kind, "Pod")
        node = NodeRecord(name=name, display_name=display, template=template.name, type=node_type)
        with self.lock:
            self.record.nodes.append(node)
        if phase is not None:
            node.finish(phase, message)
            self.report(node)
        return node

    # --- templates ---------------------------------------------------------------------------

    def run_template(
        self,
        template: Template,
        name: str,
        display: str,
        given: dict[str, str],
        artifacts: dict[str, str],
    ) -> NodeRecord:
        node = self.new_node(name, display, template)
        node.start()
        self.report(node)
        try:
            inputs = self.bind_inputs(template, given)
            if template.kind == "dag":
                phase, message = self.run_dag(template, node, inputs)
                node.finish(phase, message)
            elif template.kind == "resource":
                self.run_resource(template, node, inputs)
            else:
                node.log = str(self.run_dir / "nodes" / display / "log.txt")
                self.pods.run(
                    template, node, self.scope(inputs), artifacts, self.run_dir / "nodes" / display
                )
        except (WorkflowError, UnresolvedReferenceError, ExpressionError, ValueError) as err:
            node.finish("Error", str(err))
        self.report(node)
        return node

    def scope(self, inputs: Mapping[str, str]) -> dict[str, str]:
        return {
            **self.globals,
            **{f"inputs.parameters.{key}": value for key, value in inputs.items()},
        }

    def bind_inputs(self, template: Template, given: Mapping[str, str]) -> dict[str, str]:
        inputs: dict[str, str] = {}
        for parameter in template.inputs:
            value = given.get(parameter.name)
            if value is None and parameter.given is not None:
                value = substitute(parameter.given, self.globals)
            if value is None:
                raise WorkflowError(f"inputs.parameters.{parameter.name} was not supplied")
            if parameter.enum and value not in parameter.enum:
                raise WorkflowError(
                    f"inputs.parameters.{parameter.name}={value!r} is not one of "
                    f"{', '.join(parameter.enum)}"
                )
            inputs[parameter.name] = value
        return inputs

    # --- DAGs --------------------------------------------------------------------------------

    def run_dag(
        self, template: Template, node: NodeRecord, inputs: dict[str, str]
    ) -> tuple[str, str]:
        tasks = {task.name: task for task in template.tasks}
        outcomes: dict[str, TaskOutcome] = {}
        records: dict[str, NodeRecord] = {}
        running: dict[Future[NodeRecord], str] = {}
        pending = list(tasks)
        limit = template.parallelism
        failing: tuple[str, str] | None = None  # (leaf task, phase) once failFast stops the DAG
        while pending or running:
            for name in list(pending):
                task = tasks[name]
                if failing or self.aborted() or (limit and len(running) >= limit):
                    break
                if task.depends and not task.depends.tasks <= outcomes.keys():
                    continue
                pending.remove(name)
                started = self.start_task(task, node, inputs, records, outcomes)
                if isinstance(started, Future):
                    running[started] = name
                else:
                    records[name] = started
                    outcomes[name] = self.outcome(task, started)
            if template.fail_fast and failing is None:
                failing = failing_branch(template.tasks, outcomes)
            if not running:
                break
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                name = running.pop(future)
                records[name] = future.result()
                outcomes[name] = self.outcome(tasks[name], records[name])
            if template.fail_fast and failing is None:
                failing = failing_branch(template.tasks, outcomes)
        if failing is not None:
            leaf, phase = failing
            never = f"; not started: {', '.join(pending)}" if pending else ""
            return phase, f"failFast: task {leaf!r} ended {phase}{never}"
        if pending:
            return "Failed", f"not started: {', '.join(pending)} ({self.abort_reason()})"
        return assess_dag(template.tasks, outcomes), ""

    def abort_reason(self) -> str:
        if self.cancel.is_set():
            return "run cancelled"
        seconds = self.workflow.active_deadline_s or 0
        return f"workflow deadline exceeded (activeDeadlineSeconds={seconds:g})"

    @staticmethod
    def outcome(task: DagTask, node: NodeRecord) -> TaskOutcome:
        return TaskOutcome(node.phase, task.continue_on_failed, task.continue_on_error)

    def start_task(
        self,
        task: DagTask,
        dag: NodeRecord,
        inputs: dict[str, str],
        records: Mapping[str, NodeRecord],
        outcomes: Mapping[str, TaskOutcome],
    ) -> Future[NodeRecord] | NodeRecord:
        called = self.workflow.templates[task.template]
        name = f"{dag.name}.{task.name}"
        display = task.name if dag.name == self.record.name else f"{dag.display_name}.{task.name}"
        if task.depends and not task.depends.evaluate(outcomes):
            return self.new_node(
                name, display, called, "Omitted", "omitted: depends condition not met"
            )
        scope = {**self.scope(inputs), **task_scope(records, self.workflow.templates)}
        try:
            # `when` first, as Argo does: a skipped task's arguments may name outputs of tasks
            # that were themselves skipped, and are never resolved.
            condition = substitute(task.when, scope) if task.when else ""
            if condition and not evaluate_when(condition):
                message = f"when '{condition}' evaluated false"
                return self.new_node(name, display, called, "Skipped", message)
            given = self.task_arguments(task, called, scope)
            artifacts = {a.name: self.artifact_uri(a.source, a.key, scope) for a in task.artifacts}
        except (UnresolvedReferenceError, ExpressionError) as err:
            return self.new_node(name, display, called, "Error", f"task {task.name!r}: {err}")
        kept = self.kept(display)
        if kept is not None and called.kind not in ("dag", "resource"):
            return self.keep_node(name, display, called, kept)
        pool = self.dag_pool if called.kind == "dag" else self.pod_pool
        return pool.submit(self.run_template, called, name, display, given, artifacts)

    def kept(self, display: str) -> NodeRecord | None:
        """The earlier run's node ``display`` when it Succeeded (a retry keeps it)."""
        earlier = self.options.reuse
        if earlier is None:
            return None
        found = [n for n in earlier.nodes if n.display_name == display and n.type == "Pod"]
        return found[0] if found and found[0].phase == "Succeeded" else None

    def keep_node(self, name: str, display: str, called: Template, kept: NodeRecord) -> NodeRecord:
        node = kept.model_copy(deep=True, update={"name": name, "template": called.name})
        node.message = "kept from the earlier attempt of this run (Succeeded)"
        with self.lock:
            self.record.nodes.append(node)
        self.report(node)
        return node

    @staticmethod
    def task_arguments(task: DagTask, called: Template, scope: Mapping[str, str]) -> dict[str, str]:
        """A task's parameter arguments; one naming outputs of a task that did not run is left
        to the called template's input default, as Argo does (an error without one)."""
        defaults = {p.name for p in called.inputs if p.given is not None}
        given: dict[str, str] = {}
        for parameter in task.parameters:
            try:
                given[parameter.name] = substitute(
                    parameter.value or parameter.default or "", scope
                )
            except UnresolvedReferenceError:
                if parameter.name not in defaults:
                    raise
        return given

    def artifact_uri(self, source: str | None, key: str | None, scope: Mapping[str, str]) -> str:
        if source is not None:
            return substitute(source, scope)
        return self.pods.store.uri(substitute(key or "", scope))

    # --- resource: child workflows -----------------------------------------------------------

    def run_resource(self, template: Template, node: NodeRecord, inputs: dict[str, str]) -> None:
        assert template.child is not None
        manifest = substitute(template.child.manifest, self.scope(inputs))
        child_workflow = load_child_manifest(template.child, manifest, self.workflow.file)
        values = resolve_parameters(child_workflow, {})
        name, run_dir = allocate_run_dir(self.run_dir.parent, child_workflow)
        child = _Run(child_workflow, values, self.settings, self.options, name, run_dir)
        node.child = name
        known = {"name": name, "namespace": child_workflow.namespace, "uid": child.record.uid}
        from steps.localrun.loader import JSON_PATHS

        node.outputs.parameters = {
            o.name: known[JSON_PATHS[o.json_path or ""]] for o in template.outputs
        }
        future = self.child_pool.submit(child.execute)
        with self.lock:
            self.children.append((node, future))
        condition_text = " / ".join(
            c.text for c in (template.child.success, template.child.failure) if c
        )
        if not condition_text:
            node.finish("Succeeded", f"created workflow {name}")
            return
        phase = future.result().phase
        failure, success = template.child.failure, template.child.success
        if failure and failure.matches(phase):
            node.finish(
                "Failed", f"workflow {name} ended {phase}: failureCondition {failure.text!r}"
            )
        elif success is None or success.matches(phase):
            node.finish("Succeeded", f"workflow {name} ended {phase}")
        else:
            node.finish(
                "Failed",
                f"workflow {name} ended {phase}: successCondition {success.text!r} not met",
            )


def task_scope(
    records: Mapping[str, NodeRecord], templates: Mapping[str, Template]
) -> dict[str, str]:
    """The ``tasks.T.*`` values of the tasks that finished.

    A task that did not run (Skipped, Omitted) has its status, and the output parameters its
    template gives a ``valueFrom.default``, as Argo resolves them.
    """
    scope: dict[str, str] = {}
    for name, node in records.items():
        scope[f"tasks.{name}.status"] = node.phase
        if node.phase in ("Skipped", "Omitted"):
            for output in templates[node.template].outputs:
                if output.default is not None:
                    scope[f"tasks.{name}.outputs.parameters.{output.name}"] = output.default
        if node.exit_code is not None:
            scope[f"tasks.{name}.exitCode"] = str(node.exit_code)
        for key, value in node.outputs.parameters.items():
            scope[f"tasks.{name}.outputs.parameters.{key}"] = value
        for key, value in node.outputs.artifacts.items():
            scope[f"tasks.{name}.outputs.artifacts.{key}"] = value
        if node.outputs.result is not None:
            scope[f"tasks.{name}.outputs.result"] = node.outputs.result
    return scope


def assess_dag(tasks: tuple[DagTask, ...], outcomes: Mapping[str, TaskOutcome]) -> str:
    """Return a finished DAG's phase the way Argo assesses it: the phase of the first failing
    branch (see :func:`failing_branch`), else Succeeded."""
    failing = failing_branch(tasks, outcomes)
    return failing[1] if failing else "Succeeded"


def failing_branch(
    tasks: tuple[DagTask, ...], outcomes: Mapping[str, TaskOutcome]
) -> tuple[str, str] | None:
    """Return the first leaf task (one nothing depends on) whose branch failed, and its phase.

    Each task's branch phase is its own phase when it ran (Succeeded, Failed, Error), else the
    branch phases of its dependencies (a root starts Succeeded). A leaf's branch fails with a
    Failed or Error branch phase that its ``continueOn`` does not cover. Only finished leaves
    count, so a running DAG can be judged too: with ``failFast`` (Argo's default) the first
    failing branch stops the DAG from starting anything else, while a failure that a dependent
    task handles (``depends: C.Failed``) fails no branch.
    """
    by_name = {task.name: task for task in tasks}
    dependencies = {
        task.name: task.depends.tasks if task.depends else frozenset() for task in tasks
    }
    branch: dict[str, set[str]] = {}

    def phases(name: str) -> set[str]:
        if name not in branch:
            own = outcomes[name].phase
            if own in _COMPLETED:
                branch[name] = {own}
            elif dependencies[name]:
                branch[name] = set().union(*(phases(dep) for dep in dependencies[name]))
            else:
                branch[name] = {"Succeeded"}
        return branch[name]

    depended_on = set().union(*dependencies.values())
    for task in tasks:
        if task.name in depended_on or task.name not in outcomes:
            continue
        for phase in sorted(phases(task.name)):
            allowed = (phase == "Failed" and by_name[task.name].continue_on_failed) or (
                phase == "Error" and by_name[task.name].continue_on_error
            )
            if phase in _FAILED and not allowed:
                return task.name, phase
    return None

"""Run a container or script template like a pod: inputs in, process with retries, outputs out."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from steps.core.errors import WorkflowError
from steps.io.artifact_store import ArtifactStore
from steps.localrun.expressions import ExpressionError, substitute
from steps.localrun.model import RetryStrategy, Template, parse_duration_s
from steps.localrun.process import ProcessResult, run_process
from steps.localrun.record import NodeOutputs, NodeRecord
from steps.localrun.retry_expression import LastRetry, RetryExpression, parse_retry_expression
from steps.localrun.workspace import Workspace, declared_prefixes

_RETRIED = {"Always": ("Failed", "Error"), "OnFailure": ("Failed",), "OnError": ("Error",)}
NOT_RETRIED = "not retried: retryStrategy.expression evaluated to false"


@dataclass(frozen=True)
class _Attempt:
    phase: str
    message: str = ""
    exit_code: int | None = None
    outputs: NodeOutputs | None = None


@dataclass
class PodRunner:
    """Runs pod templates for one workflow run."""

    store: ArtifactStore
    cancel: threading.Event
    workflow_deadline: float | None
    backoff_scale: float
    run_name: str
    shared_env: Mapping[str, str]
    report: Callable[[NodeRecord], None] = lambda _node: None
    """Called when a node's state changes between attempts (the live table shows it)."""

    def run(
        self,
        template: Template,
        node: NodeRecord,
        scope: Mapping[str, str],
        artifacts: Mapping[str, str],
        node_dir: Path,
    ) -> None:
        """Run every attempt the retry strategy allows; finish ``node`` with the last one.

        Raises:
            WorkflowError: when a templated limit, deadline or duration is malformed, or the
                ``retryStrategy.expression`` cannot be parsed or evaluated.
            UnresolvedReferenceError: when a template field refers to a missing value.
        """
        node_dir.mkdir(parents=True, exist_ok=True)
        retry = template.retry
        limit = _int(substitute(retry.limit, scope), "retryStrategy.limit") if retry else 0
        expression = _expression(retry, scope)
        started = time.monotonic()
        timeout = _seconds(template.timeout, scope, "timeout")
        node_deadline = started + timeout if timeout is not None else None
        attempt = _Attempt("Error", "not started")
        for number in range(limit + 1):
            attempt_started = time.monotonic()
            attempt = self.attempt(
                template,
                {**scope, "retries": str(number)},
                artifacts,
                node_dir,
                number,
                node_deadline,
            )
            node.attempts = number + 1
            node.exit_code = attempt.exit_code
            if attempt.phase == "Succeeded" or number == limit or retry is None:
                break
            if not self.policy_allows(retry, attempt):
                break
            # Argo's order: the policy, the limit, then the expression (both must allow it).
            last = _last_retry(attempt, number, time.monotonic() - attempt_started)
            if expression is not None and not _allows_retry(expression, last):
                attempt = dataclasses.replace(attempt, message=f"{attempt.message}; {NOT_RETRIED}")
                break
            delay = self.backoff_s(retry, number, scope)
            max_duration = _seconds(
                retry.backoff.max_duration if retry.backoff else None, scope, "maxDuration"
            )
            if max_duration is not None and time.monotonic() + delay - started > max_duration:
                break
            wait = self.bounded(delay)
            at = datetime.now(UTC) + timedelta(seconds=wait)
            node.message = (
                f"attempt {number + 1} of {limit + 1} failed: {attempt.message}; next try in "
                f"{wait:.0f} s (at {at:%H:%M:%S})"
            )
            self.report(node)
            self.cancel.wait(wait)
            node.message = (
                f"attempt {number + 2} of {limit + 1} running; attempt {number + 1} failed: "
                f"{attempt.message}"
            )
            self.report(node)
        if attempt.outputs is not None:
            node.outputs = attempt.outputs
        node.finish(attempt.phase, attempt.message)

    def policy_allows(self, retry: RetryStrategy, attempt: _Attempt) -> bool:
        """Whether ``retryPolicy`` retries this failure and the run still has time for it."""
        return (
            attempt.phase in _RETRIED[retry.policy]
            and not self.stopped()
            and not attempt.message.startswith("workflow deadline")
        )

    def stopped(self) -> bool:
        deadline_passed = (
            self.workflow_deadline is not None and time.monotonic() >= self.workflow_deadline
        )
        return self.cancel.is_set() or deadline_passed

    def bounded(self, delay_s: float) -> float:
        if self.workflow_deadline is None:
            return delay_s
        return max(0.0, min(delay_s, self.workflow_deadline - time.monotonic()))

    def backoff_s(
        self, retry: RetryStrategy, failures_before: int, scope: Mapping[str, str]
    ) -> float:
        if retry.backoff is None:
            return 0.0
        duration = _seconds(retry.backoff.duration, scope, "backoff.duration") or 0.0
        factor = float(substitute(retry.backoff.factor, scope)) if retry.backoff.factor else 1.0
        wait = duration * factor**failures_before
        cap = _seconds(retry.backoff.cap, scope, "backoff.cap")
        return (wait if cap is None else min(wait, cap)) * self.backoff_scale

    def attempt(
        self,
        template: Template,
        scope: Mapping[str, str],
        artifacts: Mapping[str, str],
        node_dir: Path,
        number: int,
        node_deadline: float | None,
    ) -> _Attempt:
        assert template.process is not None
        output_paths = [substitute(o.path, scope) for o in template.outputs if o.path]
        artifact_paths = [
            substitute(a.path, scope)
            for a in (*template.input_artifacts, *template.output_artifacts)
            if a.path
        ]
        workspace = Workspace(node_dir, tuple(declared_prefixes(output_paths, artifact_paths)))
        workspace.reset()
        if number:
            with workspace.log.open("a", encoding="utf-8") as log:
                log.write(f"--- retry {number} ---\n")
        self.fetch_inputs(template, scope, artifacts, workspace)
        for path in [
            *output_paths,
            *(substitute(a.path, scope) for a in template.output_artifacts if a.path),
        ]:
            workspace.local_path(path).parent.mkdir(parents=True, exist_ok=True)
        process = template.process
        argv = workspace.argv(
            (substitute(c, scope) for c in process.command),
            (substitute(a, scope) for a in process.args),
        )
        if process.source is not None:
            script = node_dir / "script"
            script.write_text(workspace.remap(substitute(process.source, scope)), encoding="utf-8")
            script.chmod(0o755)
            argv.append(str(script))
        env = workspace.environment((name, substitute(value, scope)) for name, value in process.env)
        # Every node shares the run's state (MLflow store, artifacts) wherever its cwd is.
        env.update(self.shared_env)
        attempt_deadline = _seconds(template.active_deadline, scope, "activeDeadlineSeconds")
        deadlines = [d for d in (node_deadline, self.workflow_deadline) if d is not None]
        if attempt_deadline is not None:
            deadlines.append(time.monotonic() + attempt_deadline)
        result = run_process(
            argv,
            cwd=workspace.work,
            env=env,
            log_path=workspace.log,
            deadline=min(deadlines, default=None),
            cancel=self.cancel,
        )
        failure = self.failure(result)
        if failure is not None:
            return failure
        return self.collect_outputs(template, scope, workspace, result)

    def failure(self, result: ProcessResult) -> _Attempt | None:
        if result.start_error is not None:
            return _Attempt("Error", result.start_error)
        if result.cancelled:
            return _Attempt("Failed", "cancelled")
        if result.timed_out:
            workflow_over = (
                self.workflow_deadline is not None and time.monotonic() >= self.workflow_deadline
            )
            reason = "workflow deadline exceeded" if workflow_over else "deadline exceeded"
            return _Attempt("Failed", f"{reason}: process killed")
        if result.exit_code != 0:
            return _Attempt("Failed", f"exit code {result.exit_code}", result.exit_code)
        return None

    def fetch_inputs(
        self,
        template: Template,
        scope: Mapping[str, str],
        artifacts: Mapping[str, str],
        workspace: Workspace,
    ) -> None:
        for artifact in template.input_artifacts:
            uri = artifacts.get(artifact.name)
            if uri is None and artifact.key is not None:
                uri = self.store.uri(substitute(artifact.key, scope))
            if uri is None:
                continue  # optional and not supplied
            target = workspace.local_path(substitute(artifact.path or "", scope))
            self.store.download(uri, target, optional=artifact.optional)

    def collect_outputs(
        self,
        template: Template,
        scope: Mapping[str, str],
        workspace: Workspace,
        result: ProcessResult,
    ) -> _Attempt:
        outputs = NodeOutputs(result=result.stdout.strip())
        for output in template.outputs:
            path = workspace.local_path(substitute(output.path or "", scope))
            if path.is_file():
                outputs.parameters[output.name] = path.read_text(encoding="utf-8").rstrip("\n")
            elif output.default is not None:
                outputs.parameters[output.name] = substitute(output.default, scope)
            else:
                return _Attempt(
                    "Failed", f"output parameter {output.name!r}: {output.path} was not written", 0
                )
        for artifact in template.output_artifacts:
            path = workspace.local_path(substitute(artifact.path or "", scope))
            if not path.exists():
                if artifact.optional:
                    continue
                return _Attempt(
                    "Failed",
                    f"output artifact {artifact.name!r}: {artifact.path} was not written",
                    0,
                )
            key = (
                substitute(artifact.key, scope)
                if artifact.key
                else f"{self.run_name}/{workspace.node_dir.name}/{artifact.name}"
            )
            outputs.artifacts[artifact.name] = self.store.upload(path, key)
        return _Attempt("Succeeded", "", 0, outputs)


def _expression(retry: RetryStrategy | None, scope: Mapping[str, str]) -> RetryExpression | None:
    if retry is None or retry.expression is None:
        return None
    text = substitute(retry.expression, scope)
    try:
        return parse_retry_expression(text)
    except ExpressionError as err:
        raise WorkflowError(f"retryStrategy.expression {text!r}: {err}") from err


def _last_retry(attempt: _Attempt, number: int, duration_s: float) -> LastRetry:
    return LastRetry(
        exit_code=attempt.exit_code,
        status=attempt.phase,
        duration_s=duration_s,
        message=attempt.message,
        retries=number,
    )


def _allows_retry(expression: RetryExpression, last: LastRetry) -> bool:
    try:
        return expression.allows_retry(last)
    except ExpressionError as err:
        raise WorkflowError(f"retryStrategy.expression {expression.text!r}: {err}") from err


def _int(text: str, field: str) -> int:
    try:
        value = int(text)
    except ValueError as err:
        raise WorkflowError(f"{field}: expected an integer, got {text!r}") from err
    if value < 0:
        raise WorkflowError(f"{field}: expected a non-negative integer, got {value}")
    return value


def _seconds(text: str | None, scope: Mapping[str, str], field: str) -> float | None:
    if text is None:
        return None
    value = substitute(text, scope)
    try:
        return parse_duration_s(value)
    except ValueError as err:
        raise WorkflowError(f"{field}: {err}") from err

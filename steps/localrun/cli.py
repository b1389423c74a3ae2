"""``loopline run FILE [-p name=value ...]``: run rendered Argo Workflow YAML on this machine;
``loopline runs list|show|logs|retry|delete``: the runs it recorded.

The run ends with what each task decided (:mod:`steps.localrun.summary`). Exit codes: 0 when the
run Succeeded, 1 when it Failed (the failed task's exit code, attempts and log tail are printed),
2 when the file cannot be run as written (field and line named) or a parameter is wrong; Ctrl-C
records the run as Failed ("interrupted") and exits 130. ``loopline runs retry NAME`` runs it
again in place, keeping the nodes that Succeeded (as ``argo retry``).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from steps.core.cli_support import Output, OutputOption, console, emit, new_app, reports_errors
from steps.core.errors import WorkflowError
from steps.core.settings import load_settings
from steps.localrun import runs
from steps.localrun.executor import RunOptions, retry_run, run_workflow
from steps.localrun.features import FEATURES, Support
from steps.localrun.progress import ProgressDisplay
from steps.localrun.record import RunRecord, log_tail
from steps.localrun.summary import summary_lines


@reports_errors
def run_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="Workflow, WorkflowTemplate or CronWorkflow YAML (e.g. argo/x.yaml)"),
    ] = None,
    parameter: Annotated[
        list[str] | None,
        typer.Option("-p", "--parameter", help="NAME=VALUE for a declared parameter; repeat"),
    ] = None,
    parallelism: Annotated[
        int, typer.Option(min=1, help="nodes run at once (spec.parallelism caps it)")
    ] = 2,
    backoff_scale: Annotated[
        float, typer.Option(min=0.0, help="multiplies retry backoff waits (0 = no wait)")
    ] = 1.0,
    features: Annotated[
        bool, typer.Option("--features", help="list supported / ignored / rejected fields")
    ] = False,
) -> None:
    """Run a rendered Argo workflow locally: each container as a subprocess of this venv."""
    if features:
        print_features(Console())
        return
    if file is None:
        raise WorkflowError("missing FILE: the workflow YAML to run (or pass --features)")
    overrides = parse_parameters(parameter or [])
    settings = load_settings()
    with _interruptible(), ProgressDisplay(console) as display:
        options = RunOptions(parallelism, backoff_scale, progress=display.update)
        record = run_workflow(file, overrides, settings=settings, options=options)
    report(record)
    if record.phase != "Succeeded":
        raise typer.Exit(1)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Ctrl-C ends the command with 130 (the run is recorded as interrupted) and one line."""
    try:
        yield
    except KeyboardInterrupt:
        console.print("[bold red]interrupted[/]: the run is recorded as Failed; "
                      "`loopline runs retry NAME` resumes it")  # fmt: skip
        raise typer.Exit(130) from None


runs_app = new_app("The runs `loopline run` recorded: list, show, logs, retry, delete.")
RunName = Annotated[str, typer.Argument(help="the run's name (loopline runs list)")]


def _runs_root() -> Path:
    return load_settings().state_path / "runs"


@runs_app.command("list")
@reports_errors
def list_runs(output: OutputOption = Output.table) -> None:
    """List the runs, newest first: phase, start, duration, the failed node."""
    rows = [
        {
            "name": run.name,
            "phase": run.phase,
            "started": run.started.isoformat(timespec="seconds"),
            "duration_s": run.duration_s,
            "file": Path(run.file).name,
            "retries": run.retries,
            "failed": ", ".join(n.display_name for n in run.failed_nodes()) or None,
        }
        for run in runs.all_runs(_runs_root())
    ]
    if not rows and output is Output.table:
        console.print(f"no run yet under {_runs_root()}: `make demo` runs one")
        return
    emit(rows, output, title="runs (newest first)")


@runs_app.command("show")
@reports_errors
def show_run(name: RunName, output: OutputOption = Output.table) -> None:
    """Show one run: parameters, then each node's phase, duration, attempts and outputs."""
    run = runs.find_run(_runs_root(), name)
    if output is not Output.table:
        emit([run.model_dump(mode="json")], output)
        return
    console.print(f"{run.name}: {run.phase} in {run.duration_s or 0:.1f}s ({run.file})")
    if run.message:
        console.print(Text(run.message, style="red" if run.phase != "Succeeded" else ""))
    console.print("parameters: " + ", ".join(f"{k}={v}" for k, v in run.parameters.items()))
    emit(
        [
            {
                "node": node.display_name,
                "phase": node.phase,
                "duration_s": node.duration_s,
                "attempts": node.attempts or None,
                "exit_code": node.exit_code,
                "outputs": ", ".join(f"{k}={v}" for k, v in node.outputs.parameters.items()),
                "message": node.message or None,
            }
            for node in run.nodes
            if node.type != "DAG"
        ],
        output,
    )


@runs_app.command("logs")
@reports_errors
def node_logs(
    name: RunName,
    node: Annotated[str, typer.Argument(help="the node: its task name (loopline runs show)")],
    tail: Annotated[int | None, typer.Option(min=1, help="only the last N lines")] = None,
) -> None:
    """Print a node's log: the standard output and error of every attempt, in order."""
    found = runs.find_node(runs.find_run(_runs_root(), name), node)
    if found.log is None or not Path(found.log).is_file():
        raise WorkflowError(
            f"node {node!r} of run {name!r} has no log ({found.phase}: it never ran)"
        )
    lines = (
        log_tail(found, tail) if tail else Path(found.log).read_text(errors="replace").splitlines()
    )
    sys.stdout.write("".join(f"{line}\n" for line in lines))


@runs_app.command("retry")
@reports_errors
def retry_command(
    name: RunName,
    parallelism: Annotated[int, typer.Option(min=1, help="nodes run at once")] = 2,
    backoff_scale: Annotated[float, typer.Option(min=0.0, help="multiplies retry waits")] = 1.0,
) -> None:
    """Run a Failed (or interrupted) run again in place: the nodes that Succeeded keep their
    outputs, the others run (the workflow file is read again)."""
    settings = load_settings()
    earlier = runs.find_run(settings.state_path / "runs", name)
    with _interruptible(), ProgressDisplay(console) as display:
        options = RunOptions(parallelism, backoff_scale, progress=display.update)
        record = retry_run(earlier, settings=settings, options=options)
    report(record)
    if record.phase != "Succeeded":
        raise typer.Exit(1)


@runs_app.command("delete")
@reports_errors
def delete_command(
    names: Annotated[list[str] | None, typer.Argument(help="runs to delete")] = None,
    older_than: Annotated[
        str | None, typer.Option(help="also every finished run that ended longer ago: 12h, 7d")
    ] = None,
) -> None:
    """Delete runs (their records, logs and local outputs); a Running run is never deleted."""
    age = runs.older_than(older_than) if older_than else None
    deleted = runs.delete_runs(_runs_root(), names or [], age)
    console.print(f"deleted {len(deleted)} runs" + (f": {', '.join(deleted)}" if deleted else ""))


def parse_parameters(pairs: list[str]) -> dict[str, str]:
    """Turn ``-p NAME=VALUE`` options into a mapping.

    Raises:
        WorkflowError: for an option without ``=`` or with an empty name.
    """
    values: dict[str, str] = {}
    for pair in pairs:
        name, separator, value = pair.partition("=")
        if not separator or not name.strip():
            raise WorkflowError(f"-p {pair!r}: expected NAME=VALUE")
        values[name.strip()] = value
    return values


def report(record: RunRecord) -> None:
    """Print the run's outcome and what each task decided (see :mod:`steps.localrun.summary`):
    outputs of the tasks that ran, why a task was skipped, and for a failed task its exit code,
    attempts and the tail of its log.
    """
    record_path = Path(record.run_dir) / "record.json"
    style = "green" if record.phase == "Succeeded" else "bold red"
    console.print(
        Text.assemble(
            (f"{record.name} {record.phase}", style), f" in {record.duration_s or 0:.1f}s"
        )
    )
    for line in summary_lines(record):
        console.print(line)
    for child in record.children:
        console.print(Text(f"  child workflow {child.name} (from {child.node}): {child.phase}"))
    if record.phase != "Succeeded" and not record.failed_nodes() and record.message:
        console.print(Text(record.message, style="red"))
    console.print(Text(f"record: {record_path}"))


def print_features(target: Console) -> None:
    """Print the supported / ignored / rejected field table."""
    for support in Support:
        table = Table(title=f"{support.value} fields", title_justify="left", box=None)
        table.add_column("object")
        table.add_column("field")
        table.add_column("note")
        for feature in FEATURES:
            if feature.support is support:
                table.add_row(feature.scope, feature.key, Text(feature.note))
        target.print(table)
        target.print()

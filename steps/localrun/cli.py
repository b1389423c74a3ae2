"""``loopline run FILE [-p name=value ...]``: run rendered Argo Workflow YAML on this machine.

The run ends with what each task decided (:mod:`steps.localrun.summary`). Exit codes: 0 when the
run Succeeded, 1 when it Failed (the failed task's exit code, attempts and log tail are printed),
2 when the file cannot be run as written (field and line named) or a parameter is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from steps.core.cli_support import console, reports_errors
from steps.core.errors import WorkflowError
from steps.core.settings import load_settings
from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.features import FEATURES, Support
from steps.localrun.progress import ProgressDisplay
from steps.localrun.record import RunRecord
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
    with ProgressDisplay(console) as display:
        options = RunOptions(parallelism, backoff_scale, progress=display.update)
        record = run_workflow(file, overrides, settings=settings, options=options)
    report(record)
    if record.phase != "Succeeded":
        raise typer.Exit(1)


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

"""The ``loopline`` command: one entry point over every step and operator command.

Each step's own command (``python -m steps.<name>``) is mounted here under its name; the
``loopline model`` commands inspect the registry and move the champion by hand; the
``loopline canary`` commands are the on-call engineer's (status, promote, abort, rollback).
"""

from __future__ import annotations

from datetime import UTC, datetime
from importlib.metadata import version as package_version
from typing import Annotated

import typer

from steps import (
    build,
    containerize,
    data,
    demo,
    deploy,
    drift,
    evaluate,
    promote,
    register,
    train,
)
from steps.core import names
from steps.core.cli_support import Output, OutputOption, console, emit, new_app, reports_errors
from steps.core.settings import load_settings
from steps.io import tracking
from steps.io.registry import Registry, registered_models
from steps.localrun.cli import run_command, runs_app
from steps.platform.stack_cli import stack_app

app = new_app(
    "Loopline: retrain, ship and guard tabular models with Argo Workflows.", completion=True
)
model_app = new_app("Inspect registered models and move the champion alias.")

app.command("demo")(demo.demo)
app.command("train")(train.main)
app.command("evaluate")(evaluate.main)
app.command("register")(register.main)
app.command("build")(build.main)
app.command("containerize")(containerize.main)
app.command("deploy")(deploy.main)
app.command("promote")(promote.main)
app.command("drift")(drift.main)
app.add_typer(data.app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(promote.canary_app, name="canary")
app.command("run")(run_command)
app.add_typer(runs_app, name="runs")
app.add_typer(stack_app, name="stack")


def _print_version(asked: bool) -> None:
    if asked:
        console.print(f"loopline {package_version('loopline')}", highlight=False)
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="print the version and exit"
        ),
    ] = False,
) -> None:
    """Loopline: retrain, ship and guard tabular models with Argo Workflows."""


@model_app.command("promote")
@reports_errors
def promote_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version to make champion")],
) -> None:
    """Move the champion alias to VERSION (the previous one becomes previous_champion)."""
    result = register.promote(load_settings(), name, version)
    before = f"v{result.previous_champion}" if result.previous_champion else "none"
    console.print(f"{name}: champion {before} -> v{result.champion}")


@model_app.command("prune")
@reports_errors
def prune_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    keep: Annotated[int, typer.Option(help="newest versions kept besides the aliased ones")] = 5,
    dry_run: Annotated[bool, typer.Option(help="only say what would be deleted")] = False,
) -> None:
    """Delete old versions of NAME (never one an alias points at) and their local bentos."""
    result = register.prune(load_settings(), name, keep, dry_run)
    verb = "would delete" if dry_run else "deleted"
    deleted = ", ".join(f"v{v}" for v in result.deleted) or "nothing"
    console.print(f"{name}: {verb} {deleted}; kept {', '.join(f'v{v}' for v in result.kept)}")
    if result.bentos_deleted:
        console.print(f"bentos deleted: {', '.join(result.bentos_deleted)}")


@model_app.command("list")
@reports_errors
def list_command(output: OutputOption = Output.table) -> None:
    """List the registered models: versions, aliases, the champion's metric and image."""
    settings = load_settings()
    tracking.connect(settings)
    rows = []
    for name in registered_models():
        registry = Registry(name)
        versions = registry.all_versions()
        aliases = registry.aliases()
        latest = versions[-1] if versions else None
        rows.append(
            {
                "model": name,
                "versions": len(versions),
                "latest": str(latest.version) if latest else None,
                "aliases": ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())),
            }
        )
    if not rows and output is Output.table:
        console.print("no registered model yet: `make demo` registers one")
        return
    emit(rows, output, title="registered models")


@model_app.command("show")
@reports_errors
def show_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    output: OutputOption = Output.table,
) -> None:
    """List the versions of NAME: aliases, model kind, held-out metric, data hash, date, image."""
    settings = load_settings()
    tracking.connect(settings)
    registry = Registry(name)
    registry.require()
    aliases = registry.aliases()
    metric = f"holdout_{settings.gate.metric}"
    rows = [
        {
            "version": str(version.version),
            "aliases": ", ".join(
                sorted(a for a, v in aliases.items() if v == str(version.version))
            ),
            "kind": version.tags.get("model_kind"),
            metric: _run_metric(version.run_id, metric),
            "data_hash": str(version.tags.get("data_hash", ""))[:12] or None,
            "created": datetime.fromtimestamp(version.creation_timestamp / 1000, UTC).isoformat(
                timespec="seconds"
            ),
            "pipeline_run": version.tags.get("pipeline_run"),
            "run_id": version.run_id,
            "image": version.tags.get(names.IMAGE_REF_TAG),
        }
        for version in registry.all_versions()
    ]
    if output is Output.table:  # the full run id and image reference are in -o json|yaml
        for row in rows:
            row["created"] = str(row["created"])[:16].replace("T", " ")
            row["run_id"] = str(row["run_id"])[:8]
            if row["image"]:
                reference, _, digest = str(row["image"]).partition("@")
                row["image"] = f"{reference.rsplit('/', 1)[-1]}@{digest[:19]}"
    emit(rows, output, title=f"{name}: {len(rows)} versions (-o json for every field in full)")


def _run_metric(run_id: str, metric: str) -> float | None:
    from mlflow.tracking import MlflowClient

    value = MlflowClient().get_run(run_id).data.metrics.get(metric)
    return None if value is None else round(float(value), 4)

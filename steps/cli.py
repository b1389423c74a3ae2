"""The ``loopline`` command: one entry point over every step and operator command.

Each step's own command (``python -m steps.<name>``) is mounted here under its name; the
``loopline model`` commands inspect the registry and move the champion by hand; the
``loopline canary`` commands are the on-call engineer's (status, promote, abort, rollback).
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.table import Table

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
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import RegistryError
from steps.core.settings import load_settings
from steps.io import tracking
from steps.io.registry import Registry
from steps.localrun.cli import run_command
from steps.platform.stack_cli import stack_app

app = new_app("Loopline: retrain, ship and guard tabular models with Argo Workflows.")
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
app.add_typer(stack_app, name="stack")


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


@model_app.command("show")
@reports_errors
def show_command(name: Annotated[str, typer.Argument(help="registered model name")]) -> None:
    """List the versions of NAME with their aliases and lineage."""
    tracking.connect(load_settings())
    registry = Registry(name)
    versions = registry.all_versions()
    if not versions:
        raise RegistryError(f"model {name!r} not found or has no versions")
    aliases = registry.aliases()
    table = Table("version", "aliases", "kind", "data hash", "pipeline run")
    table.add_column("run id", no_wrap=True, min_width=32)
    for version in versions:
        labels = sorted(a for a, v in aliases.items() if v == str(version.version))
        table.add_row(
            str(version.version),
            ", ".join(labels),
            str(version.tags.get("model_kind", "")),
            str(version.tags.get("data_hash", ""))[:12],
            str(version.tags.get("pipeline_run", "")),
            str(version.run_id),
        )
    console.print(table)
    console.print(f"aliases: {', '.join(f'{a} -> v{v}' for a, v in sorted(aliases.items()))}")

"""``loopline demo``: the one-machine quick start.

Generates the demo churn data set if it is not there yet, then trains, evaluates and registers a
model in the embedded (SQLite) MLflow, and prints what was registered and how to look at it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from steps import evaluate, register, tracking, train
from steps.cli_support import console, reports_errors
from steps.data import generate_churn
from steps.settings import Settings, load_settings

DEMO_ROWS = 20_000


def demo_data(settings: Settings, rows: int) -> Path:
    """Return the demo data path under the state directory, generating it if missing."""
    path = settings.state_path / "data" / f"churn-{rows}-seed{settings.seed}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_churn(path, rows=rows, seed=settings.seed)
    return path


@reports_errors
def demo(
    rows: Annotated[int, typer.Option(help="rows of generated demo data")] = DEMO_ROWS,
) -> None:
    """Generate demo data if needed, then train, evaluate and register a model."""
    base = load_settings()
    data_uri = base.data.uri or str(demo_data(base, rows))
    settings = load_settings(data={"uri": data_uri})
    trained = train.run(settings, pipeline_run="demo")
    console.print(
        f"trained {trained.model_kind}: run {trained.run_id}, "
        f"holdout ROC AUC {trained.metrics['holdout_roc_auc']:.4f}"
    )
    evaluation, verdict = evaluate.run(settings, trained.run_id)
    colour = "green" if verdict.promote else "red"
    console.print(f"[bold {colour}]{evaluation.decision}[/]: " + "; ".join(evaluation.reasons))
    console.print(f"evaluation report: {evaluation.report_uri}/report.html")
    if not verdict.promote:
        console.print("nothing registered: the challenger did not pass the gate")
        raise typer.Exit(3)
    registered = register.run(settings, trained.run_id, pipeline_run="demo")
    console.print(
        f"[bold]registered {registered.model_name} v{registered.model_version}[/] "
        f"(aliases: {', '.join(registered.aliases)})"
    )
    if registered.champion_set:
        console.print(f"no champion existed: v{registered.model_version} is now champion")
    console.print(f"MLflow UI: {tracking.ui_command(settings)}")

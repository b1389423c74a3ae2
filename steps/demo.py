"""``loopline demo``: the one-machine quick start.

Generates the demo churn data set if it is not there yet, brings the local serving stand-in up
(``loopline stack``: what the workflow's ``deploy`` task deploys to), then runs the rendered
retrain workflow (``argo/retrain-submit.yaml``) with the local runner, exactly as ``argo submit``
would on a cluster, and prints what was registered, built and deployed and how to look at it.
The stack is stopped at the end unless ``--keep-stack``; its desired state (the version on each
track, the weights) stays under ``.loopline/stack/`` for the next run or ``loopline stack up``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from steps.core.cli_support import console, reports_errors
from steps.core.errors import LooplineError
from steps.core.settings import Settings, load_settings
from steps.io import tracking
from steps.localrun.cli import report
from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.progress import ProgressDisplay
from steps.localrun.record import RunRecord
from steps.platform.base import Release, Served

DEMO_ROWS = 20_000
WORKFLOW = Path(__file__).resolve().parents[1] / "argo" / "retrain-submit.yaml"
# Retry backoff on a laptop: a tenth of the cluster's waits.
BACKOFF_SCALE = 0.1


def demo_data(settings: Settings, rows: int) -> Path:
    """Return the demo data path under the state directory, generating it if missing."""
    from steps.ml.synthetic import generate_churn

    path = settings.state_path / "data" / f"churn-{rows}-seed{settings.seed}.parquet"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate_churn(path, rows=rows, seed=settings.seed)
    return path


def summary(record: RunRecord, settings: Settings, served: Served | None = None) -> Table:
    """Return a table of what the run registered, built and deployed, read from its node
    outputs, and (given ``served``) what the local stack serves on each track."""
    table = Table(title=f"{record.name}: {record.phase}", title_justify="left")
    table.add_column("what", no_wrap=True)
    table.add_column("value", overflow="fold")
    outputs = {node.display_name: node.outputs.parameters for node in record.nodes}
    rows = [
        ("MLflow run", outputs.get("train", {}).get("run_id")),
        ("gate", outputs.get("evaluate", {}).get("decision")),
        ("gate reasons", outputs.get("evaluate", {}).get("reasons")),
        ("evaluation report", _report_page(outputs.get("evaluate", {}).get("report_uri"))),
        ("registered", _registered(outputs.get("register", {}), settings)),
        ("bento", outputs.get("build", {}).get("bento_tag")),
        ("bento archive", outputs.get("build", {}).get("archive_uri")),
        ("image", _image(outputs.get("containerize", {}))),
        ("deployed", _deployed(outputs.get("deploy", {}))),
        ("canary", _canary(outputs.get("promote", {}))),
        ("canary analysis", _analysis_page(outputs.get("promote", {}))),
        *_stack_rows(settings, served),
        ("champion", _champion(settings)),
        ("next", _next_step(outputs, settings)),
        ("run record", str(Path(record.run_dir) / "record.json")),
        ("MLflow UI", tracking.ui_command(settings)),
    ]
    for what, value in rows:
        table.add_row(what, value or "-")
    return table


def _next_step(outputs: dict[str, dict[str, str]], settings: Settings) -> str:
    """What to do after this run, from how far it got."""
    name = settings.model_name
    decision = outputs.get("evaluate", {}).get("decision")
    outcome = outputs.get("promote", {}).get("outcome")
    if decision == "reject":
        return "the gate kept the champion: read the evaluation report above; nothing shipped"
    if outcome == "promoted":
        return (
            f"`make serve` serves the champion; `loopline model show {name}`; run `make demo` "
            "again for a new challenger through the canary"
        )
    if outcome == "rolled_back":
        return "the canary was rolled back: read the canary analysis above; stable is unchanged"
    if decision == "promote":
        return (
            f"the challenger is registered but not serving: `loopline model promote {name} "
            "VERSION`, or `loopline canary promote VERSION` with the stack up"
        )
    return "the run stopped early: `loopline runs show NAME` names the failed node"


def _deployed(outputs: dict[str, str]) -> str | None:
    if "track" not in outputs:
        return None
    return f"on {outputs['track']}, canary weight {outputs['canary_weight']}%"


def _canary(outputs: dict[str, str]) -> str | None:
    if "outcome" not in outputs:
        return None
    first_reason = outputs["reasons"].split("; ")[0]
    return f"{outputs['outcome']} (canary reached {outputs['final_weight']}%): {first_reason}"


def _analysis_page(outputs: dict[str, str]) -> str | None:
    uri = outputs.get("report_uri")
    return f"{uri}/analysis.html" if uri else None


def _stack_rows(settings: Settings, served: Served | None) -> list[tuple[str, str | None]]:
    from steps.platform.local.prometheus import base_url

    if served is None:
        return []

    def describe(release: Release | None) -> str:
        return f"{release.model_name} v{release.version}" if release else "nothing"

    weights = served.weights
    stack = settings.stack
    return [
        ("stable track", describe(served.stable)),
        ("canary track", describe(served.canary)),
        ("weights", f"stable {weights.stable}% / canary {weights.canary}%"),
        ("router", f"http://{stack.host}:{stack.router_port}"),
        ("Prometheus", base_url(stack)),
    ]


def _champion(settings: Settings) -> str | None:
    from steps.core import names
    from steps.io.registry import Registry

    try:
        tracking.connect(settings)
        champion = Registry(settings.model_name).alias_version(names.CHAMPION)
    except LooplineError:
        return None
    return f"{settings.model_name} v{champion}" if champion else "none yet"


def _image(outputs: dict[str, str]) -> str | None:
    ref = outputs.get("image_ref")
    return f"{ref} (smoke-tested, pushed)" if ref else None


def _report_page(uri: str | None) -> str | None:
    return f"{uri}/report.html" if uri else None


def _registered(outputs: dict[str, str], settings: Settings) -> str | None:
    if "model_version" not in outputs:
        return None
    return f"{settings.model_name} v{outputs['model_version']} (alias challenger)"


@reports_errors
def demo(
    rows: Annotated[int, typer.Option(help="rows of generated demo data")] = DEMO_ROWS,
    keep_stack: Annotated[
        bool, typer.Option(help="leave the local serving stack running afterwards")
    ] = False,
) -> None:
    """Generate demo data if needed, bring the local serving stack up, run the rendered retrain
    workflow locally (its deploy task deploys to that stack), then stop the stack."""
    from steps.platform.local import LocalPlatform

    settings = load_settings()
    data_uri = settings.data.uri or str(demo_data(settings, rows))
    # Each demo run trains with the next seed: the same data, a slightly different model, so a
    # second run has a real challenger for the canary (an identical retrain is not registered).
    seed = settings.seed + len(list((settings.state_path / "runs").glob("retrain-*")))
    stack = LocalPlatform(settings)
    console.print("starting the local serving stack (router, Prometheus, the served tracks)")
    stack.up()
    try:
        console.print(
            f"running {WORKFLOW.relative_to(WORKFLOW.parents[1])} on {data_uri}, seed {seed}"
        )
        with ProgressDisplay(console) as display:
            options = RunOptions(backoff_scale=BACKOFF_SCALE, progress=display.update)
            parameters = {"data-uri": data_uri, "seed": str(seed)}
            record = run_workflow(WORKFLOW, parameters, settings=settings, options=options)
        if keep_stack:
            stack.up()  # traffic starts once a track serves a model
    finally:
        if not keep_stack:
            stack.down()
    console.print(summary(record, settings, stack.served()))
    if not keep_stack:
        console.print("the serving stack is stopped; `loopline stack up` restores it as shown")
    if record.phase != "Succeeded":
        report(record)  # each task's outcome, the failed one's exit code and log tail
        raise typer.Exit(1)

"""The data step's command line: ``python -m steps.data`` (``loopline data``).

``generate`` writes the seeded synthetic churn data (:mod:`steps.ml.synthetic`), optionally with
a drift scenario; ``inspect`` loads a table as training would (:mod:`steps.ml.dataset`) and
summarises it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from steps.core.cli_support import RedactingConsole, new_app, reports_errors
from steps.core.errors import ConfigError
from steps.core.outputs import write_outputs, write_result
from steps.core.settings import load_settings
from steps.ml.dataset import load_dataset
from steps.ml.synthetic import DEFAULT_SHIFT_FEATURES, SCENARIOS, generate_churn

app = new_app("Make synthetic churn data and inspect data sets.")
_GENERATE_HELP = (
    "Write seeded synthetic churn data, optionally with a drift scenario:\n\n"
    + "\n\n".join(f"{name}: {text}" for name, text in SCENARIOS.items())
)


@app.command(help=_GENERATE_HELP)
@reports_errors
def generate(
    path: Annotated[Path, typer.Argument(help="output .parquet, .pq, .csv or .csv.gz")],
    rows: Annotated[int, typer.Option(min=1, help="number of rows")] = 50_000,
    seed: Annotated[int | None, typer.Option(help="default: the LOOPLINE_SEED setting")] = None,
    scenario: Annotated[str, typer.Option(help=f"one of {', '.join(SCENARIOS)}")] = "none",
    shift_sigma: Annotated[
        float | None, typer.Option(help="covariate only: shift in std-devs (default 1.0)")
    ] = None,
    shift_features: Annotated[
        str | None,
        typer.Option(
            help=f"covariate only, comma-separated (default {','.join(DEFAULT_SHIFT_FEATURES)})"
        ),
    ] = None,
    extra_features: Annotated[
        int, typer.Option(min=0, help="extra standard-normal columns extra_01... (no signal)")
    ] = 0,
    chunk_rows: Annotated[int, typer.Option(min=1, help="rows per written chunk")] = 200_000,
    out_dir: Annotated[
        Path | None, typer.Option(help="write outputs data_uri, rows and result.json here")
    ] = None,
) -> None:
    """Write seeded synthetic churn data (help text: ``_GENERATE_HELP``)."""
    if scenario != "covariate" and (shift_sigma is not None or shift_features is not None):
        raise ConfigError(
            f"--shift-sigma and --shift-features need --scenario covariate, not {scenario!r}"
        )
    features: tuple[str, ...] = DEFAULT_SHIFT_FEATURES
    if shift_features is not None:
        features = tuple(name.strip() for name in shift_features.split(",") if name.strip())
    result = generate_churn(
        path,
        rows,
        seed=load_settings().seed if seed is None else seed,
        scenario=scenario,
        chunk_rows=chunk_rows,
        shift_sigma=1.0 if shift_sigma is None else shift_sigma,
        shift_features=features,
        extra_features=extra_features,
    )
    if out_dir is not None:
        write_outputs(out_dir, "data", {"data_uri": str(path.resolve()), "rows": result.rows})
        write_result(out_dir, result)
    RedactingConsole().print(
        f"wrote {result.rows:,} rows to {path} ({result.scenario}, "
        f"{result.positive_share:.1%} churned) in {result.seconds:.1f} s"
    )


@app.command("inspect")
@reports_errors
def inspect_command(
    uri: Annotated[str, typer.Argument(help="CSV/Parquet path, Parquet directory or s3:// URI")],
    target: Annotated[str | None, typer.Option(help="default: LOOPLINE_DATA__TARGET")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON for machines")] = False,
) -> None:
    """Load a data set as training would and summarise it."""
    settings = load_settings(data={"target": target} if target else None)
    data = settings.data
    dataset = load_dataset(uri, data.target, data.features, data.id_columns, settings.s3)
    summary = {
        "source": dataset.source,
        "rows": dataset.n_rows,
        "target": dataset.target,
        "class_balance": round(dataset.class_balance, 6),
        "dropped_missing_target": dataset.dropped_missing_target,
        "numeric": list(dataset.numeric),
        "categorical": list(dataset.categorical),
        "content_hash": dataset.content_hash,
    }
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    table = Table(title=dataset.source, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for name, value in summary.items():
        table.add_row(name, ", ".join(value) if isinstance(value, list) else f"{value}")
    RedactingConsole().print(table)


if __name__ == "__main__":
    app()

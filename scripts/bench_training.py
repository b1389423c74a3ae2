"""Training quality before/after early stopping, on the demo data and two public tables.

``make bench-training`` prints, per table and recipe, the held-out ROC AUC, PR AUC, Brier score,
the rounds kept and the fitting time, with the project's own code path (:mod:`steps.ml.holdout`
split, :func:`steps.holdout.carve_validation`, :func:`steps.ml.estimators.fit`). Recipes:

* ``before``: the earlier defaults, 200 trees of depth 6, learning rate 0.1, no early stopping;
* ``after``: today's defaults (at most 1,000 trees of depth 4, learning rate 0.05, early stopping
  after 50 rounds without a better validation log loss);
* ``after+balanced``: the same with ``class_weight=balanced`` (positives weighted by
  negatives/positives).

Public tables: ``Caravan`` (5,822 rows, 85 features, 6 % positive: small, wide, imbalanced) and
``Default`` (10,000 rows, 3.3 % positive), from the data files shipped in the ``ISLP`` wheel on
PyPI (the book "An Introduction to Statistical Learning"), fetched once with its sha256 checked
and cached under ``.loopline/bench/``. Results go to ``.loopline/bench/training.json``.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import urllib.request
import zipfile
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from steps.core.cli_support import new_app, reports_errors
from steps.core.errors import DataError

REPO = Path(__file__).resolve().parents[1]
CACHE = REPO / ".loopline" / "bench"
ISLP_WHEEL = "islp-0.6.0-py3-none-any.whl"
ISLP_SHA256 = "ca772cecca1747a2f84ee799a5503ddddbdf0e98f90c235494790c1d036c694b"
PUBLIC_TABLES = {"Caravan": "Purchase", "Default": "default"}

app = new_app("Measure held-out quality of the training defaults on demo and public tables.")


def public_table(name: str, cache: Path) -> Path:
    """Return the CSV of ISLP table ``name``, fetching the wheel from PyPI once.

    Raises:
        DataError: when the wheel cannot be fetched or its sha256 differs.
    """
    target = cache / f"{name}.csv"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    wheel = cache / ISLP_WHEEL
    if not wheel.exists():
        index = urllib.request.Request(
            "https://pypi.org/simple/islp/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
        )
        try:
            with urllib.request.urlopen(index, timeout=60) as response:  # noqa: S310
                files = json.load(response)["files"]
            url = next(f["url"] for f in files if f["filename"] == ISLP_WHEEL)
            with urllib.request.urlopen(url, timeout=300) as response:  # noqa: S310
                payload = response.read()
        except (OSError, StopIteration, KeyError, ValueError) as err:
            raise DataError(f"cannot fetch {ISLP_WHEEL} from PyPI: {err}") from err
        if hashlib.sha256(payload).hexdigest() != ISLP_SHA256:
            raise DataError(f"{ISLP_WHEEL}: sha256 differs from {ISLP_SHA256}")
        wheel.write_bytes(payload)
    with zipfile.ZipFile(io.BytesIO(wheel.read_bytes())) as archive:
        target.write_bytes(archive.read(f"ISLP/data/{name}.csv"))
    return target


def measure(uri: str, target: str, recipe: str, seed: int) -> dict[str, Any]:
    """Fit one recipe on one table the way the train step does; return held-out figures."""
    from steps.core.settings import DataSettings, TrainSettings
    from steps.ml import estimators, holdout
    from steps.ml.dataset import encode, fit_spec, load_dataset
    from steps.ml.metrics import classification_metrics

    params = {
        "before": TrainSettings(
            n_estimators=200, max_depth=6, learning_rate=0.1, early_stopping_rounds=0
        ),
        "after": TrainSettings(),
        "after+balanced": TrainSettings(class_weight="balanced"),
    }[recipe]
    dataset = load_dataset(uri, target)
    split = holdout.split(dataset, DataSettings(), params.test_size)
    spec = fit_spec(dataset, split.train)
    fit_rows, validation_rows = holdout.carve_validation(split.train, target, params, seed)
    validation = (
        None
        if validation_rows is None
        else estimators.Validation(
            encode(spec, validation_rows), validation_rows[target].to_numpy()
        )
    )
    started = time.perf_counter()
    model = estimators.fit(
        "xgboost",
        encode(spec, fit_rows),
        fit_rows[target].to_numpy(),
        spec,
        params,
        seed,
        validation=validation,
    )
    seconds = time.perf_counter() - started
    probability = model.positive_probability(encode(spec, split.holdout))
    metrics = classification_metrics(split.holdout[target].to_numpy(), probability)
    return {
        "table": Path(uri).stem,
        "recipe": recipe,
        "rows": dataset.n_rows,
        "features": len(dataset.features),
        "positive_share": round(dataset.class_balance, 4),
        "holdout": split.how,
        "rounds": model.history.best_iteration if model.history else params.n_estimators,
        "roc_auc": round(metrics["roc_auc"], 4),
        "pr_auc": round(metrics["pr_auc"], 4),
        "brier": round(metrics["brier"], 4),
        "fit_seconds": round(seconds, 2),
    }


@app.command()
@reports_errors
def main(
    seed: Annotated[int, typer.Option(help="seed of the validation split and the model")] = 42,
    demo_rows: Annotated[int, typer.Option(min=1_000, help="rows of generated demo data")] = 20_000,
) -> None:
    """Print held-out quality per table and recipe; write .loopline/bench/training.json."""
    from steps.ml.synthetic import generate_churn

    demo = CACHE / f"churn-{demo_rows}-seed{seed}.parquet"
    if not demo.exists():
        demo.parent.mkdir(parents=True, exist_ok=True)
        generate_churn(demo, rows=demo_rows, seed=seed)
    tables = {str(demo): "churned"}
    tables.update({str(public_table(n, CACHE)): t for n, t in PUBLIC_TABLES.items()})
    console = Console()
    results = []
    for uri, target in tables.items():
        for recipe in ("before", "after", "after+balanced"):
            with console.status(f"{Path(uri).stem}: {recipe}"):
                results.append(measure(uri, target, recipe, seed))
    table = Table(title=f"held-out quality (seed {seed})")
    for column in ("table", "recipe", "rows", "positive_share", "rounds", "roc_auc", "pr_auc"):
        table.add_column(column, justify="right")
    table.add_column("brier", justify="right")
    table.add_column("fit s", justify="right")
    for row in results:
        table.add_row(
            *(str(row[c]) for c in ("table", "recipe", "rows", "positive_share", "rounds")),
            *(f"{row[c]:.4f}" for c in ("roc_auc", "pr_auc", "brier")),
            f"{row['fit_seconds']:.2f}",
        )
    console.print(table)
    out = CACHE / "training.json"
    out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {out}")


if __name__ == "__main__":
    app()

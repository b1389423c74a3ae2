"""Benchmark the drift check on inference logs of 100k, 1M and 10M rows x 20 features.

Usage::

    python -m scripts.bench_drift run                  # 100k, 1M and 10M (make bench-drift)
    python -m scripts.bench_drift run --sizes 100k,1M  # a quicker subset

For each size two logs are generated in the serving layout (``serving.inference_log``'s
schema, 250k-row Parquet parts over one day) and cached under ``.bench/drift/logs/``: a
*stable* one drawn from the reference distribution and a *shifted* one where 3 of the 20
features (``monthly_charges``, ``data_usage_gb``, ``support_calls``) move by 0.3 reference
standard deviations. The 20 features are churn's 8 numeric and 4 categorical ones plus 8
standard-normal extras; ``prediction`` is a fixed logistic score of a few of them. The
reference is 5,000 rows (the train step's default ``reference_rows``).

Each check runs in a child process (``check``) that reads the window with
:func:`steps.monitor.window.read_window`, scores it with :func:`steps.monitor.measure.measure`,
decides with :func:`steps.monitor.policy.decide` and writes the HTML report: the same code path as
``loopline drift`` minus MLflow. The child reports its own seconds and peak RSS
(``getrusage(RUSAGE_SELF).ru_maxrss``, Evidently's import included; the seconds exclude the
one-time ~16 s import). A check is *right* when the shifted log flags exactly the 3 shifted
features and the stable log flags no feature. Results go to ``reports/bench-drift.{md,json}``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from serving.features import FeatureSpec
from serving.inference_log import arrow_schema, part_path
from steps.core.cli_support import new_app
from steps.ml.synthetic import CATEGORIES, DEFAULT_SHIFT_FEATURES, NUMERIC_FEATURES, churn_frame

MODEL = "bench"
VERSION = "1"
EXTRA_FEATURES = 8
NUMERIC = (*NUMERIC_FEATURES, *(f"extra_{i:02d}" for i in range(1, EXTRA_FEATURES + 1)))
CATEGORICAL = tuple(CATEGORIES)
SHIFTED = DEFAULT_SHIFT_FEATURES
SIZES = {"100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}
CHUNK_ROWS = 250_000
END = datetime(2026, 1, 2, tzinfo=UTC)
SPAN = timedelta(days=1)
TARGET_ROWS, TARGET_S, TARGET_RSS_MB = 1_000_000, 30.0, 1024.0
console = Console(highlight=False, width=150)


@dataclass(frozen=True)
class LogRecipe:
    """One generated log: its size, whether it is shifted, and the seed."""

    rows: int
    shift_sigma: float
    seed: int

    @property
    def name(self) -> str:
        kind = f"shift{self.shift_sigma:g}" if self.shift_sigma else "stable"
        return f"{self.rows}-{kind}-seed{self.seed}"


@dataclass(frozen=True)
class CheckResult:
    """What one child process measured."""

    rows: int
    sampled: int
    read_s: float
    test_s: float
    total_s: float
    import_s: float
    peak_rss_mb: float
    drifted_features: list[str]
    prediction_drifted: bool | None
    drifted: bool
    scores: dict[str, float]


def feature_spec() -> FeatureSpec:
    """The bench model's feature contract (only its schema is used)."""
    return FeatureSpec.fit(target="churned", numeric=NUMERIC, categories=CATEGORIES)


def bench_prediction(frame: pd.DataFrame) -> np.ndarray:
    """A fixed logistic churn score standing in for the model's P(churn)."""
    logit = (
        -1.5
        + 0.02 * (frame["monthly_charges"].fillna(65.0) - 65.0)
        + 0.3 * frame["support_calls"]
        - 0.03 * frame["tenure_months"]
        + 1.0 * (frame["contract"] == "month-to-month")
    )
    return np.asarray(1.0 / (1.0 + np.exp(-logit)), dtype=np.float64)


def frame_for(rows: int, seed: int, shift_sigma: float) -> pd.DataFrame:
    """Churn rows with the 8 extras, shifted when ``shift_sigma`` is non-zero."""
    scenario = "covariate" if shift_sigma else "none"
    frame = churn_frame(
        rows,
        seed=seed,
        scenario=scenario,
        shift_sigma=shift_sigma or 1.0,
        shift_features=SHIFTED,
        extra_features=EXTRA_FEATURES,
    )
    frame = frame.astype({name: "float64" for name in NUMERIC})
    frame["prediction"] = bench_prediction(frame)
    return frame


def log_table(frame: pd.DataFrame, first_row: int, total_rows: int, schema: pa.Schema) -> pa.Table:
    """Rows ``first_row...`` of a log spread evenly over the day before :data:`END`."""
    count = len(frame)
    index = np.arange(first_row, first_row + count)
    start_ms = int((END - SPAN).timestamp() * 1000)
    stamps = start_ms + (index * (SPAN.total_seconds() * 1000 / total_rows)).astype(np.int64)
    columns: dict[str, pa.Array] = {
        "row_id": pa.array(index).cast(pa.string()),
        "timestamp": pa.array(stamps, pa.timestamp("ms", "UTC")),
        "model_name": pa.array([MODEL]).take(np.zeros(count, dtype=np.int64)),
        "model_version": pa.array([VERSION]).take(np.zeros(count, dtype=np.int64)),
        "prediction": pa.array(frame["prediction"].to_numpy()),
    }
    for name in NUMERIC:
        columns[name] = pa.array(frame[name], pa.float64(), from_pandas=True)
    for name in CATEGORICAL:
        columns[name] = pa.array(frame[name], pa.string(), from_pandas=True)
    return pa.table(columns, schema=schema)


def generate_log(root: Path, recipe: LogRecipe, progress: Progress) -> Path:
    """Write (or reuse) the log for ``recipe`` under ``root``; return its ``log_uri``."""
    log_dir = root / "logs" / recipe.name
    marker = log_dir / "recipe.json"
    task = progress.add_task(f"log {recipe.name}", total=recipe.rows)
    if marker.exists() and json.loads(marker.read_text()) == asdict(recipe):
        progress.update(task, completed=recipe.rows, description=f"log {recipe.name} (cached)")
        return log_dir
    day = (END - SPAN).date().isoformat()
    folder = (log_dir / part_path(MODEL, day, 0, "x")).parent
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.parquet"):
        stale.unlink()
    schema = arrow_schema(feature_spec())
    for chunk, first in enumerate(range(0, recipe.rows, CHUNK_ROWS)):
        count = min(CHUNK_ROWS, recipe.rows - first)
        frame = frame_for(count, recipe.seed * 100_000 + chunk, recipe.shift_sigma)
        table = log_table(frame, first, recipe.rows, schema)
        epoch_ms = table.column("timestamp")[0].value
        pq.write_table(table, log_dir / part_path(MODEL, day, epoch_ms, f"{chunk:08x}"))
        progress.advance(task, count)
    marker.write_text(json.dumps(asdict(recipe)))
    return log_dir


def reference_file(root: Path, rows: int) -> Path:
    """The reference sample (features and prediction) as Parquet, cached."""
    path = root / f"reference-{rows}.parquet"
    if not path.exists():
        root.mkdir(parents=True, exist_ok=True)
        frame_for(rows, seed=1, shift_sigma=0.0).to_parquet(path, index=False)
    return path


def run_check(log_dir: Path, reference: Path, options: list[str]) -> CheckResult:
    """Run one check in a child process and return what it measured.

    Raises:
        RuntimeError: when the child fails (its stderr is in the message).
    """
    command = [sys.executable, "-m", "scripts.bench_drift", "check", str(log_dir), str(reference)]
    completed = subprocess.run(
        [*command, *options], capture_output=True, text=True, timeout=3600, check=False
    )
    if completed.returncode != 0:
        raise RuntimeError(f"check of {log_dir} failed:\n{completed.stderr[-3000:]}")
    return CheckResult(**json.loads(completed.stdout.strip().splitlines()[-1]))


app = new_app("Benchmark the drift check on generated inference logs.")


@app.command()
def run(
    sizes: Annotated[str, typer.Option(help="comma-separated: 100k, 1M, 10M")] = "100k,1M,10M",
    bench_dir: Annotated[Path, typer.Option(help="cache of generated logs")] = Path(".bench/drift"),
    report: Annotated[Path, typer.Option(help="markdown report; .json beside it")] = Path(
        "reports/bench-drift.md"
    ),
    shift_sigma: Annotated[float, typer.Option(help="shift of the 3 features")] = 0.3,
    reference_rows: Annotated[int, typer.Option(help="reference sample rows")] = 5_000,
    sample_cap: Annotated[int, typer.Option(help="LOOPLINE_DRIFT__SAMPLE_CAP")] = 50_000,
    numeric_method: Annotated[str, typer.Option(help="'' for Evidently's default")] = "",
    drift_share: Annotated[float, typer.Option(help="policy: 3 of 20 is 0.15")] = 0.15,
) -> None:
    """Generate (or reuse) the logs, time the check on each, print and write the table."""
    unknown = [size for size in sizes.split(",") if size not in SIZES]
    if unknown:
        raise typer.BadParameter(f"unknown size(s) {unknown}; expected {', '.join(SIZES)}")
    chosen = [(size, SIZES[size]) for size in sizes.split(",")]
    reference = reference_file(bench_dir, reference_rows)
    with _progress() as progress:
        logs = {
            (size, shifted): generate_log(
                bench_dir, LogRecipe(rows, shift_sigma if shifted else 0.0, seed=2), progress
            )
            for size, rows in chosen
            for shifted in (True, False)
        }
    options = ["--sample-cap", str(sample_cap), "--drift-share", str(drift_share)]
    if numeric_method:
        options += ["--numeric-method", numeric_method]
    results: dict[str, dict[str, CheckResult]] = {}
    with _progress() as progress:
        task = progress.add_task("drift checks", total=len(logs))
        for (size, shifted), log_dir in logs.items():
            label = "shifted" if shifted else "stable"
            progress.update(task, description=f"check {size} {label}")
            results.setdefault(size, {})[label] = run_check(log_dir, reference, options)
            progress.advance(task)
    rows = [_summary(size, checks) for size, checks in results.items()]
    config = {
        "features": len(NUMERIC) + len(CATEGORICAL),
        "shifted": list(SHIFTED),
        "shift_sigma": shift_sigma,
        "reference_rows": reference_rows,
        "sample_cap": sample_cap,
        "numeric_method": numeric_method or "evidently default",
        "drift_share": drift_share,
    }
    _print(rows, config)
    _write(report, rows, config, results)


@app.command(hidden=True)
def check(
    log_dir: Path,
    reference: Path,
    sample_cap: Annotated[int, typer.Option()] = 50_000,
    drift_share: Annotated[float, typer.Option()] = 0.15,
    numeric_method: Annotated[str | None, typer.Option()] = None,
    seed: Annotated[int, typer.Option()] = 42,
) -> None:
    """Child process: one timed drift check; prints one JSON line."""
    began = time.perf_counter()
    import evidently  # noqa: F401  # the one-time import cost is reported, not timed

    from steps.core.settings import DriftSettings
    from steps.monitor.measure import measure
    from steps.monitor.policy import decide
    from steps.monitor.window import Window, read_window

    imported = time.perf_counter()
    policy = DriftSettings.model_validate(
        {"drift_share": drift_share, "numeric_method": numeric_method, "sample_cap": sample_cap}
    )
    sample = read_window(
        str(log_dir), MODEL, VERSION, NUMERIC, CATEGORICAL, Window(), sample_cap, seed
    )
    read_done = time.perf_counter()
    measured = measure(pd.read_parquet(reference), sample.frame, NUMERIC, CATEGORICAL, policy)
    decision = decide(measured.scores, policy)
    with tempfile.TemporaryDirectory() as scratch:
        measured.save_html(Path(scratch) / "report.html")
    done = time.perf_counter()
    result = CheckResult(
        rows=sample.rows,
        sampled=len(sample.frame),
        read_s=round(read_done - imported, 2),
        test_s=round(done - read_done, 2),
        total_s=round(done - imported, 2),
        import_s=round(imported - began, 2),
        peak_rss_mb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        drifted_features=[
            s.column for s in measured.scores if s.drifted and s.kind != "prediction"
        ],
        prediction_drifted=decision.prediction_drifted,
        drifted=decision.drifted,
        scores={s.column: round(s.score, 4) for s in measured.scores},
    )
    typer.echo(json.dumps(asdict(result)))


def _summary(size: str, checks: dict[str, CheckResult]) -> dict[str, Any]:
    shifted, stable = checks["shifted"], checks["stable"]
    found = sorted(shifted.drifted_features) == sorted(SHIFTED)
    quiet = not stable.drifted_features
    return {
        "size": size,
        "rows": shifted.rows,
        "seconds_shifted": shifted.total_s,
        "seconds_stable": stable.total_s,
        "read_s": max(shifted.read_s, stable.read_s),
        "test_s": max(shifted.test_s, stable.test_s),
        "import_s": max(shifted.import_s, stable.import_s),
        "peak_rss_mb": max(shifted.peak_rss_mb, stable.peak_rss_mb),
        "shift_found": found,
        "shift_flagged": shifted.drifted_features,
        "stable_left_alone": quiet,
        "stable_flagged": stable.drifted_features,
        "decisions": f"{shifted.drifted}/{stable.drifted}",
        "min_shifted_score": min(shifted.scores[name] for name in SHIFTED),
        "max_stable_score": max(
            value for name, value in stable.scores.items() if name != "prediction"
        ),
    }


def _print(rows: list[dict[str, Any]], config: dict[str, Any]) -> None:
    console.print(", ".join(f"{key}={value}" for key, value in config.items()))
    table = Table(title=f"drift check on logs of {config['features']} features")
    for column in (
        "rows", "seconds (shifted/stable)", "read s", "test s", "peak RSS MB",
        "0.3σ shift found", "stable left alone", "min shifted / max stable score",
    ):  # fmt: skip
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            f"{row['rows']:,}",
            f"{row['seconds_shifted']:.1f} / {row['seconds_stable']:.1f}",
            f"{row['read_s']:.1f}",
            f"{row['test_s']:.1f}",
            f"{row['peak_rss_mb']:.0f}",
            _mark(row["shift_found"], row["shift_flagged"]),
            _mark(row["stable_left_alone"], row["stable_flagged"]),
            f"{row['min_shifted_score']:.3f} / {row['max_stable_score']:.3f}",
        )
    console.print(table)
    for row in rows:
        if row["rows"] == TARGET_ROWS:
            seconds = max(row["seconds_shifted"], row["seconds_stable"])
            ok = (
                seconds <= TARGET_S
                and row["peak_rss_mb"] <= TARGET_RSS_MB
                and row["shift_found"]
                and row["stable_left_alone"]
            )
            verdict = "[green]met[/]" if ok else "[red]missed[/]"
            console.print(
                f"target at 1M rows (<= {TARGET_S:.0f} s, <= {TARGET_RSS_MB:.0f} MB, both "
                f"detections right): {verdict}"
            )


def _mark(ok: bool, flagged: list[str]) -> str:
    return f"{'yes' if ok else 'NO'} ({', '.join(flagged) or 'none'})"


def _write(
    report: Path,
    rows: list[dict[str, Any]],
    config: dict[str, Any],
    results: dict[str, dict[str, CheckResult]],
) -> None:
    report.parent.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Drift check benchmark",
        "",
        "`python -m scripts.bench_drift run` (make bench-drift). Config: "
        + ", ".join(f"{key}={value}" for key, value in config.items()),
        "",
        "| rows | seconds shifted / stable | read s | test s | peak RSS MB | shift found | "
        "stable left alone | min shifted / max stable score |",
        "|---:|---:|---:|---:|---:|---|---|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['rows']:,} | {row['seconds_shifted']:.1f} / {row['seconds_stable']:.1f} | "
            f"{row['read_s']:.1f} | {row['test_s']:.1f} | {row['peak_rss_mb']:.0f} | "
            f"{_mark(row['shift_found'], row['shift_flagged'])} | "
            f"{_mark(row['stable_left_alone'], row['stable_flagged'])} | "
            f"{row['min_shifted_score']:.3f} / {row['max_stable_score']:.3f} |"
        )
    report.write_text("\n".join(lines) + "\n", encoding="utf-8")
    details = {
        "config": config,
        "rows": rows,
        "checks": {
            size: {label: asdict(result) for label, result in checks.items()}
            for size, checks in results.items()
        },
    }
    report.with_suffix(".json").write_text(json.dumps(details, indent=2) + "\n", encoding="utf-8")
    console.print(f"wrote {report} and {report.with_suffix('.json')}")


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


if __name__ == "__main__":
    app()

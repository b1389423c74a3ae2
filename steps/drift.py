"""Drift step: compare a window of the inference log with the champion's reference sample.

What runs, in order (each part in its own module):

1. the champion (``models:/<model>@champion``) and the reference sample its training run logged
   (``reference/reference.parquet``: features, target, ``prediction``) are read from MLflow;
2. :func:`steps.monitor.window.read_window` samples the window of the inference log (by time
   and/or last N rows) in bounded memory, excluding and counting rows of other model versions;
3. too few rows (``drift.min_rows``) is *insufficient data*: not drifted, no test run;
4. otherwise :func:`steps.monitor.measure.measure` scores every feature and the ``prediction``
   column with Evidently's ``DataDriftPreset`` (methods per column type configurable; its
   module docstring explains the default choice), and the pure
   :func:`steps.monitor.policy.decide` applies the policy (share of drifted features, critical
   features);
5. the HTML report and ``scores.json`` go to ``<artifact store>/drift/<run name>/`` and to an
   MLflow run in experiment ``<experiment>-drift`` (metrics ``drifted_share``, ``score.<column>``;
   tags with the model version).

CLI: ``python -m steps.drift --out-dir DIR [--since 24h] [--last-rows N] ...`` (``loopline
drift``); outputs ``drifted`` (true/false), ``reason``, ``report_uri``, ``status``,
``model_version``, ``drifted_share``, plus ``scores.json`` and ``result.json``. Drift is not a
failure: the command exits 0 either way and a workflow branches on ``drifted``. Missing champion
or reference, or an unreadable or malformed log, exits non-zero with the reason.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError
from steps.core.outputs import write_outputs, write_result
from steps.core.settings import DriftSettings, Settings, load_settings
from steps.io import tracking
from steps.io.artifact_store import ArtifactStore
from steps.monitor.policy import ColumnScore, DriftDecision, Status, decide
from steps.monitor.policy import insufficient_data as too_few_rows
from steps.monitor.reference import Champion, check_policy_columns, load_champion
from steps.monitor.window import Window, WindowSample, read_window

REPORT_DIR = "drift"
"""Folder of drift reports under the artifact store root, and the MLflow artifact path."""
EXPERIMENT_SUFFIX = "-drift"
SCORES_FILE = "scores.json"
REPORT_FILE = "report.html"


class DriftResult(BaseModel):
    """What the drift step measured and decided (``result.json``, ``scores.json``)."""

    model_name: str
    model_version: str
    champion_run_id: str
    status: Status
    drifted: bool
    reason: str
    reasons: tuple[str, ...]
    drifted_share: float
    drifted_columns: tuple[str, ...]
    prediction_drifted: bool | None
    scores: tuple[ColumnScore, ...]
    log_uri: str
    window: str
    rows_in_window: int
    rows_sampled: int
    rows_excluded: int
    excluded_versions: dict[str, int]
    files_read: int
    first_timestamp: datetime | None
    last_timestamp: datetime | None
    reference_rows: int
    policy: DriftSettings
    run_name: str
    report_uri: str
    mlflow_run_id: str
    seconds: float


def log_uri(settings: Settings) -> str:
    """The inference log root: ``drift.log_uri``, else ``<state_dir>/inference-log``."""
    return settings.drift.log_uri or str(settings.state_path / "inference-log")


def run(settings: Settings, run_name: str = "", now: datetime | None = None) -> DriftResult:
    """Check the configured window of the inference log for drift against the champion.

    Args:
        settings: ``model_name``, ``seed``, the MLflow store, the artifact store and
            ``drift`` (window, sample cap, policy, methods).
        run_name: names the MLflow run and the report folder; default
            ``<model>-v<version>-<UTC time>``.
        now: the end of a ``since`` window (default: the current time).

    Returns:
        The decision with every column's score, the window's counts and the report location.

    Raises:
        RegistryError: when the model has no champion, or the champion's run lacks its
            reference sample or the ``features`` param.
        ConfigError: when a critical feature or column threshold names no column of the model,
            or Evidently rejects a configured method.
        DataError: when the log does not exist or has missing or wrongly typed columns.
        StoreError: when the report cannot be written to the artifact store.
    """
    started = time.perf_counter()
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    policy = settings.drift
    experiment_id = tracking.connect(_drift_settings(settings))
    champion, reference = load_champion(settings.model_name)
    check_policy_columns(policy, champion)
    delta = policy.since_delta
    window = Window(since=moment - delta if delta else None, last_rows=policy.last_rows)
    source = log_uri(settings)
    sample = read_window(
        source,
        settings.model_name,
        champion.version,
        champion.numeric,
        champion.categorical,
        window,
        policy.sample_cap,
        settings.seed,
        settings.s3,
    )
    measurement = None
    if sample.rows < policy.min_rows:
        decision = too_few_rows(
            sample.rows, policy.min_rows, sample.excluded_rows, _where(sample, window, champion)
        )
    else:
        from steps.monitor.measure import measure

        measurement = measure(
            reference, sample.frame, champion.numeric, champion.categorical, policy
        )
        decision = decide(measurement.scores, policy)
    outcome = _Outcome(
        champion=champion,
        sample=sample,
        window=window,
        source=source,
        decision=decision,
        scores=measurement.scores if measurement else (),
        name=run_name or f"{champion.model_name}-v{champion.version}-{moment:%Y%m%dT%H%M%SZ}",
        started=started,
    )
    return _publish(
        settings, experiment_id, outcome, measurement.save_html if measurement else None
    )


@dataclass(frozen=True)
class _Outcome:
    """Everything measured and decided, before it is published."""

    champion: Champion
    sample: WindowSample
    window: Window
    source: str
    decision: DriftDecision
    scores: tuple[ColumnScore, ...]
    name: str
    started: float


def _publish(
    settings: Settings,
    experiment_id: str,
    outcome: _Outcome,
    save_html: Callable[[Path], Path | None] | None,
) -> DriftResult:
    """Write the result, scores and HTML report to the artifact store and an MLflow run."""
    import mlflow

    champion, decision = outcome.champion, outcome.decision
    store = ArtifactStore(settings)
    tags = {
        "loopline.model_name": champion.model_name,
        "loopline.model_version": champion.version,
        "loopline.champion_run_id": champion.run_id,
        "loopline.drift.status": decision.status,
        "loopline.drift.drifted": str(decision.drifted).lower(),
    }
    with (
        mlflow.start_run(experiment_id=experiment_id, run_name=outcome.name, tags=tags) as active,
        tempfile.TemporaryDirectory() as scratch,
    ):
        folder = Path(scratch)
        report_uri = ""
        if save_html is not None and save_html(folder / REPORT_FILE) is not None:
            report_uri = store.uri(f"{REPORT_DIR}/{outcome.name}/{REPORT_FILE}")
        result = _result(settings, outcome, report_uri, active.info.run_id)
        write_scores(folder, result)
        write_result(folder, result)
        store.upload(folder, f"{REPORT_DIR}/{outcome.name}")
        mlflow.log_params(_params(settings.drift, outcome))
        mlflow.log_metrics(_metrics(result))
        mlflow.log_artifacts(scratch, artifact_path=REPORT_DIR)
    return result


def _result(settings: Settings, outcome: _Outcome, report_uri: str, run_id: str) -> DriftResult:
    champion, sample, decision = outcome.champion, outcome.sample, outcome.decision
    return DriftResult(
        model_name=champion.model_name,
        model_version=champion.version,
        champion_run_id=champion.run_id,
        status=decision.status,
        drifted=decision.drifted,
        reason=decision.reason,
        reasons=decision.reasons,
        drifted_share=decision.drifted_share,
        drifted_columns=decision.drifted_columns,
        prediction_drifted=decision.prediction_drifted,
        scores=outcome.scores,
        log_uri=outcome.source,
        window=outcome.window.describe(),
        rows_in_window=sample.rows,
        rows_sampled=len(sample.frame),
        rows_excluded=sample.excluded_rows,
        excluded_versions=sample.excluded,
        files_read=sample.files,
        first_timestamp=sample.first,
        last_timestamp=sample.last,
        reference_rows=champion.reference_rows,
        policy=settings.drift,
        run_name=outcome.name,
        report_uri=report_uri,
        mlflow_run_id=run_id,
        seconds=round(time.perf_counter() - outcome.started, 3),
    )


def _params(policy: DriftSettings, outcome: _Outcome) -> dict[str, Any]:
    return {
        "window": outcome.window.describe(),
        "log_uri": outcome.source,
        "min_rows": policy.min_rows,
        "sample_cap": policy.sample_cap,
        "drift_share": policy.drift_share,
        "critical_features": ",".join(policy.critical_features),
        "numeric_method": policy.numeric_method or "evidently default",
        "categorical_method": policy.categorical_method or "evidently default",
    }


def _metrics(result: DriftResult) -> dict[str, float]:
    metrics = {
        "drifted": float(result.drifted),
        "drifted_share": result.drifted_share,
        "rows_in_window": float(result.rows_in_window),
        "rows_sampled": float(result.rows_sampled),
        "rows_excluded": float(result.rows_excluded),
    }
    metrics.update({f"score.{score.column}": score.score for score in result.scores})
    return metrics


def _drift_settings(settings: Settings) -> Settings:
    """The same settings with the drift experiment (``<experiment>-drift``)."""
    return settings.model_copy(update={"experiment": settings.experiment + EXPERIMENT_SUFFIX})


def _where(sample: WindowSample, window: Window, champion: Champion) -> str:
    return (
        f"{window.describe()}, version {champion.version}, {sample.files} file(s) under "
        f"{sample.location}"
    )


def _column_thresholds(values: list[str] | None) -> dict[str, float] | None:
    if not values:
        return None
    thresholds: dict[str, float] = {}
    for value in values:
        name, _, number = value.partition("=")
        try:
            thresholds[name.strip()] = float(number)
        except ValueError as err:
            raise ConfigError(
                f"--column-threshold expects NAME=NUMBER such as age=0.2, got {value!r}"
            ) from err
    return thresholds


def _csv(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    return tuple(name.strip() for name in value.split(",") if name.strip())


app = new_app("Check the inference log for drift against the champion's reference sample.")


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for the output parameter files")],
    log_uri: Annotated[
        str | None,
        typer.Option(help="inference log: directory or s3://bucket/prefix [state/inference-log]"),
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="window: rows newer than this, e.g. 90m, 24h, 7d, 2w, or all [24h]"),
    ] = None,
    last_rows: Annotated[
        int | None, typer.Option(min=1, help="window: at most the newest N rows (all versions)")
    ] = None,
    min_rows: Annotated[
        int | None, typer.Option(min=1, help="fewer rows: insufficient data, not drifted [500]")
    ] = None,
    sample_cap: Annotated[
        int | None, typer.Option(min=100, help="rows sampled from the window [50000]")
    ] = None,
    drift_share: Annotated[
        float | None, typer.Option(help="drifted when this share of features drifts [0.3]")
    ] = None,
    critical_features: Annotated[
        str | None,
        typer.Option(help="comma-separated columns whose drift alone is drift (or 'prediction')"),
    ] = None,
    numeric_method: Annotated[
        str | None, typer.Option(help="Evidently method for numeric columns, e.g. wasserstein, ks")
    ] = None,
    categorical_method: Annotated[
        str | None, typer.Option(help="Evidently method for categorical columns, e.g. psi")
    ] = None,
    numeric_threshold: Annotated[
        float | None, typer.Option(help="threshold of the numeric method [its default]")
    ] = None,
    categorical_threshold: Annotated[
        float | None, typer.Option(help="threshold of the categorical method [its default]")
    ] = None,
    column_threshold: Annotated[
        list[str] | None, typer.Option(help="NAME=NUMBER threshold for one column; repeatable")
    ] = None,
    model_name: Annotated[str | None, typer.Option(help="registered model [churn]")] = None,
    seed: Annotated[int | None, typer.Option(help="seed of the window sample")] = None,
    run_name: Annotated[
        str, typer.Option(help="MLflow run and report folder name [<model>-v<version>-<time>]")
    ] = "",
) -> None:
    """Compare the logged window with the champion's reference; write drifted, reason and
    report_uri (plus status, model_version, drifted_share, scores.json) to OUT_DIR."""
    settings = load_settings(
        model_name=model_name,
        seed=seed,
        drift={
            "log_uri": log_uri,
            "since": since,
            "last_rows": last_rows,
            "min_rows": min_rows,
            "sample_cap": sample_cap,
            "drift_share": drift_share,
            "critical_features": _csv(critical_features),
            "numeric_method": numeric_method,
            "categorical_method": categorical_method,
            "numeric_threshold": numeric_threshold,
            "categorical_threshold": categorical_threshold,
            "column_thresholds": _column_thresholds(column_threshold),
        },
    )
    result = run(settings, run_name=run_name)
    write_outputs(
        out_dir,
        "drift",
        {
            "drifted": str(result.drifted).lower(),
            "reason": result.reason,
            "report_uri": result.report_uri,
            "status": result.status,
            "model_version": result.model_version,
            "drifted_share": f"{result.drifted_share:.4f}",
        },
    )
    write_scores(out_dir, result)
    write_result(out_dir, result)
    console.print(summary(result), soft_wrap=True)


def write_scores(folder: Path, result: DriftResult) -> Path:
    """Write ``scores.json``: the verdict and every column's method, threshold and score.

    Returns:
        The path written.
    """
    document = {
        "model_name": result.model_name,
        "model_version": result.model_version,
        "status": result.status,
        "drifted": result.drifted,
        "drifted_share": result.drifted_share,
        "rows_in_window": result.rows_in_window,
        "rows_sampled": result.rows_sampled,
        "columns": {score.column: score.model_dump(exclude={"column"}) for score in result.scores},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / SCORES_FILE
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path


def summary(result: DriftResult) -> str:
    """One line for people: status, model version, reasons, counts and where the report is."""
    colour = {"drifted": "red", "stable": "green", "insufficient_data": "yellow"}[result.status]
    counts = (
        f"{result.rows_in_window:,} rows in window ({result.window}), "
        f"{result.rows_sampled:,} sampled, {result.rows_excluded:,} of other versions excluded"
    )
    where = f"report {result.report_uri}" if result.report_uri else "no report"
    return (
        f"[bold {colour}]{result.status}[/] {result.model_name} v{result.model_version}: "
        f"{result.reason} | {counts} | {where} ({result.seconds:.1f}s)"
    )


if __name__ == "__main__":
    app()

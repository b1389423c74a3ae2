"""Evaluate step: score the challenger and the current champion on the same held-out data.

The gate (:func:`steps.gate.decide`) turns the metrics into promote/reject with reasons. The
report (metrics JSON, ROC/PR/calibration PNGs, HTML) is logged to the challenger's MLflow run
under ``evaluation/``, and the decision is tagged on the run so registration can check it.

CLI: ``python -m steps.evaluate --run-id ID --out-dir DIR``; outputs ``decision``, ``reasons``,
``report_uri``. A rejected challenger exits 3 unless ``--no-fail-on-reject`` (used when a
workflow gates later tasks on the ``decision`` output instead).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import typer
from pydantic import BaseModel

from steps import tracking
from steps.cli_support import console, new_app, reports_errors
from steps.errors import GateRejected, RegistryError
from steps.gate import Decision, GateDecision, decide
from steps.metrics import classification_metrics
from steps.outputs import write_outputs, write_result
from steps.report import ScoredModel, write_report
from steps.settings import GateSettings, Settings, load_settings
from steps.train import HOLDOUT_ARTIFACT, MODEL_NAME_IN_RUN

CHAMPION = "champion"
REPORT_ARTIFACT_DIR = "evaluation"
DECISION_TAG = "loopline.gate.decision"


class ChampionInfo(BaseModel):
    """The registered champion that the challenger was compared with."""

    version: str
    run_id: str
    metrics: dict[str, float]


class EvaluationResult(BaseModel):
    """What the evaluate step decided and where its report is."""

    run_id: str
    decision: Decision
    reasons: tuple[str, ...]
    gate: GateSettings
    challenger_metrics: dict[str, float]
    champion: ChampionInfo | None
    rows_holdout: int
    report_uri: str


def run(settings: Settings, run_id: str) -> tuple[EvaluationResult, GateDecision]:
    """Evaluate the model of MLflow run ``run_id`` against the current champion.

    Returns:
        The evaluation result (also logged to the run) and the gate decision.

    Raises:
        RegistryError: when the run, its model or its held-out data cannot be read.
    """
    import mlflow

    tracking.connect(settings)
    holdout = _load_holdout(run_id)
    target = _run_param(run_id, "target")
    labels = holdout[target].to_numpy()
    challenger = _score(f"runs:/{run_id}/{MODEL_NAME_IN_RUN}", holdout, labels, "challenger")
    champion_version = _champion_version(settings.model_name)
    scored = [challenger]
    champion: ChampionInfo | None = None
    if champion_version is not None:
        champion_model = _score(
            f"models:/{settings.model_name}@{CHAMPION}",
            holdout,
            labels,
            f"champion v{champion_version.version}",
        )
        scored.append(champion_model)
        champion = ChampionInfo(
            version=str(champion_version.version),
            run_id=str(champion_version.run_id),
            metrics=champion_model.metrics,
        )
    verdict = decide(
        challenger.metrics,
        champion.metrics if champion else None,
        settings.gate,
        champion_label=f"champion v{champion.version}" if champion else CHAMPION,
    )
    with mlflow.start_run(run_id=run_id) as active:
        report_uri = f"{active.info.artifact_uri}/{REPORT_ARTIFACT_DIR}"
        result = EvaluationResult(
            run_id=run_id,
            decision=verdict.decision,
            reasons=verdict.reasons,
            gate=settings.gate,
            challenger_metrics=challenger.metrics,
            champion=champion,
            rows_holdout=len(holdout),
            report_uri=report_uri,
        )
        with tempfile.TemporaryDirectory() as scratch:
            write_report(Path(scratch), labels, scored, result.model_dump(mode="json"))
            mlflow.log_artifacts(scratch, artifact_path=REPORT_ARTIFACT_DIR)
        mlflow.log_metrics({f"eval_challenger_{k}": v for k, v in challenger.metrics.items()})
        if champion:
            mlflow.log_metrics({f"eval_champion_{k}": v for k, v in champion.metrics.items()})
        mlflow.set_tags(
            {
                DECISION_TAG: verdict.decision,
                "loopline.gate.passed_absolute": str(verdict.passed_absolute).lower(),
                "loopline.gate.champion_version": champion.version if champion else "",
            }
        )
    return result, verdict


def _score(uri: str, holdout: pd.DataFrame, labels: np.ndarray, label: str) -> ScoredModel:
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(f"cannot load model {uri}: {err.message}") from err
    inputs = model.metadata.get_input_schema()
    missing = [c for c in (inputs.input_names() if inputs else []) if c not in holdout.columns]
    if missing:
        raise RegistryError(
            f"{label} ({uri}) expects features missing from the held-out data: {missing}"
        )
    features = inputs.input_names() if inputs else list(holdout.columns)
    probability = np.asarray(model.predict(holdout[features]), dtype=np.float64)
    return ScoredModel(label, probability, classification_metrics(labels, probability))


def _load_holdout(run_id: str) -> pd.DataFrame:
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=HOLDOUT_ARTIFACT)
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(
            f"run {run_id!r} has no held-out data at {HOLDOUT_ARTIFACT}: {err.message} "
            "(expected a run logged by steps.train)"
        ) from err
    return pd.read_parquet(path)


def _run_param(run_id: str, name: str) -> str:
    from mlflow.tracking import MlflowClient

    value = MlflowClient().get_run(run_id).data.params.get(name)
    if value is None:
        raise RegistryError(f"run {run_id!r} has no param {name!r} (expected a steps.train run)")
    return str(value)


def _champion_version(model_name: str) -> Any | None:
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    try:
        return MlflowClient().get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException as err:
        if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise RegistryError(f"cannot read alias {CHAMPION} of {model_name}: {err.message}") from err


app = new_app("Evaluate a trained model against the champion and apply the quality gate.")


@app.command()
@reports_errors
def main(
    run_id: Annotated[str, typer.Option(help="MLflow run id from the train step")],
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    metric: Annotated[str | None, typer.Option(help="gate metric: roc_auc|pr_auc")] = None,
    min_value: Annotated[float | None, typer.Option(help="absolute minimum")] = None,
    max_regression: Annotated[float | None, typer.Option(help="allowed drop vs champion")] = None,
    fail_on_reject: Annotated[
        bool, typer.Option(help="exit 3 when rejected (off when a workflow gates on the output)")
    ] = True,
) -> None:
    """Score challenger and champion, decide, write decision, reasons and report_uri."""
    settings = load_settings(
        gate={"metric": metric, "min_value": min_value, "max_regression": max_regression}
    )
    result, verdict = run(settings, run_id)
    write_outputs(
        out_dir,
        {
            "decision": result.decision,
            "reasons": "; ".join(result.reasons),
            "report_uri": result.report_uri,
        },
    )
    write_result(out_dir, result)
    colour = "green" if verdict.promote else "red"
    console.print(f"[bold {colour}]{result.decision}[/]: " + "; ".join(result.reasons))
    console.print(f"report: {result.report_uri}/report.html")
    if not verdict.promote and fail_on_reject:
        raise typer.Exit(GateRejected.exit_code)


if __name__ == "__main__":
    app()

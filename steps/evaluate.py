"""Evaluate step: score the challenger and the current champion on the same held-out data.

The held-out rows are the challenger's (:mod:`steps.ml.holdout`: by key or time, the same in every
run); the step counts, for each model, how many of them it was trained on (expected 0) from the
training keys both runs logged, and measures each feature of the challenger's training sample
against the champion's (the drift step's measurement, with the gate's gross thresholds). The gate
(:func:`steps.ml.gate.decide`) turns all of it into promote/reject with reasons; its policy is the
one the challenger's recipe carries unless given explicitly. The report (:mod:`steps.ml.report`:
metrics JSON, each metric's difference, model kinds, confusion matrices at the serving threshold,
permutation importance of the features, PNGs, HTML, Evidently's data-shift HTML) is logged to the
challenger's MLflow run under ``evaluation/``, and the decision is tagged on the run so
registration can check it.

CLI: ``python -m steps.evaluate --run-id ID --out-dir DIR``; outputs ``decision``, ``reasons``,
``report_uri``. A rejected challenger exits 3 unless ``--no-fail-on-reject`` (used when a
workflow gates later tasks on the ``decision`` output instead).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from pydantic import BaseModel, ValidationError

from serving.inference_log import PREDICTION
from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import GateRejected, RegistryError
from steps.core.outputs import write_outputs, write_result
from steps.core.settings import (
    DriftSettings,
    GateSettings,
    Settings,
    explicit_fields,
    load_settings,
)
from steps.io import tracking
from steps.io.registry import Registry
from steps.ml import recipe
from steps.ml.comparison import permutation_importance
from steps.ml.gate import Decision, GateDecision, Overlap, Shift, decide
from steps.ml.holdout import ROW_KEY_COLUMN, seen_rows
from steps.ml.metrics import classification_metrics
from steps.ml.report import ScoredModel, write_report
from steps.monitor.measure import Measurement

DATA_SHIFT_HTML = "data_shift.html"


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
    holdout: str
    overlaps: tuple[Overlap, ...]
    shifts: tuple[Shift, ...]
    report_uri: str


def run(
    settings: Settings, run_id: str, explicit: frozenset[str] | None = None
) -> tuple[EvaluationResult, GateDecision]:
    """Evaluate the model of MLflow run ``run_id`` against the current champion.

    Args:
        settings: the MLflow store, the model name and the gate policy.
        run_id: the challenger's training run.
        explicit: the settings given explicitly; the other gate fields come from the recipe the
            challenger was trained with (``recipe.json``). None: use ``settings.gate`` as given.

    Returns:
        The evaluation result (also logged to the run) and the gate decision.

    Raises:
        RegistryError: when the run, its model or its held-out data cannot be read.
    """
    import mlflow

    tracking.connect(settings)
    policy = _policy(settings, run_id, explicit)
    holdout = _load_holdout(run_id)
    target = _run_param(run_id, "target")
    labels = holdout[target].to_numpy()
    keys = holdout[ROW_KEY_COLUMN].to_numpy() if ROW_KEY_COLUMN in holdout.columns else None
    challenger = _score(
        f"runs:/{run_id}/{names.MODEL_IN_RUN}", run_id, holdout, labels, "challenger"
    )
    overlaps = [_overlap("challenger", run_id, keys, len(holdout))]
    champion_model: ScoredModel | None = None
    champion: ChampionInfo | None = None
    shifts: list[Shift] = []
    measurement: Measurement | None = None
    champion_version = Registry(settings.model_name).champion()
    if champion_version is not None:
        label = f"champion v{champion_version.version}"
        champion_model = _score(
            f"models:/{settings.model_name}@{names.CHAMPION}",
            str(champion_version.run_id),
            holdout,
            labels,
            label,
        )
        champion = ChampionInfo(
            version=str(champion_version.version),
            run_id=str(champion_version.run_id),
            metrics=champion_model.metrics,
        )
        overlaps.append(_overlap(label, champion.run_id, keys, len(holdout)))
        measurement, shifts = _data_shift(run_id, champion.run_id, policy)
    verdict = decide(
        challenger.metrics,
        champion.metrics if champion else None,
        policy,
        champion_label=f"champion v{champion.version}" if champion else names.CHAMPION,
        overlaps=overlaps,
        shifts=shifts,
    )
    with mlflow.start_run(run_id=run_id) as active:
        report_uri = f"{active.info.artifact_uri}/{names.EVALUATION_DIR}"
        result = EvaluationResult(
            run_id=run_id,
            decision=verdict.decision,
            reasons=verdict.reasons,
            gate=policy,
            challenger_metrics=challenger.metrics,
            champion=champion,
            rows_holdout=len(holdout),
            holdout=_run_param(run_id, "holdout", default="random split (before holdout keys)"),
            overlaps=tuple(overlaps),
            shifts=tuple(shifts),
            report_uri=report_uri,
        )
        with tempfile.TemporaryDirectory() as scratch:
            write_report(
                Path(scratch),
                labels,
                challenger,
                champion_model,
                result.model_dump(mode="json"),
                shifts=shifts,
            )
            if measurement is not None:
                measurement.save_html(Path(scratch) / DATA_SHIFT_HTML)
            mlflow.log_artifacts(scratch, artifact_path=names.EVALUATION_DIR)
        mlflow.log_metrics({f"eval_challenger_{k}": v for k, v in challenger.metrics.items()})
        if champion:
            mlflow.log_metrics({f"eval_champion_{k}": v for k, v in champion.metrics.items()})
        mlflow.set_tags(
            {
                names.DECISION_TAG: verdict.decision,
                f"{names.GATE_TAG_PREFIX}passed_absolute": str(verdict.passed_absolute).lower(),
                f"{names.GATE_TAG_PREFIX}comparable": str(verdict.comparable).lower(),
                f"{names.GATE_TAG_PREFIX}gross_shift": ",".join(verdict.gross_shift),
                f"{names.GATE_TAG_PREFIX}champion_version": champion.version if champion else "",
            }
        )
    return result, verdict


def _policy(settings: Settings, run_id: str, explicit: frozenset[str] | None) -> GateSettings:
    """The gate policy: explicit settings, else the challenger's recipe, else the defaults."""
    if explicit is None:
        return settings.gate
    trained_with = recipe.read_run_recipe(run_id)
    merged = settings.gate.model_dump()
    for name in merged:
        dotted = f"gate.{name}"
        if dotted not in explicit and dotted in trained_with:
            merged[name] = trained_with[dotted]
    try:
        return GateSettings.model_validate(merged)
    except ValidationError as err:
        raise RegistryError(
            f"the gate policy in {names.RECIPE_ARTIFACT} of run {run_id} is invalid: {err}"
        ) from err


def _overlap(label: str, run_id: str, holdout_keys: np.ndarray | None, rows: int) -> Overlap:
    """Count the held-out rows among the rows the model of ``run_id`` was trained on."""
    import mlflow

    if holdout_keys is None:
        return Overlap(label=label, seen_rows=None, holdout_rows=rows)
    try:
        path = mlflow.artifacts.download_artifacts(
            run_id=run_id, artifact_path=names.TRAIN_KEYS_ARTIFACT
        )
    except mlflow.exceptions.MlflowException:
        return Overlap(label=label, seen_rows=None, holdout_rows=rows)
    trained = pd.read_parquet(path)[ROW_KEY_COLUMN].to_numpy()
    return Overlap(label=label, seen_rows=seen_rows(holdout_keys, trained), holdout_rows=rows)


def _data_shift(
    challenger_run: str, champion_run: str, policy: GateSettings
) -> tuple[Measurement | None, list[Shift]]:
    """Measure each champion feature in the challenger's training sample against the champion's
    reference sample (the drift step's measurement, with the gate's gross thresholds)."""
    from steps.monitor.measure import measure

    reference, champion_features = _reference(champion_run)
    current, challenger_features = _reference(challenger_run)
    shifts = [
        Shift(column=name, method="missing column", score=1.0, threshold=1.0, gross=True)
        for name in champion_features
        if name not in challenger_features
    ]
    common = [name for name in champion_features if name in challenger_features]
    numeric, categorical = [], []
    for name in common:
        kinds = {pd.api.types.is_numeric_dtype(frame[name].dtype) for frame in (reference, current)}
        if len(kinds) == 2:
            shifts.append(
                Shift(column=name, method="type changed", score=1.0, threshold=1.0, gross=True)
            )
        elif kinds == {True}:
            numeric.append(name)
        else:
            categorical.append(name)
    if not numeric and not categorical:
        return None, shifts
    method = DriftSettings(
        numeric_method="wasserstein",
        categorical_method="jensenshannon",
        numeric_threshold=policy.gross_numeric_shift,
        categorical_threshold=policy.gross_categorical_shift,
    )
    columns = [*numeric, *categorical, PREDICTION]
    measurement = measure(reference[columns], current[columns], numeric, categorical, method)
    shifts += [
        Shift(
            column=score.column,
            method=score.method,
            score=score.score,
            threshold=score.threshold,
            gross=score.drifted,
        )
        for score in measurement.scores
        if score.kind != "prediction"
    ]
    return measurement, shifts


def _reference(run_id: str) -> tuple[pd.DataFrame, list[str]]:
    sample = tracking.run_table(run_id, names.REFERENCE_ARTIFACT, "training sample")
    return sample, _run_param(run_id, "features").split(",")


def _score(
    uri: str, run_id: str, holdout: pd.DataFrame, labels: np.ndarray, label: str
) -> ScoredModel:
    """Score the model at ``uri`` (trained in ``run_id``) on the held-out rows, measure its
    feature importance there and name its kind (the run's ``model_kind`` param)."""
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(uri)
    except mlflow.exceptions.MlflowException as err:
        raise tracking.mlflow_error(err, f"cannot load model {uri}") from err
    inputs = model.metadata.get_input_schema()
    missing = [c for c in (inputs.input_names() if inputs else []) if c not in holdout.columns]
    if missing:
        raise RegistryError(
            f"{label} ({uri}) expects features missing from the held-out data: {missing}"
        )
    features = holdout[inputs.input_names() if inputs else list(holdout.columns)]

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(model.predict(frame), dtype=np.float64)

    probability = predict(features)
    return ScoredModel(
        label,
        probability,
        classification_metrics(labels, probability),
        kind=_run_param(run_id, "model_kind", default="not logged"),
        importance=permutation_importance(predict, features, labels),
    )


def _load_holdout(run_id: str) -> pd.DataFrame:
    return tracking.run_table(run_id, names.HOLDOUT_ARTIFACT, "held-out data")


def _run_param(run_id: str, name: str, default: str | None = None) -> str:
    from mlflow.tracking import MlflowClient

    value = MlflowClient().get_run(run_id).data.params.get(name, default)
    if value is None:
        raise RegistryError(f"run {run_id!r} has no param {name!r} (expected a steps.train run)")
    return str(value)


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
    overrides = {
        "gate": {"metric": metric, "min_value": min_value, "max_regression": max_regression}
    }
    settings = load_settings(**overrides)
    result, verdict = run(settings, run_id, explicit=explicit_fields(**overrides))
    write_outputs(
        out_dir,
        "evaluate",
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

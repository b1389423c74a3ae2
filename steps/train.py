"""Train step: fit a model on the training split and log everything to MLflow.

The recipe (target, features, split, model kind, hyper-parameters, gate policy) is resolved first:
what is given explicitly, else the champion's, else the defaults (:mod:`steps.ml.recipe`). Rows are
held out by time or by key, the same rows in every run (:mod:`steps.ml.holdout`); boosted kinds stop
early on a validation split carved from the training rows.

Logs params, metrics, the validation curve, the model (pyfunc with signature and input example,
native files inside), ``recipe.json``, the dataset's content hash and row counts, the git commit,
the held-out rows with their keys and the keys of the training rows (for the evaluate step) and a
sample of the training data with predictions (the drift reference).

CLI: ``python -m steps.train --data-uri URI --out-dir DIR``; outputs ``run_id``, ``data_hash``,
``model_uri``.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import pandas as pd
import typer
from pydantic import BaseModel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from serving.features import FeatureSpec
from serving.inference_log import PREDICTION
from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError
from steps.core.outputs import write_outputs, write_result
from steps.core.redact import redact
from steps.core.settings import ModelKind, Settings, explicit_fields, load_settings
from steps.io import tracking
from steps.ml import estimators, holdout, recipe
from steps.ml.dataset import Dataset, encode, fit_spec, load_dataset
from steps.ml.metrics import classification_metrics
from steps.ml.report import plot_validation_curve


class TrainResult(BaseModel):
    """What the train step produced."""

    run_id: str
    model_uri: str
    data_uri: str
    data_hash: str
    model_kind: ModelKind
    rows_train: int
    rows_validation: int
    rows_holdout: int
    holdout: str
    best_iteration: int | None
    recipe: str
    metrics: dict[str, float]
    seconds: float


def run(
    settings: Settings, pipeline_run: str = "", explicit: frozenset[str] | None = None
) -> TrainResult:
    """Train on ``settings.data.uri`` and log the run to MLflow.

    Args:
        settings: the run's settings.
        pipeline_run: the workflow name, for lineage.
        explicit: the settings given explicitly (:func:`steps.core.settings.explicit_fields`); the
            others are taken from the champion's recipe when there is a champion. None: use
            ``settings`` exactly as given.

    Returns:
        The run id, model URI, data hash, row counts and held-out metrics.

    Raises:
        ConfigError: when no data location is configured, or the champion's recipe does not fit.
        DataError: when the data cannot be loaded or split.
        RegistryError: when MLflow cannot be reached.
    """
    if not settings.data.uri:
        raise ConfigError("no training data: set LOOPLINE_DATA__URI or pass --data-uri URI")
    started = time.perf_counter()
    experiment_id = tracking.connect(settings)
    champion = recipe.champion_recipe(settings.model_name) if explicit is not None else None
    given = explicit if explicit is not None else frozenset(recipe.recipe_values(settings))
    resolved = recipe.resolve(settings, given, champion)
    settings = resolved.settings
    params = settings.train
    console.print(resolved.describe())
    with _progress() as progress:
        stage = progress.add_task("load data", total=None)
        dataset = load_dataset(
            settings.data.uri or "",
            target=settings.data.target,
            features=settings.data.features,
            id_columns=settings.data.id_columns,
            s3=settings.s3,
        )
        split = holdout.split(dataset, settings.data, params.test_size)
        spec = fit_spec(dataset, split.train)
        fit_rows, validation_rows = holdout.carve_validation(
            split.train, dataset.target, params, settings.seed
        )
        progress.update(
            stage,
            description=f"loaded {dataset.n_rows:,} rows; held out {split.how}",
            total=1,
            completed=1,
        )

        rounds = params.n_estimators if params.model_kind != "sklearn-logreg" else None
        fit_task = progress.add_task(f"fit {params.model_kind}", total=rounds)
        model = estimators.fit(
            params.model_kind,
            encode(spec, fit_rows),
            fit_rows[dataset.target].to_numpy(),
            spec,
            params,
            settings.seed,
            on_round=lambda done: progress.update(fit_task, completed=done),
            validation=(
                None
                if validation_rows is None
                else estimators.Validation(
                    encode(spec, validation_rows), validation_rows[dataset.target].to_numpy()
                )
            ),
        )
        stopped = f" (best round {model.history.best_iteration})" if model.history else ""
        progress.update(
            fit_task, description=f"fit {params.model_kind}{stopped}", total=1, completed=1
        )

        log_task = progress.add_task("log to MLflow", total=None)
        holdout_probability = model.positive_probability(encode(spec, split.holdout))
        metrics = {
            f"holdout_{name}": value
            for name, value in classification_metrics(
                split.holdout[dataset.target].to_numpy(), holdout_probability
            ).items()
        }
        logged = _Logged(
            dataset,
            split,
            spec,
            model,
            metrics,
            0 if validation_rows is None else len(validation_rows),
        )
        run_id, model_uri = _log_run(settings, experiment_id, pipeline_run, resolved, logged)
        progress.update(log_task, description=f"logged run {run_id}", total=1, completed=1)
    return TrainResult(
        run_id=run_id,
        model_uri=model_uri,
        data_uri=redact(settings.data.uri or ""),
        data_hash=dataset.content_hash,
        model_kind=params.model_kind,
        rows_train=len(split.train),
        rows_validation=logged.rows_validation,
        rows_holdout=len(split.holdout),
        holdout=split.how,
        best_iteration=model.history.best_iteration if model.history else None,
        recipe=resolved.source,
        metrics=metrics,
        seconds=round(time.perf_counter() - started, 3),
    )


@dataclass(frozen=True)
class _Logged:
    """Everything a training run logs besides the settings."""

    dataset: Dataset
    split: holdout.Split
    spec: FeatureSpec
    model: estimators.FittedModel
    metrics: dict[str, float]
    rows_validation: int


def _log_run(
    settings: Settings,
    experiment_id: str,
    pipeline_run: str,
    resolved: recipe.ResolvedRecipe,
    logged: _Logged,
) -> tuple[str, str]:
    import mlflow
    from mlflow.models import infer_signature

    from steps.ml.pyfunc import LooplineModel

    commit = tracking.git_commit(settings)
    dataset, split, spec, model = logged.dataset, logged.split, logged.spec, logged.model
    features = list(spec.order)
    reference = split.train.sample(
        n=min(settings.train.reference_rows, len(split.train)), random_state=settings.seed
    ).reset_index(drop=True)
    reference[PREDICTION] = model.positive_probability(encode(spec, reference))
    # Numeric features are doubles in the signature: integers cannot carry missing values.
    example = split.holdout[features].head(5).astype({name: "float64" for name in spec.numeric})
    tags = {
        names.DATA_HASH_TAG: dataset.content_hash,
        names.GIT_COMMIT_TAG: commit,
        names.PIPELINE_RUN_TAG: pipeline_run,
        names.RECIPE_SOURCE_TAG: resolved.source,
        names.HOLDOUT_TAG: split.how,
        "mlflow.source.git.commit": commit,
    }
    with (
        mlflow.start_run(
            experiment_id=experiment_id, run_name=pipeline_run or None, tags=tags
        ) as active,
        tempfile.TemporaryDirectory() as scratch,
    ):
        mlflow.log_params(
            {
                **settings.train.model_dump(),
                "seed": settings.seed,
                "data_uri": redact(settings.data.uri) if settings.data.uri else None,
                "data_hash": dataset.content_hash,
                "target": dataset.target,
                "features": ",".join(features),
                "holdout": split.how,
                "rows_total": dataset.n_rows,
                "rows_train": len(split.train),
                "rows_validation": logged.rows_validation,
                "rows_holdout": len(split.holdout),
                "rows_dropped_missing_target": dataset.dropped_missing_target,
                "positive_share": round(dataset.class_balance, 6),
            }
        )
        mlflow.log_metrics(logged.metrics)
        _log_history(model.history, Path(scratch))
        native = Path(scratch) / names.NATIVE_ARTIFACT
        native.mkdir()
        spec.save(native)
        model.save(native)
        held = split.holdout.assign(**{holdout.ROW_KEY_COLUMN: split.holdout_keys})
        trained = pd.DataFrame({holdout.ROW_KEY_COLUMN: split.train_keys})
        for frame, artifact in (
            (held, names.HOLDOUT_ARTIFACT),
            (trained, names.TRAIN_KEYS_ARTIFACT),
            (reference, names.REFERENCE_ARTIFACT),
        ):
            local = Path(scratch) / Path(artifact).name
            frame.to_parquet(local, index=False)
            mlflow.log_artifact(str(local), artifact_path=str(Path(artifact).parent))
        mlflow.log_dict(resolved.document(), names.RECIPE_ARTIFACT)
        logged_model = mlflow.pyfunc.log_model(
            name=names.MODEL_IN_RUN,
            python_model=LooplineModel(),
            artifacts={names.NATIVE_ARTIFACT: str(native)},
            signature=infer_signature(example, model.positive_probability(encode(spec, example))),
            input_example=example,
            pip_requirements=_requirements(model.kind),
        )
        mlflow.set_tag(names.MODEL_ID_TAG, logged_model.model_id)
        return active.info.run_id, str(logged_model.model_uri)


def _log_history(history: estimators.History | None, scratch: Path) -> None:
    """Log the validation curve (metric per round, PNG) and the best round kept."""
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    if history is None:
        return
    mlflow.log_metric("best_iteration", history.best_iteration)
    mlflow.log_metric("stopped_early", float(history.stopped_early))
    timestamp = int(time.time() * 1000)
    run = mlflow.active_run()
    assert run is not None  # called inside the training run
    MlflowClient().log_batch(
        run.info.run_id,
        metrics=[
            Metric(f"validation_{history.metric}", value, timestamp, step)
            for step, value in enumerate(history.curve, start=1)
        ],
    )
    png = scratch / "validation_curve.png"
    plot_validation_curve(history, png)
    mlflow.log_artifact(str(png), artifact_path=names.VALIDATION_CURVE_DIR)


def _requirements(kind: ModelKind) -> list[str]:
    from importlib.metadata import version

    packages = ["mlflow", "numpy", "pandas", "pydantic", "loopline"]
    packages += ["xgboost-cpu"] if kind == "xgboost" else ["scikit-learn", "joblib"]
    return [f"{name}=={version(name)}" for name in packages]


def _progress() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


app = new_app("Train a model and log it to MLflow.")


@app.command()
@reports_errors
def main(
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    data_uri: Annotated[str | None, typer.Option(help="CSV/Parquet path or s3:// URI")] = None,
    target: Annotated[str | None, typer.Option(help="label column; empty: the recipe's")] = None,
    model_kind: Annotated[
        str | None, typer.Option(help="xgboost|sklearn-logreg|sklearn-hgb; empty: the recipe's")
    ] = None,
    min_value: Annotated[
        str | None, typer.Option(help="gate: absolute minimum; empty: the recipe's")
    ] = None,
    max_regression: Annotated[
        str | None, typer.Option(help="gate: allowed drop vs champion; empty: the recipe's")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    pipeline_run: Annotated[str, typer.Option(help="workflow name, for lineage")] = "",
) -> None:
    """Train on the data and write run_id, data_hash and model_uri to OUT_DIR.

    Recipe fields not given here or by a LOOPLINE_* variable come from the champion's recipe.
    """
    overrides: dict[str, Any] = {
        "data": {"uri": data_uri, "target": target},
        "train": {"model_kind": model_kind},
        "gate": {"min_value": min_value, "max_regression": max_regression},
        "seed": seed,
    }
    settings = load_settings(**overrides)
    result = run(settings, pipeline_run, explicit=explicit_fields(**overrides))
    write_outputs(
        out_dir,
        "train",
        {"run_id": result.run_id, "data_hash": result.data_hash, "model_uri": result.model_uri},
    )
    write_result(out_dir, result)
    stopped = f", best round {result.best_iteration}" if result.best_iteration else ""
    console.print(
        f"trained {result.model_kind} on {result.rows_train:,} rows in {result.seconds:.1f}s"
        f"{stopped}: run {result.run_id}, holdout ROC AUC "
        f"{result.metrics['holdout_roc_auc']:.4f} ({result.holdout}; {result.recipe})"
    )


if __name__ == "__main__":
    app()

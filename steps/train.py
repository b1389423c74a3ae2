"""Train step: fit a model on the training split and log everything to MLflow.

Logs params, metrics, the model (pyfunc with signature and input example, native files inside),
the dataset's content hash and row counts, the git commit, the held-out split (for the evaluate
step) and a sample of the training data with predictions (the drift reference).

CLI: ``python -m steps.train --data-uri URI --out-dir DIR``; outputs ``run_id``, ``data_hash``,
``model_uri``.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import pandas as pd
import typer
from pydantic import BaseModel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from serving.features import FeatureSpec
from steps import estimators, tracking
from steps.cli_support import console, new_app, reports_errors
from steps.data import Dataset, load_dataset
from steps.errors import ConfigError, DataError
from steps.metrics import classification_metrics
from steps.outputs import write_outputs, write_result
from steps.settings import ModelKind, Settings, load_settings

MODEL_NAME_IN_RUN = "model"
HOLDOUT_ARTIFACT = "data/holdout.parquet"
REFERENCE_ARTIFACT = "reference/reference.parquet"
PREDICTION_COLUMN = "prediction"
MODEL_ID_TAG = "loopline.model_id"


class TrainResult(BaseModel):
    """What the train step produced."""

    run_id: str
    model_uri: str
    data_uri: str
    data_hash: str
    model_kind: ModelKind
    rows_train: int
    rows_holdout: int
    metrics: dict[str, float]
    seconds: float


def split(dataset: Dataset, test_size: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return a stratified, seeded (train, holdout) split of the dataset's frame.

    Raises:
        DataError: when a class has too few rows to appear in both splits.
    """
    from sklearn.model_selection import train_test_split

    labels = dataset.frame[dataset.target]
    if labels.value_counts().min() < 2:
        raise DataError(
            f"{dataset.source}: each class needs at least 2 rows to split, got "
            f"{labels.value_counts().to_dict()}"
        )
    train, holdout = train_test_split(
        dataset.frame, test_size=test_size, random_state=seed, stratify=labels
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def fit_spec(dataset: Dataset, train: pd.DataFrame) -> FeatureSpec:
    """Fit the feature contract (category vocabularies) on the training split only."""
    return FeatureSpec.fit(
        target=dataset.target,
        numeric=dataset.numeric,
        categories={name: train[name].tolist() for name in dataset.categorical},
    )


def encode(spec: FeatureSpec, frame: pd.DataFrame) -> np.ndarray:
    """Encode a frame's feature columns with ``spec``."""
    return spec.encode({name: frame[name].to_numpy() for name in spec.order})


def run(settings: Settings, pipeline_run: str = "") -> TrainResult:
    """Train on ``settings.data.uri`` and log the run to MLflow.

    Returns:
        The run id, model URI, data hash, row counts and held-out metrics.

    Raises:
        ConfigError: when no data location is configured.
        DataError: when the data cannot be loaded or split.
        RegistryError: when MLflow cannot be reached.
    """
    if not settings.data.uri:
        raise ConfigError("no training data: set LOOPLINE_DATA__URI or pass --data-uri URI")
    started = time.perf_counter()
    params = settings.train
    with _progress() as progress:
        stage = progress.add_task("load data", total=None)
        dataset = load_dataset(
            settings.data.uri,
            target=settings.data.target,
            features=settings.data.features,
            id_columns=settings.data.id_columns,
            s3=settings.s3,
        )
        train, holdout = split(dataset, params.test_size, settings.seed)
        spec = fit_spec(dataset, train)
        progress.update(stage, description=f"loaded {dataset.n_rows:,} rows", total=1, completed=1)

        rounds = params.n_estimators if params.model_kind != "sklearn-logreg" else None
        fit_task = progress.add_task(f"fit {params.model_kind}", total=rounds)
        model = estimators.fit(
            params.model_kind,
            encode(spec, train),
            train[dataset.target].to_numpy(),
            spec,
            params,
            settings.seed,
            on_round=lambda done: progress.update(fit_task, completed=done),
        )
        progress.update(fit_task, total=1, completed=1)

        log_task = progress.add_task("log to MLflow", total=None)
        holdout_probability = model.positive_probability(encode(spec, holdout))
        metrics = {
            f"holdout_{name}": value
            for name, value in classification_metrics(
                holdout[dataset.target].to_numpy(), holdout_probability
            ).items()
        }
        run_id, model_uri = _log_run(
            settings, pipeline_run, dataset, train, holdout, spec, model, metrics
        )
        progress.update(log_task, description=f"logged run {run_id}", total=1, completed=1)
    return TrainResult(
        run_id=run_id,
        model_uri=model_uri,
        data_uri=settings.data.uri,
        data_hash=dataset.content_hash,
        model_kind=params.model_kind,
        rows_train=len(train),
        rows_holdout=len(holdout),
        metrics=metrics,
        seconds=round(time.perf_counter() - started, 3),
    )


def _log_run(
    settings: Settings,
    pipeline_run: str,
    dataset: Dataset,
    train: pd.DataFrame,
    holdout: pd.DataFrame,
    spec: FeatureSpec,
    model: estimators.FittedModel,
    metrics: dict[str, float],
) -> tuple[str, str]:
    import mlflow
    from mlflow.models import infer_signature

    from steps.pyfunc import NATIVE_ARTIFACT, LooplineModel

    experiment_id = tracking.connect(settings)
    commit = tracking.git_commit(settings)
    features = list(spec.order)
    reference = train.sample(
        n=min(settings.train.reference_rows, len(train)), random_state=settings.seed
    ).reset_index(drop=True)
    reference[PREDICTION_COLUMN] = model.positive_probability(encode(spec, reference))
    # Numeric features are doubles in the signature: integers cannot carry missing values.
    example = holdout[features].head(5).astype({name: "float64" for name in spec.numeric})
    tags = {
        "loopline.data_hash": dataset.content_hash,
        "loopline.git_commit": commit,
        "loopline.pipeline_run": pipeline_run,
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
                "data_uri": settings.data.uri,
                "data_hash": dataset.content_hash,
                "target": dataset.target,
                "features": ",".join(features),
                "rows_total": dataset.n_rows,
                "rows_train": len(train),
                "rows_holdout": len(holdout),
                "rows_dropped_missing_target": dataset.dropped_missing_target,
                "positive_share": round(dataset.class_balance, 6),
            }
        )
        mlflow.log_metrics(metrics)
        native = Path(scratch) / NATIVE_ARTIFACT
        native.mkdir()
        spec.save(native)
        model.save(native)
        for frame, artifact in ((holdout, HOLDOUT_ARTIFACT), (reference, REFERENCE_ARTIFACT)):
            local = Path(scratch) / Path(artifact).name
            frame.to_parquet(local, index=False)
            mlflow.log_artifact(str(local), artifact_path=str(Path(artifact).parent))
        logged = mlflow.pyfunc.log_model(
            name=MODEL_NAME_IN_RUN,
            python_model=LooplineModel(),
            artifacts={NATIVE_ARTIFACT: str(native)},
            signature=infer_signature(example, model.positive_probability(encode(spec, example))),
            input_example=example,
            pip_requirements=_requirements(model.kind),
        )
        mlflow.set_tag(MODEL_ID_TAG, logged.model_id)
        return active.info.run_id, str(logged.model_uri)


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
    target: Annotated[str | None, typer.Option(help="label column")] = None,
    model_kind: Annotated[
        str | None, typer.Option(help="xgboost|sklearn-logreg|sklearn-hgb")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="random seed")] = None,
    pipeline_run: Annotated[str, typer.Option(help="workflow name, for lineage")] = "",
) -> None:
    """Train on the data and write run_id, data_hash and model_uri to OUT_DIR."""
    settings = load_settings(
        data={"uri": data_uri, "target": target},
        train={"model_kind": model_kind},
        seed=seed,
    )
    result = run(settings, pipeline_run)
    write_outputs(
        out_dir,
        {"run_id": result.run_id, "data_hash": result.data_hash, "model_uri": result.model_uri},
    )
    write_result(out_dir, result)
    console.print(
        f"trained {result.model_kind} on {result.rows_train:,} rows in {result.seconds:.1f}s: "
        f"run {result.run_id}, holdout ROC AUC {result.metrics['holdout_roc_auc']:.4f}"
    )


if __name__ == "__main__":
    app()

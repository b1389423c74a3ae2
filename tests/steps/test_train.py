"""Train step: split and feature contract (unit), and a real run into local MLflow."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from serving.inference_log import PREDICTION
from serving.model import load_model_file, model_kind
from steps import train
from steps.core import names
from steps.core.errors import ConfigError
from steps.core.settings import DataSettings, TrainSettings
from steps.ml import holdout
from steps.ml.dataset import encode, fit_spec, load_dataset
from tests.fixtures.training import TrainedRun, small_settings


def test_feature_spec_is_fitted_on_the_training_split_only(churn_parquet: Path) -> None:
    dataset = load_dataset(str(churn_parquet), target="churned")
    chosen = holdout.split(dataset, DataSettings(), 0.25)
    column = dataset.categorical[0]
    held = chosen.holdout.copy()
    held.loc[0, column] = "never-seen-in-training"
    spec = fit_spec(dataset, chosen.train)
    assert "never-seen-in-training" not in spec.categorical[column]
    encoded = encode(spec, held)
    assert np.isnan(encoded[0, spec.order.index(column)])


def test_validation_rows_come_from_the_training_split_stratified(churn_parquet: Path) -> None:
    dataset = load_dataset(str(churn_parquet), target="churned")
    chosen = holdout.split(dataset, DataSettings(), 0.2)
    params = TrainSettings(validation_size=0.25)
    fit, validation = holdout.carve_validation(chosen.train, "churned", params, seed=3)
    assert validation is not None
    assert len(fit) + len(validation) == len(chosen.train)
    assert len(validation) == pytest.approx(0.25 * len(chosen.train), abs=1)
    assert validation["churned"].mean() == pytest.approx(chosen.train["churned"].mean(), abs=0.01)
    logistic = params.model_copy(update={"model_kind": "sklearn-logreg"})
    assert holdout.carve_validation(chosen.train, "churned", logistic, seed=3)[1] is None


def test_run_without_data_uri_names_the_setting(tmp_path: Path) -> None:
    settings = small_settings(tmp_path, Path("unused")).model_copy(
        update={"data": small_settings(tmp_path, Path("x")).data.model_copy(update={"uri": None})}
    )
    with pytest.raises(ConfigError, match="LOOPLINE_DATA__URI"):
        train.run(settings)


@pytest.mark.integration
def test_run_logs_params_metrics_model_and_lineage(trained_run: TrainedRun) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    tracking.connect(trained_run.settings)
    run = MlflowClient().get_run(trained_run.run_id)
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["model_kind"] == "xgboost"
    assert int(params["rows_train"]) + int(params["rows_holdout"]) == int(params["rows_total"])
    assert len(params["data_hash"]) == 64
    assert tags["loopline.data_hash"] == params["data_hash"]
    assert tags["loopline.git_commit"]
    assert 0.6 < metrics["holdout_roc_auc"] <= 1.0
    artifacts = {a.path for a in MlflowClient().list_artifacts(trained_run.run_id)}
    assert {"data", "reference", "training", "recipe.json"} <= artifacts
    assert 1 <= metrics["best_iteration"] <= trained_run.settings.train.n_estimators
    curve = MlflowClient().get_metric_history(trained_run.run_id, "validation_logloss")
    assert len(curve) >= metrics["best_iteration"]
    assert int(params["rows_validation"]) > 0
    assert params["holdout"] == "newest 20% by event_timestamp"
    reference = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=trained_run.run_id, artifact_path=names.REFERENCE_ARTIFACT
        )
    )
    assert PREDICTION in reference.columns
    assert len(reference) == min(
        trained_run.settings.train.reference_rows, int(params["rows_train"])
    )
    model = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model")
    signature_columns = model.metadata.get_input_schema().input_names()
    assert signature_columns == params["features"].split(",")


@pytest.mark.integration
def test_pyfunc_and_native_model_give_identical_probabilities(trained_run: TrainedRun) -> None:
    import mlflow

    from serving.features import FeatureSpec
    from steps.io import tracking

    tracking.connect(trained_run.settings)
    holdout = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=trained_run.run_id, artifact_path=names.HOLDOUT_ARTIFACT
        )
    )
    native = Path(
        mlflow.artifacts.download_artifacts(
            run_id=trained_run.run_id, artifact_path="model/artifacts/native"
        )
    )
    spec = FeatureSpec.load(native)
    by_native = load_model_file(native, model_kind(native), spec).predict_proba(
        encode(spec, holdout)
    )
    by_pyfunc = mlflow.pyfunc.load_model(f"runs:/{trained_run.run_id}/model").predict(holdout)
    assert np.allclose(by_native, by_pyfunc, atol=1e-7)
    assert 0.0 < by_native.min() < by_native.max() < 1.0


@pytest.mark.integration
def test_same_seed_same_model_different_seed_different_model(
    tmp_path: Path, churn_parquet: Path, trained_run: TrainedRun
) -> None:
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    again = train.run(small_settings(tmp_path / "a", churn_parquet))
    other = train.run(small_settings(tmp_path / "b", churn_parquet).model_copy(update={"seed": 9}))
    tracking.connect(trained_run.settings)
    first = MlflowClient().get_run(trained_run.run_id).data.metrics
    assert again.metrics == {k: first[k] for k in again.metrics}
    assert other.metrics["holdout_roc_auc"] != again.metrics["holdout_roc_auc"]

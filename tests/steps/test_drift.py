"""The drift step end to end: a registered champion in a local MLflow store, an inference log in
the serving layout, the ``loopline drift`` command and its outputs, report and MLflow run."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from typer.testing import CliRunner

from steps import drift, evaluate, register, train
from steps.cli import app
from steps.core.errors import ConfigError, RegistryError
from steps.core.outputs import read_output
from steps.core.settings import DriftSettings, Settings, load_settings
from steps.io import tracking
from steps.ml.synthetic import NUMERIC_FEATURES, churn_frame
from tests.fixtures.inference_log import write_log, write_raw_part
from tests.fixtures.training import make_champion, small_settings

SHIFTED = ("monthly_charges", "data_usage_gb", "support_calls", "age")
OUTPUTS = ("drifted", "reason", "report_uri", "status", "model_version", "drifted_share")


@dataclass(frozen=True)
class Champion:
    """A trained, gated and registered churn model (version 1, alias champion)."""

    settings: Settings
    model: Any

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """P(churn) for each row, as the service scores it (numbers as float64)."""
        features = self.model.metadata.get_input_schema().input_names()
        inputs = frame[features].astype({name: "float64" for name in NUMERIC_FEATURES})
        return np.asarray(self.model.predict(inputs), dtype=np.float64)

    def log(self, root: Path, frame: pd.DataFrame, version: str = "1", **kwargs: Any) -> None:
        """Log ``frame`` as served by this champion, ending about ten minutes ago."""
        start = datetime.now(UTC) - timedelta(minutes=10) - timedelta(seconds=len(frame) // 100)
        write_log(str(root), frame, version, start, prediction=self.predict(frame), **kwargs)

    def with_drift(self, root: Path, **policy: Any) -> Settings:
        drift_settings = DriftSettings(log_uri=str(root), since="6h", **policy)
        return self.settings.model_copy(update={"drift": drift_settings})


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, churn_parquet: Path) -> Champion:
    import mlflow

    state = tmp_path_factory.mktemp("drift") / "state"
    settings = small_settings(state, churn_parquet)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(state.parent)
        run_id = train.run(settings, pipeline_run="drift-fixture").run_id
        evaluate.run(settings, run_id)
        make_champion(register.run(settings, run_id).model_version, settings)
        model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    return Champion(settings, model)


@pytest.fixture
def cli_env(champion: Champion, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The champion's state directory as the command line's LOOPLINE_STATE_DIR."""
    for name in list(__import__("os").environ):
        if name.startswith("LOOPLINE_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(champion.settings.state_dir))
    yield champion.settings.state_dir


def local_path(uri: str) -> Path:
    return Path(urlparse(uri).path)


@pytest.mark.integration
def test_stable_window_is_not_drift_and_everything_is_published(
    champion: Champion, cli_env: Path, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    log, out = tmp_path / "log", tmp_path / "out"
    champion.log(log, churn_frame(3_000, seed=11))
    champion.log(log, churn_frame(200, seed=12), version="7")
    arguments = ["drift", "--out-dir", str(out), "--log-uri", str(log), "--since", "6h"]
    result = CliRunner().invoke(app, [*arguments, "--run-name", "stable-check"])

    assert result.exit_code == 0, result.output
    assert {name: (out / name).exists() for name in OUTPUTS} == dict.fromkeys(OUTPUTS, True)
    assert read_output(out, "drifted") == "false"
    assert read_output(out, "status") == "stable"
    assert read_output(out, "model_version") == "1"
    assert read_output(out, "drifted_share") == "0.0000"
    reason = read_output(out, "reason")
    assert reason.startswith("0 of 12 features drifted (share 0.000 < threshold 0.300); ")
    assert "prediction stable: prediction (Wasserstein distance (normed)" in reason
    assert "stable churn v1" in result.output  # the one-line summary
    assert "3,000 rows in window" in result.output
    assert "200 of other versions excluded" in result.output

    # The report and scores are in the artifact store, under drift/<run name>/.
    store = champion.settings.resolved_artifact_store
    report_uri = read_output(out, "report_uri")
    assert report_uri == f"{store}/drift/stable-check/report.html"
    assert "Dataset Drift is NOT detected" in local_path(report_uri).read_text(encoding="utf-8")
    stored = json.loads((local_path(report_uri).parent / "scores.json").read_text())
    written = json.loads((out / "scores.json").read_text())
    assert stored == written
    assert len(written["columns"]) == 13  # 12 features and the prediction
    assert written["columns"]["prediction"]["kind"] == "prediction"
    assert written["columns"]["contract"]["method"] == "Jensen-Shannon distance"
    outcome = json.loads((out / "result.json").read_text())
    assert (outcome["rows_in_window"], outcome["rows_sampled"]) == (3_000, 3_000)
    assert outcome["excluded_versions"] == {"7": 200}

    # The MLflow run in <experiment>-drift holds the same report, metrics and tags.
    tracking.connect(champion.settings)
    experiment = mlflow.get_experiment_by_name(f"{champion.settings.experiment}-drift")
    assert experiment is not None
    run = MlflowClient().get_run(outcome["mlflow_run_id"])
    assert run.info.experiment_id == experiment.experiment_id
    assert run.info.run_name == "stable-check"
    assert run.data.metrics["drifted_share"] == 0.0
    assert run.data.metrics["rows_excluded"] == 200.0
    assert run.data.metrics["score.monthly_charges"] == pytest.approx(
        written["columns"]["monthly_charges"]["score"]
    )
    assert run.data.tags["loopline.model_version"] == "1"
    assert run.data.tags["loopline.drift.status"] == "stable"
    artifacts = {item.path for item in MlflowClient().list_artifacts(run.info.run_id, "drift")}
    assert {"drift/report.html", "drift/scores.json", "drift/result.json"} <= artifacts


@pytest.mark.integration
def test_covariate_shift_is_drift_with_the_drifted_features_named(
    champion: Champion, tmp_path: Path
) -> None:
    frame = churn_frame(3_000, seed=13, scenario="covariate", shift_features=SHIFTED)
    champion.log(tmp_path, frame)
    result = drift.run(champion.with_drift(tmp_path), run_name="covariate-check")
    assert result.drifted is True
    assert result.status == "drifted"
    features = [name for name in result.drifted_columns if name != "prediction"]
    assert set(SHIFTED) <= set(features)
    assert result.drifted_share == len(features) / 12
    assert result.reason.startswith(f"{len(features)} of 12 features drifted (share ")
    assert result.prediction_drifted is True  # the shift moves the churn probability
    assert result.report_uri.endswith("/drift/covariate-check/report.html")
    assert "Dataset Drift is detected" in local_path(result.report_uri).read_text()


@pytest.mark.integration
def test_a_drifted_critical_feature_is_drift_below_the_share(
    champion: Champion, tmp_path: Path
) -> None:
    frame = churn_frame(2_000, seed=14, scenario="covariate", shift_features=("age",))
    champion.log(tmp_path, frame)
    plain = drift.run(champion.with_drift(tmp_path), run_name="critical-plain")
    assert (plain.drifted, plain.drifted_columns) == (False, ("age",))
    critical = drift.run(
        champion.with_drift(tmp_path, critical_features=("age",)), run_name="critical-age"
    )
    assert critical.drifted is True
    assert "critical drifted: age (Wasserstein distance (normed)" in critical.reason


@pytest.mark.integration
def test_too_few_rows_is_insufficient_data_and_exit_zero(
    champion: Champion, cli_env: Path, tmp_path: Path
) -> None:
    log, out = tmp_path / "log", tmp_path / "out"
    champion.log(log, churn_frame(100, seed=15))
    arguments = ["drift", "--out-dir", str(out), "--log-uri", str(log), "--min-rows", "500"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert read_output(out, "drifted") == "false"
    assert read_output(out, "status") == "insufficient_data"
    assert read_output(out, "report_uri") == ""
    assert read_output(out, "reason").startswith(
        "insufficient data: 100 rows in the window, fewer than the minimum 500 (since "
    )
    assert json.loads((out / "scores.json").read_text())["columns"] == {}


@pytest.mark.integration
def test_rows_of_other_versions_only_are_excluded_then_insufficient(
    champion: Champion, tmp_path: Path
) -> None:
    champion.log(tmp_path, churn_frame(800, seed=16), version="2")
    result = drift.run(champion.with_drift(tmp_path, min_rows=100))
    assert result.status == "insufficient_data"
    assert (result.rows_in_window, result.rows_excluded) == (0, 800)
    assert "800 rows of other model versions excluded" in result.reason
    assert f"version 1, 1 file(s) under {tmp_path}/model=churn" in result.reason


@pytest.mark.integration
def test_last_rows_window_from_the_command_line(
    champion: Champion, cli_env: Path, tmp_path: Path
) -> None:
    log, out = tmp_path / "log", tmp_path / "out"
    champion.log(log, churn_frame(2_000, seed=17))
    arguments = ["drift", "--out-dir", str(out), "--log-uri", str(log), "--since", "all"]
    result = CliRunner().invoke(app, [*arguments, "--last-rows", "1200", "--sample-cap", "1000"])
    assert result.exit_code == 0, result.output
    outcome = json.loads((out / "result.json").read_text())
    assert (outcome["rows_in_window"], outcome["rows_sampled"]) == (1_200, 1_000)
    assert outcome["window"] == "last 1200 rows"


@pytest.mark.integration
def test_no_champion_is_an_error_naming_model_and_alias(loopline_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["drift", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == RegistryError.exit_code
    assert "model 'churn' has no 'champion' alias" in result.output
    assert not (tmp_path / "out" / "drifted").exists()


@pytest.mark.integration
def test_a_champion_without_reference_is_an_error_naming_the_artifact(
    loopline_env: Path, tmp_path: Path
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    settings = load_settings()
    tracking.connect(settings)
    with mlflow.start_run() as run:
        mlflow.log_param("features", "age")
    client = MlflowClient()
    client.create_registered_model("churn")
    version = client.create_model_version(
        "churn", source=f"{run.info.artifact_uri}/model", run_id=run.info.run_id
    )
    client.set_registered_model_alias("churn", "champion", version.version)
    with pytest.raises(RegistryError, match=r"churn@champion \(version 1, run .*reference"):
        drift.run(settings)
    result = CliRunner().invoke(app, ["drift", "--out-dir", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "has no reference sample at artifact reference/reference.parquet" in result.output


@pytest.mark.integration
def test_a_wrongly_typed_log_column_exits_non_zero_naming_it(
    champion: Champion, cli_env: Path, tmp_path: Path
) -> None:
    frame = churn_frame(600, seed=18)
    now = datetime.now(UTC)
    columns: dict[str, pa.Array] = {
        "timestamp": pa.array([now] * len(frame), pa.timestamp("ms", "UTC")),
        "model_version": pa.array(["1"] * len(frame)),
        "prediction": pa.array(champion.predict(frame)),
        **{name: pa.array(frame[name]) for name in frame.columns},
    }
    columns["age"] = pa.array(frame["age"].astype(str))
    path = write_raw_part(tmp_path / "log", now.date().isoformat(), columns)
    result = CliRunner().invoke(
        app, ["drift", "--out-dir", str(tmp_path / "out"), "--log-uri", str(tmp_path / "log")]
    )
    assert result.exit_code == 2
    assert f"inference log file {path} has column(s) of the wrong type" in result.output
    assert "age is string, expected float64" in result.output


@pytest.mark.integration
def test_a_critical_feature_the_model_lacks_is_a_config_error(
    champion: Champion, tmp_path: Path
) -> None:
    with pytest.raises(ConfigError, match="LOOPLINE_DRIFT__CRITICAL_FEATURES names ghost, not a"):
        drift.run(champion.with_drift(tmp_path, critical_features=("ghost",)))


def test_help_documents_every_flag() -> None:
    result = CliRunner().invoke(app, ["drift", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag in (
        "--out-dir", "--log-uri", "--since", "--last-rows", "--min-rows", "--sample-cap",
        "--drift-share", "--critical-features", "--numeric-method", "--categorical-method",
        "--numeric-threshold", "--categorical-threshold", "--column-threshold", "--model-name",
        "--seed", "--run-name",
    ):  # fmt: skip
        assert flag in result.output, flag
    assert "90m, 24h, 7d, 2w, or all" in result.output


def test_a_malformed_column_threshold_flag_is_named(loopline_env: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    arguments = ["drift", "--out-dir", str(out), "--column-threshold", "age:0.2"]
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert "--column-threshold expects NAME=NUMBER such as age=0.2, got 'age:0.2'" in result.output


def test_a_bad_since_is_named_with_its_variable(loopline_env: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["drift", "--out-dir", str(tmp_path), "--since", "3 days"])
    assert result.exit_code == 2
    assert "LOOPLINE_DRIFT__SINCE" in result.output


def test_drift_settings_from_the_environment(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_DRIFT__SINCE", "90m")
    monkeypatch.setenv("LOOPLINE_DRIFT__CRITICAL_FEATURES", '["age", "prediction"]')
    monkeypatch.setenv("LOOPLINE_DRIFT__COLUMN_THRESHOLDS", '{"age": 0.2}')
    monkeypatch.setenv("LOOPLINE_DRIFT__NUMERIC_METHOD", "ks")
    settings = load_settings()
    assert settings.drift.since_delta == timedelta(minutes=90)
    assert settings.drift.critical_features == ("age", "prediction")
    assert settings.drift.column_thresholds == {"age": 0.2}
    assert settings.drift.numeric_method == "ks"
    assert drift.log_uri(settings) == str(loopline_env.resolve() / "inference-log")


@pytest.mark.parametrize(
    ("since", "expected"),
    [
        ("30s", timedelta(seconds=30)),
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("2w", timedelta(weeks=2)),
        ("all", None),
    ],
)
def test_since_durations(since: str, expected: timedelta | None) -> None:
    assert DriftSettings(since=since).since_delta == expected


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("since", "0h", "should match pattern"),
        ("since", "24", "should match pattern"),
        ("log_uri", "http://host/log", "expected a local directory, file:// or s3://"),
        ("log_uri", "s3:///prefix", "with a bucket name"),
        ("numeric_method", "chisquare", "Input should be 'wasserstein'"),
        ("drift_share", 0.0, "greater than 0"),
        ("sample_cap", 10, "greater than or equal to 100"),
    ],
)
def test_bad_drift_settings_are_named(
    loopline_env: Path, setting: str, value: object, message: str
) -> None:
    with pytest.raises(ConfigError, match=f"LOOPLINE_DRIFT__{setting.upper()}") as caught:
        load_settings(drift={setting: value})
    assert message in str(caught.value)

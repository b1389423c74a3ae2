"""Drift monitoring end to end on one machine: the champion served by ``bentoml serve`` logs
real traffic, and the rendered ``drift-monitor`` CronWorkflow, run by the local runner, triggers
a ``retrain`` that completes when the traffic drifted, and does nothing when it did not.

The champion is trained on a table whose label column is ``default`` (not the settings' default
``churned``), with its own hyper-parameters: the triggered retrain, which passes no recipe
parameter, must train the champion's recipe."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from steps import evaluate, register, train
from steps.core import names
from steps.io import tracking
from steps.io.registry import Registry
from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.record import RunRecord, read_record
from steps.ml import servability
from steps.ml.synthetic import churn_frame
from tests.fixtures.common import isolated_stack, stop_stack
from tests.fixtures.serving import start_server
from tests.fixtures.training import small_settings

pytestmark = pytest.mark.integration

ARGO = Path(__file__).resolve().parents[2] / "argo"
TRAFFIC_ROWS = 1_200
# Five of the twelve churn features shift: above the default drift share of 0.3.
SHIFTED = ("monthly_charges", "data_usage_gb", "support_calls", "tenure_months", "age")


@dataclass(frozen=True)
class Champion:
    """A local store with a served-ready champion and the data it was trained on."""

    state: Path
    data: Path
    model_dir: Path


LABEL = "default"


@pytest.fixture(scope="module")
def champion(tmp_path_factory: pytest.TempPathFactory, churn_parquet: Path) -> Iterator[Champion]:
    import pandas as pd

    root = tmp_path_factory.mktemp("drift-e2e")
    state = root / "state"
    data = root / "credit.parquet"
    pd.read_parquet(churn_parquet).rename(columns={"churned": LABEL}).to_parquet(data)
    settings = small_settings(state, data, n_estimators=30, max_depth=3)
    settings = settings.model_copy(
        update={"data": settings.data.model_copy(update={"target": LABEL})}
    )
    run_id = train.run(settings, pipeline_run="seed-champion").run_id
    evaluate.run(settings, run_id)
    registered = register.run(settings, run_id)
    tracking.connect(settings)
    # Registration never moves the champion (a deployment does): make it by hand, as an
    # operator's `loopline model promote` would.
    registry = Registry(settings.model_name)
    registry.promote_champion(registered.model_version)
    version = registry.resolve(None, "champion")
    model_dir = servability.materialize(settings, version, "champion", state.parent / "model")
    yield Champion(state=state, data=data, model_dir=model_dir)


def _send_traffic(champion: Champion, log_dir: Path, scenario: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env.update(
        {
            "LOOPLINE_SERVING__MODEL_DIR": str(champion.model_dir),
            "LOOPLINE_SERVING__LEAN_IMPORTS": "true",
            "LOOPLINE_SERVING__LOG_DIR": str(log_dir),
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    server = start_server(env, tmp_path / "server.log")
    frame = churn_frame(
        TRAFFIC_ROWS, seed=2024, scenario=scenario, shift_sigma=1.5, shift_features=SHIFTED
    )
    features = frame.drop(columns=["customer_id", "event_timestamp", "churned"])  # as served
    rows = [
        {k: (None if v != v else v) for k, v in row.items()}  # NaN -> missing
        for row in features.to_dict(orient="records")
    ]
    for start in range(0, len(rows), 200):
        response = server.http.post("/predict_batch", json=rows[start : start + 200])
        assert response.status_code == 200, response.text
    assert server.stop(signal.SIGTERM) == 0  # a normal stop flushes the inference log


def _monitor(champion: Champion, log_dir: Path, monkeypatch: pytest.MonkeyPatch) -> RunRecord:
    from steps.core.settings import Settings

    monkeypatch.setenv("LOOPLINE_DRIFT__LOG_URI", str(log_dir))
    isolated_stack(monkeypatch)  # a triggered retrain ends with a deploy to the local stand-in
    try:
        return run_workflow(
            ARGO / "drift-monitor.yaml",
            {"since": "all", "min-rows": "500", "data-uri": str(champion.data)},
            settings=Settings(state_dir=champion.state),
            options=RunOptions(backoff_scale=0.0),
        )
    finally:
        stop_stack(champion.state)


def test_drifted_traffic_triggers_a_retrain_that_completes(
    champion: Champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    log_dir = tmp_path / "inference-log"
    _send_traffic(champion, log_dir, "covariate", tmp_path)

    record = _monitor(champion, log_dir, monkeypatch)

    assert record.phase == "Succeeded", [(n.display_name, n.phase, n.message) for n in record.nodes]
    check = record.node("check").outputs.parameters
    assert check["drifted"] == "true", check["reason"]
    assert record.node("trigger-retrain").phase == "Succeeded"
    (child,) = record.children
    assert child.phase == "Succeeded"
    retrain = read_record(Path(child.record))
    assert retrain.parameters["reason"] == "drift"
    # The key of the check's report, built from the monitor's name, not read from the check.
    assert retrain.parameters["drift-report-uri"] == f"drift/{record.name}/report.html"
    assert check["report_uri"].endswith(retrain.parameters["drift-report-uri"])
    assert retrain.node("register").phase == "Succeeded"
    settings = small_settings(champion.state, champion.data)
    tracking.connect(settings)
    versions = MlflowClient().search_model_versions("name='churn'")
    # Retrained on the champion's own table with its recipe, the model repeats v1 (same data
    # hash, same held-out metrics): register names v1 and registers nothing new.
    assert retrain.node("register").outputs.parameters["model_version"] == "1"
    assert [str(v.version) for v in versions] == ["1"]
    register_log = Path(retrain.node("register").log or "").read_text()
    assert "identical to a registered version" in register_log
    # The child passed no recipe parameter: it trained the champion's recipe, and says so.
    child_run = MlflowClient().get_run(retrain.node("train").outputs.parameters["run_id"])
    assert child_run.data.params["target"] == LABEL
    assert (child_run.data.params["n_estimators"], child_run.data.params["max_depth"]) == (
        "30",
        "3",
    )
    assert child_run.data.tags["loopline.recipe.source"].startswith("champion churn v1 (run ")
    logged = json.loads(
        mlflow.artifacts.load_text(f"runs:/{child_run.info.run_id}/{names.RECIPE_ARTIFACT}")
    )
    assert logged["origins"]["data.target"] == "champion"
    assert logged["origins"]["train.max_depth"] == "champion"
    assert logged["values"]["data.target"] == LABEL


def test_undrifted_traffic_triggers_nothing(
    champion: Champion, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log_dir = tmp_path / "inference-log"
    _send_traffic(champion, log_dir, "none", tmp_path)

    record = _monitor(champion, log_dir, monkeypatch)

    assert record.phase == "Succeeded"
    assert record.node("check").outputs.parameters["drifted"] == "false"
    assert record.node("trigger-retrain").phase == "Skipped"
    assert record.children == []

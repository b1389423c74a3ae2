"""The real retrain workflow, as rendered in argo/, run end to end by the local runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from steps.core.settings import Settings
from steps.localrun.executor import RunOptions, run_workflow

pytestmark = pytest.mark.integration

ARGO = Path(__file__).resolve().parents[2] / "argo"


def test_rendered_retrain_trains_gates_registers_builds_and_skips_the_image(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    # Nodes inherit the environment: few trees keep this test short.
    monkeypatch.setenv("LOOPLINE_TRAIN__N_ESTIMATORS", "30")
    monkeypatch.chdir(tmp_path)  # the state dir is relative: nodes must still share it
    settings = Settings(state_dir=Path(".loopline"))

    record = run_workflow(
        ARGO / "retrain-submit.yaml",
        {"data-uri": str(churn_parquet), "reason": "manual"},
        settings=settings,
        options=RunOptions(backoff_scale=0.0),
    )

    assert record.phase == "Succeeded", [(n.display_name, n.phase, n.message) for n in record.nodes]
    phases = {n.display_name: n.phase for n in record.nodes if n.type != "DAG"}
    assert phases == dict.fromkeys(
        ("train", "evaluate", "register", "build", "containerize"), "Succeeded"
    )
    out = {n.display_name: n.outputs.parameters for n in record.nodes}
    assert out["evaluate"]["decision"] == "promote"
    assert out["register"] == {"model_version": "1", "champion_set": "true"}
    assert out["containerize"]["image_ref"] == "none"
    # The key-only S3 artifact of the build landed in the local artifact store.
    assert out["build"]["archive_uri"].startswith(settings.resolved_artifact_store)
    assert Path(out["build"]["archive_uri"].removeprefix("file://")).is_file()
    saved = json.loads((Path(record.run_dir) / "record.json").read_text())
    assert saved["phase"] == "Succeeded"
    tracking.connect(settings)
    version = MlflowClient().get_model_version("churn", "1")
    assert version.run_id == out["train"]["run_id"]
    assert version.tags["pipeline_run"] == record.name

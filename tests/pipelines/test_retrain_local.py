"""The real retrain workflow, as rendered in argo/, run end to end by the local runner."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from steps.core.settings import Settings
from steps.localrun.executor import RunOptions, run_workflow
from steps.localrun.record import RunRecord
from tests.fixtures.common import isolated_stack, stop_stack

pytestmark = pytest.mark.integration

ARGO = Path(__file__).resolve().parents[2] / "argo"


def test_rendered_retrain_trains_gates_registers_builds_pushes_the_image_deploys_and_promotes(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    # Nodes inherit the environment: few trees keep this test short.
    monkeypatch.setenv("LOOPLINE_TRAIN__N_ESTIMATORS", "30")
    monkeypatch.chdir(tmp_path)  # the state dir is relative: nodes must still share it
    isolated_stack(monkeypatch)
    settings = Settings(state_dir=Path(".loopline"))

    try:
        record = run_workflow(
            ARGO / "retrain-submit.yaml",
            {"data-uri": str(churn_parquet), "reason": "manual"},
            settings=settings,
            options=RunOptions(backoff_scale=0.0),
        )
    finally:
        stopped = stop_stack(settings.state_path)

    assert record.phase == "Succeeded", [(n.display_name, n.phase, n.message) for n in record.nodes]
    phases = {n.display_name: n.phase for n in record.nodes if n.type != "DAG"}
    assert phases == dict.fromkeys(
        (
            "train",
            "evaluate",
            "register",
            "build",
            "fetch-bento",
            "containerize",
            "deploy",
            "promote",
        ),
        "Succeeded",
    )
    # The first version goes straight to stable at 100 %; the deploy node had started the stack.
    assert out_of(record, "deploy") == {
        "track": "stable",
        "canary_weight": "0",
        "endpoint": out_of(record, "deploy")["endpoint"],
    }
    assert "stable" in stopped and "registry" in stopped
    # Already on stable at 100 %: the promotion has nothing to do, and says so.
    promote = out_of(record, "promote")
    assert (promote["outcome"], promote["final_weight"]) == ("promoted", "100")
    assert "already serves 100% on stable" in promote["reasons"]
    out = {n.display_name: n.outputs.parameters for n in record.nodes}
    assert out["evaluate"]["decision"] == "promote"
    assert out["register"] == {"model_version": "1"}
    # The same containerize command line as in the cluster, pushing to the local registry.
    image = f"{settings.image.registry}/{out['build']['bento_tag']}"
    assert re.fullmatch(
        rf"{re.escape(image)}@sha256:[0-9a-f]{{64}}", out["containerize"]["image_ref"]
    )
    assert out["containerize"]["image_built"] == "true"
    # The build pod took the bento from fetch-bento's artifact, not from the store by URI.
    bento_artifact = record.node("fetch-bento").outputs.artifacts["bento-archive"]
    archive_name = Path(out["build"]["archive_uri"]).name
    assert Path(bento_artifact.removeprefix("file://"), archive_name).is_file()
    # The key-only S3 artifact of the build landed in the local artifact store.
    assert out["build"]["archive_uri"].startswith(settings.resolved_artifact_store)
    assert Path(out["build"]["archive_uri"].removeprefix("file://")).is_file()
    saved = json.loads((Path(record.run_dir) / "record.json").read_text())
    assert saved["phase"] == "Succeeded"
    tracking.connect(settings)
    version = MlflowClient().get_model_version("churn", "1")
    assert version.run_id == out["train"]["run_id"]
    assert version.tags["pipeline_run"] == record.name
    # The deploy step recorded the pushed image on the version (the image pod has no MLflow)
    assert version.tags["image.ref"] == out["containerize"]["image_ref"]


def out_of(record: RunRecord, task: str) -> dict[str, str]:
    """The output parameters of ``task`` in ``record``."""
    return dict(record.node(task).outputs.parameters)

"""The foundation end to end against real services: an ``mlflow server`` process (SQLite
backend, artifacts proxied to S3) and an S3-protocol server holding the training data."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.mlflow_server import MlflowServer
from tests.fixtures.s3 import S3Server

pytestmark = pytest.mark.integration


def _loopline(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_step_clis_train_evaluate_register_through_server_and_s3(
    tmp_path: Path,
    churn_parquet: Path,
    mlflow_server: MlflowServer,
    s3_server: S3Server,
    s3_bucket: str,
) -> None:
    s3_server.client().upload_file(str(churn_parquet), s3_bucket, "training/churn.parquet")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")},
        **s3_server.subprocess_env(),
        "LOOPLINE_TRACKING_URI": mlflow_server.uri,
        "LOOPLINE_MODEL_NAME": "churn-server-e2e",
        "LOOPLINE_EXPERIMENT": "server-e2e",
        "LOOPLINE_TRAIN__N_ESTIMATORS": "30",
        "LOOPLINE_STATE_DIR": str(tmp_path / "state"),
    }
    out = tmp_path / "out"

    trained = _loopline(
        ["steps.train", "--data-uri", f"s3://{s3_bucket}/training/churn.parquet",
         "--out-dir", str(out / "train"), "--pipeline-run", "wf-e2e"],
        env, tmp_path,
    )  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    run_id = (out / "train" / "run_id").read_text()
    evaluated = _loopline(
        ["steps.evaluate", "--run-id", run_id, "--out-dir", str(out / "eval")], env, tmp_path
    )
    assert evaluated.returncode == 0, evaluated.stderr
    assert (out / "eval" / "decision").read_text() == "promote"
    registered = _loopline(
        ["steps.register", "--run-id", run_id, "--out-dir", str(out / "reg"),
         "--pipeline-run", "wf-e2e"],
        env, tmp_path,
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    assert (out / "reg" / "model_version").read_text() == "1"

    # Artifacts went through the server into the S3 bucket, not to the local disk.
    keys = [
        item["Key"]
        for page in s3_server.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=mlflow_server.artifact_bucket)
        for item in page.get("Contents", [])
    ]
    assert any(key.endswith("evaluation/report.html") for key in keys)
    assert any(key.endswith("reference/reference.parquet") for key in keys)
    assert any(key.endswith("native/model.ubj") for key in keys)
    assert not (tmp_path / "state" / "mlflow.db").exists()

    # The registry over REST: aliases and lineage as the register step set them.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server.uri, registry_uri=mlflow_server.uri)
    model = client.get_registered_model("churn-server-e2e")
    assert {k: str(v) for k, v in model.aliases.items()} == {"challenger": "1"}
    version = client.get_model_version("churn-server-e2e", "1")
    assert version.tags["pipeline_run"] == "wf-e2e"
    assert version.run_id == run_id
    data_hash = (out / "train" / "data_hash").read_text()
    assert version.tags["data_hash"] == data_hash

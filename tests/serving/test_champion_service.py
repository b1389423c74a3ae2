"""The real champion, as the registry holds it, served by ``bentoml serve``: the service answers
the same probabilities as the model loaded from MLflow."""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.serving import start_server
from tests.fixtures.training import TrainedRun

pytestmark = pytest.mark.integration


def test_served_champion_matches_the_mlflow_model(
    champion_store: TrainedRun, tmp_path: Path
) -> None:
    import mlflow
    import pandas as pd

    from scripts.serve import champion_dir
    from steps.core.names import HOLDOUT_ARTIFACT
    from steps.io import tracking

    model_dir = champion_dir(champion_store.settings)
    tracking.connect(champion_store.settings)
    holdout = pd.read_parquet(
        mlflow.artifacts.download_artifacts(
            run_id=champion_store.run_id, artifact_path=HOLDOUT_ARTIFACT
        )
    ).head(300)
    model = mlflow.pyfunc.load_model("models:/churn@champion")
    schema = model.metadata.get_input_schema()
    assert schema is not None
    # The model's features only: the held-out file also has the label and the split's row key.
    features = holdout[schema.input_names()]
    expected = model.predict(features)
    rows = [
        {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in features.to_dict(orient="records")
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOPLINE_")}
    env.update(
        {
            "LOOPLINE_SERVING__MODEL_DIR": str(model_dir),
            "LOOPLINE_SERVING__LEAN_IMPORTS": "true",
            "LOOPLINE_SERVING__LOG_DIR": str(tmp_path / "log"),
            "BENTOML_HOME": str(tmp_path / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
        }
    )
    server = start_server(env, tmp_path / "server.log")
    try:
        batch = server.http.post("/predict_batch", json=rows)
        single = server.http.post("/predict", json=rows[0])
        metadata = server.http.post("/metadata", json={})
    finally:
        server.stop()
    assert batch.status_code == 200, batch.text
    served = np.array([answer["probability"] for answer in batch.json()])
    assert np.allclose(served, expected, atol=1e-6)
    assert single.json()["probability"] == pytest.approx(float(expected[0]), abs=1e-6)
    assert metadata.json()["run_id"] == champion_store.run_id
    assert metadata.json()["alias"] == "champion"

"""Every model kind the workflow offers goes all the way: train -> gate -> register -> build ->
``make serve`` (scripts/serve.py), whose probabilities equal the logged MLflow model's.

One MLflow store for every kind (one registered model per kind, so each is its own first
champion), the 4k-row generated churn data and 40 trees keep it to about a minute per kind.
"""

from __future__ import annotations

import math
import os
import re
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, get_args

import numpy as np
import pandas as pd
import pytest

from serving.model import MODEL_FILES
from steps import build, evaluate, register, train
from steps.core.settings import ModelKind, Settings
from steps.ml import servability
from tests.fixtures.serving import REPO, start_server
from tests.fixtures.training import make_champion, small_settings

pytestmark = pytest.mark.integration

SERVED_AS = {"xgboost": "xgboost", "sklearn-logreg": "sklearn", "sklearn-hgb": "sklearn"}
LOCKS = {"xgboost": "serving/requirements.lock", "sklearn": "serving/requirements-sklearn.lock"}
ROWS_SCORED = 200


def test_every_offered_kind_is_covered() -> None:
    assert set(SERVED_AS) == set(get_args(ModelKind))


@pytest.fixture(scope="module")
def state(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One local MLflow store (and BentoML home) shared by every kind."""
    root = tmp_path_factory.mktemp("kinds")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)  # nothing a step writes relative to the working directory lands in git
        yield root / "state"


def _pins(text: str) -> set[tuple[str, str]]:
    return {
        (match.group(1).lower(), match.group(2))
        for match in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, re.MULTILINE)
    }


def _request_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [
        {str(k): None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def _mlflow_probabilities(settings: Settings, data: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of the data set and the champion's probabilities through MLflow's pyfunc."""
    import mlflow

    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}@champion")
    schema = model.metadata.get_input_schema()
    assert schema is not None
    frame = pd.read_parquet(data).sample(ROWS_SCORED, random_state=3)[schema.input_names()]
    # The signature's numeric columns are doubles (integers cannot carry missing values).
    frame = frame.astype({c: "float64" for c in frame.select_dtypes("integer").columns})
    return frame, np.asarray(model.predict(frame), dtype=np.float64)


@pytest.mark.parametrize("kind", get_args(ModelKind))
def test_a_model_kind_is_trained_gated_registered_built_and_served(
    kind: ModelKind, state: Path, churn_parquet: Path, tmp_path: Path, serving_pycache: Path
) -> None:
    import bentoml

    served_as = SERVED_AS[kind]
    settings = small_settings(state, churn_parquet, model_kind=kind).model_copy(
        update={"model_name": f"churn-{kind}"}
    )

    # Trained and gated,
    run_id = train.run(settings, pipeline_run=f"kinds-{kind}").run_id
    evaluation, _ = evaluate.run(settings, run_id)
    assert evaluation.decision == "promote", evaluation.reasons
    # registered once found servable by its kind's image (champion as a first deployment would),
    registered = register.run(settings, run_id)
    assert registered.model_version == "1"
    make_champion(registered.model_version, settings)
    assert registered.servability.model_kind == served_as
    assert registered.servability.max_abs_diff <= servability.MAX_ABS_DIFF

    # built into a bento that installs exactly its kind's lock,
    built = build.run(settings, alias="champion", platform="linux/amd64,linux/arm64")
    assert (built.model_kind, built.requirements_lock) == (served_as, LOCKS[served_as])
    archive = Path(built.archive_uri.removeprefix("file://"))
    model_dir = f"./models/{built.model_tag.replace(':', '/')}"
    with tarfile.open(archive) as bento:
        names = set(bento.getnames())
        requirements = bento.extractfile("./env/python/requirements.txt").read().decode()  # type: ignore[union-attr]
    assert f"{model_dir}/{MODEL_FILES[served_as]}" in names
    assert _pins(requirements) == _pins((REPO / LOCKS[served_as]).read_text())

    # and served by `make serve` with the MLflow model's probabilities.
    frame, expected = _mlflow_probabilities(settings, churn_parquet)
    home = Path(bentoml.models.get(built.model_tag).path).parents[2]  # the store build used
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPLINE_", "BENTOML_"))}
    env.update(
        {
            "LOOPLINE_STATE_DIR": str(state),
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "True",
            "PYTHONPYCACHEPREFIX": str(serving_pycache),
        }
    )
    server = start_server(
        env,
        tmp_path / "serve.log",
        lambda port: [
            sys.executable,
            str(REPO / "scripts" / "serve.py"),
            "--model-tag",
            built.model_tag,
            "--port",
            str(port),
            "--log-dir",
            str(tmp_path / "inference-log"),
        ],
    )
    try:
        answers = server.http.post("/predict_batch", json=_request_rows(frame)).json()
        metadata = server.http.post("/metadata", json={}).json()
    finally:
        assert server.stop() == 0, server.output()
    served = np.array([answer["probability"] for answer in answers])
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)
    assert served.std() > 0.01  # a real model, not a constant
    assert (metadata["model_name"], metadata["model_version"]) == (settings.model_name, "1")
    assert metadata["run_id"] == run_id

"""The service built into a bento with the build step's bentofile, then served from the bento."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.fixtures.serving import (
    METADATA,
    REPO,
    TinyModel,
    sample_rows,
    serving_env,
    start_server,
)

pytestmark = pytest.mark.integration

# steps/build.py's own bentofile, so this checks what the pipeline ships.
_BUILD = """
import json, os, sys
from pathlib import Path
import bentoml, yaml
from steps.build import bentofile
config = Path(sys.argv[3]) / "bentofile.yaml"
config.write_text(yaml.safe_dump(bentofile(sys.argv[1], sys.argv[4])))
bento = bentoml.bentos.build_bentofile(str(config), build_ctx=sys.argv[2])
print(json.dumps({"tag": str(bento.tag), "path": str(bento.path)}))
"""


def _pins(text: str) -> set[tuple[str, str]]:
    """``name==version`` pins of a requirements file (BentoML rewrites markers' spacing)."""
    return {
        (match.group(1).lower(), match.group(2))
        for match in re.finditer(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", text, re.MULTILINE)
    }


@pytest.mark.parametrize(
    ("kind", "lock"),
    [("xgboost", "requirements.lock"), ("sklearn", "requirements-sklearn.lock")],
)
def test_a_bento_holds_serving_only_and_serves_its_model_with_its_tag(
    kind: str,
    lock: str,
    tiny_model: TinyModel,
    tiny_sklearn_model: TinyModel,
    tmp_path: Path,
    serving_pycache: Path,
) -> None:
    model = tiny_model if kind == "xgboost" else tiny_sklearn_model
    home = tmp_path / "bentoml-home"
    shutil.copytree(model.bentoml_home, home)
    env = {**serving_env(model, tmp_path / "log", serving_pycache), "BENTOML_HOME": str(home)}
    env.pop("LOOPLINE_SERVING__LEAN_IMPORTS")  # the build process may import anything
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, model.tag, str(REPO), str(tmp_path), kind],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    built = json.loads(done.stdout.splitlines()[-1])
    bento_dir = Path(built["path"])
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.py")
    }
    assert sources == {f"serving/{p.name}" for p in (REPO / "serving").glob("*.py")}
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert {"name": "LOOPLINE_SERVING__MODEL_TAG", "value": model.tag} in [
        {k: e[k] for k in ("name", "value")} for e in info["envs"]
    ]
    assert [m["tag"] for m in info["services"][0]["models"]] == [model.tag]
    # The image installs exactly the kind's lock.
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text()
    assert _pins(requirements) == _pins((REPO / "serving" / lock).read_text())

    # Served as a pod serves it: serving.launch from the bento's own sources, on the bento's
    # directory. Outside an image the bento's envs are not applied: they are set here.
    server = start_server(
        {**env, "LOOPLINE_SERVING__LEAN_IMPORTS": "true"},
        tmp_path / "bento-server.log",
        lambda port: [sys.executable, "-m", "serving.launch", str(bento_dir), "--port", str(port)],
        cwd=bento_dir / "src",
    )
    try:
        response = server.http.post("/metadata", json={})
        assert response.json() == {**METADATA, "bento_tag": built["tag"]}
        rows = sample_rows(20)
        answers = server.http.post("/predict_batch", json=rows).json()
        np.testing.assert_allclose(
            [a["probability"] for a in answers], model.reference_probability(rows), atol=1e-6
        )
        version = built["tag"].partition(":")[2]
        assert f'service_version="{version}"' in server.metrics()
    finally:
        assert server.stop() == 0

"""Tests for serving/bento.py: the bento holds serving/ only, pinned, and serves its model."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx
import pytest
import yaml

from serving.bento import PYTHON_PACKAGES, bento_build_options
from tests.fixtures.serving import METADATA, REPO, TinyModel, serving_env, start_server


def test_pins_match_the_lock_file() -> None:
    locked = {
        p["name"]: p["version"] for p in tomllib.loads((REPO / "uv.lock").read_text())["package"]
    }
    for requirement in PYTHON_PACKAGES:
        name, _, version = requirement.partition("==")
        assert locked[name] == version, f"{name}: bento pins {version}, uv.lock has {locked[name]}"


def test_no_training_library_is_packaged() -> None:
    names = {requirement.partition("==")[0] for requirement in PYTHON_PACKAGES}
    assert not names & {"scikit-learn", "scipy", "pandas", "mlflow", "xgboost"}


@pytest.mark.parametrize("tag", ["churn", "churn:latest", ":abc"])
def test_the_model_tag_must_name_an_exact_version(tag: str) -> None:
    with pytest.raises(ValueError, match="exact version"):
        bento_build_options(tag)


_BUILD = """
import json, sys
import bentoml
from serving.bento import bento_build_options
options = bento_build_options(sys.argv[1], labels={"model_version": "7"}, lock_packages=False)
bento = bentoml.bentos.build(**options, build_ctx=sys.argv[2])
print(json.dumps({"tag": str(bento.tag), "path": str(bento.path)}))
"""


@pytest.mark.integration
def test_a_built_bento_holds_serving_only_and_serves_its_model(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    home = tmp_path / "bentoml-home"
    shutil.copytree(tiny_model.bentoml_home, home)
    env = {**serving_env(tiny_model, tmp_path / "log", serving_pycache), "BENTOML_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, tiny_model.tag, str(REPO)], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    built = json.loads(done.stdout.splitlines()[-1])
    bento_dir = Path(built["path"])
    sources = sorted(
        p.relative_to(bento_dir / "src").as_posix()
        for p in (bento_dir / "src").rglob("*")
        if p.is_file()
    )
    expected = sorted(f"serving/{p.name}" for p in (REPO / "serving").glob("*.py"))
    assert [s for s in sources if s != "bentofile.yaml"] == expected
    requirements = (bento_dir / "env" / "python" / "requirements.txt").read_text().split()
    assert set(PYTHON_PACKAGES) <= set(requirements)
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert info["envs"] == [
        {"name": "LOOPLINE_SERVING__MODEL_TAG", "value": tiny_model.tag, "stage": "all"}
    ]
    assert [m["tag"] for m in info["services"][0]["models"]] == [tiny_model.tag]

    # Outside an image `bentoml serve <bento>` does not apply the bento's envs: set them here.
    server = start_server(
        env,
        tmp_path / "bento-server.log",
        lambda port: [
            sys.executable,
            "-m",
            "bentoml",
            "serve",
            built["tag"],
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
    )
    try:
        response = httpx.post(f"{server.url}/metadata", json={}, timeout=30)
        assert response.json() == {**METADATA, "bento_tag": built["tag"]}
        metrics = server.metrics()
        assert f'service_version="{built["tag"].split(":")[1]}"' in metrics
    finally:
        assert server.stop() == 0

"""The service built into a bento with the build step's bentofile, then served from the bento."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.fixtures.serving import METADATA, REPO, TinyModel, serving_env, start_server

pytestmark = pytest.mark.integration

# steps/build.py's own bentofile, so this checks what the pipeline ships.
_BUILD = """
import json, os, sys
from pathlib import Path
import bentoml, yaml
from steps.build import bentofile
config = Path(sys.argv[3]) / "bentofile.yaml"
config.write_text(yaml.safe_dump(bentofile(sys.argv[1])))
bento = bentoml.bentos.build_bentofile(str(config), build_ctx=sys.argv[2])
print(json.dumps({"tag": str(bento.tag), "path": str(bento.path)}))
"""


def test_a_bento_holds_serving_only_and_serves_its_model_with_its_tag(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    home = tmp_path / "bentoml-home"
    shutil.copytree(tiny_model.bentoml_home, home)
    env = {**serving_env(tiny_model, tmp_path / "log", serving_pycache), "BENTOML_HOME": str(home)}
    env.pop("LOOPLINE_SERVING__LEAN_IMPORTS")  # the build process may import anything
    done = subprocess.run(
        [sys.executable, "-c", _BUILD, tiny_model.tag, str(REPO), str(tmp_path)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    built = json.loads(done.stdout.splitlines()[-1])
    bento_dir = Path(built["path"])
    sources = {
        p.relative_to(bento_dir / "src").as_posix() for p in (bento_dir / "src").rglob("*.py")
    }
    assert sources == {f"serving/{p.name}" for p in (REPO / "serving").glob("*.py")}
    info = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    assert {"name": "LOOPLINE_SERVING__MODEL_TAG", "value": tiny_model.tag} in [
        {k: e[k] for k in ("name", "value")} for e in info["envs"]
    ]
    assert [m["tag"] for m in info["services"][0]["models"]] == [tiny_model.tag]

    # `bentoml serve <bento>` outside an image does not apply the bento's envs: they are set here.
    server = start_server(
        {**env, "LOOPLINE_SERVING__LEAN_IMPORTS": "true"},
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
        response = server.http.post("/metadata", json={})
        assert response.json() == {**METADATA, "bento_tag": built["tag"]}
        version = built["tag"].partition(":")[2]
        assert f'service_version="{version}"' in server.metrics()
    finally:
        assert server.stop() == 0

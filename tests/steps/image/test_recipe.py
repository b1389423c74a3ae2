"""The image recipe: what it reads from a bento and the configuration it gives the image."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import BuildError
from steps.image import recipe


def bento_dir(tmp_path: Path, manifest: str, requirements: bool = True) -> Path:
    (tmp_path / "bento.yaml").write_text(manifest)
    if requirements:
        (tmp_path / "env" / "python").mkdir(parents=True)
        (tmp_path / "env" / "python" / "requirements.txt").write_text("xgboost-cpu==3.1.2\n")
    return tmp_path


def test_the_bentos_envs_win_over_the_images_defaults(tmp_path: Path) -> None:
    manifest = (
        "name: loopline\nversion: abc\nenvs:\n"
        "- {name: LOOPLINE_SERVING__LOG_DIR, value: s3://logs/x}\n"
        "- {name: EMPTY}\n"
    )
    bento = recipe.read_bento(bento_dir(tmp_path, manifest))
    assert bento.tag == "loopline:abc"
    config = recipe.image_config("arm64", bento, {"b": "2", "a": "1"}, ["sha256:1"])
    env = dict(entry.split("=", 1) for entry in config["config"]["Env"])
    assert env["LOOPLINE_SERVING__LOG_DIR"] == "s3://logs/x"
    assert env["EMPTY"] == "" and env["HOME"] == recipe.HOME
    assert config["config"]["User"] == f"{recipe.UID}:{recipe.UID}"
    assert config["config"]["Entrypoint"] == ["python3", "-m", "serving.launch"]
    assert config["config"]["Cmd"][0] == recipe.BENTO_DIR
    assert list(config["config"]["Labels"]) == ["a", "b"]
    assert (config["architecture"], config["os"]) == ("arm64", "linux")
    assert config["rootfs"] == {"type": "layers", "diff_ids": ["sha256:1"]}


@pytest.mark.parametrize(
    ("manifest", "requirements", "message"),
    [
        ("name: x\nversion: y\n", False, "requirements.txt: missing"),
        ("name: x\nversion: y\nenvs: [3]\n", True, r"envs: expected a list of \{name, value\}"),
        ("name: [x\n", True, "bento.yaml: cannot read the bento's manifest"),
    ],
)
def test_a_malformed_bento_is_refused_naming_the_file(
    tmp_path: Path, manifest: str, requirements: bool, message: str
) -> None:
    with pytest.raises(BuildError, match=message):
        recipe.read_bento(bento_dir(tmp_path, manifest, requirements))


def test_an_unsupported_platform_names_those_that_are() -> None:
    with pytest.raises(BuildError, match="'linux/s390x': expected one of linux/arm64, linux/amd64"):
        recipe.architecture("linux/s390x")

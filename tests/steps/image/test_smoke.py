"""How the smoke test starts an image, and what it reads from the bento (no image started)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from steps.core.errors import BuildError
from steps.image import recipe, smoke

CONFIG = {
    "config": {
        "User": "1034:1034",
        "WorkingDir": "/home/bentoml/bento/src",
        "Env": ["PATH=/usr/bin", "HOME=/home/bentoml", "A=b=c"],
        "Entrypoint": list(recipe.ENTRYPOINT),
        "Cmd": list(recipe.CMD),
    }
}
FOREIGN = "arm64" if smoke.HOST_ARCH == "amd64" else "amd64"


def test_the_image_runs_as_its_user_in_its_directory_on_loopback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", '{"auths": {}}')
    argv, env = smoke.command(tmp_path, CONFIG, smoke.HOST_ARCH, 4321)
    assert argv[0].endswith("/proot")
    assert argv[1:7] == ["-R", str(tmp_path), "-w", "/home/bentoml/bento/src", "-i", "1034:1034"]
    assert "-q" not in argv  # native: no emulator
    assert argv[7:] == ["python3", "-m", "serving.launch", recipe.BENTO_DIR,
                        "--host", "127.0.0.1", "--port", "4321"]  # fmt: skip
    # Only the image's own environment: nothing of this process (no credentials)
    assert env == {"PATH": "/usr/bin", "HOME": "/home/bentoml", "A": "b=c"}


def test_a_foreign_image_runs_under_its_qemu(tmp_path: Path) -> None:
    argv, _env = smoke.command(tmp_path, CONFIG, FOREIGN, 4321)
    emulator = argv[argv.index("-q") + 1]
    assert Path(emulator).name == recipe.QEMU[FOREIGN]


def test_the_builder_is_not_dumpable_once_it_starts_an_image() -> None:
    # The image's processes share the builder's uid: /proc/PID/environ (the registry
    # credentials) must be root's once an image may run.
    probe = (
        "import ctypes; from steps.image import smoke; libc = ctypes.CDLL(None); "
        "before = libc.prctl(3, 0, 0, 0, 0); smoke._not_dumpable(); "
        "print(before, libc.prctl(3, 0, 0, 0, 0))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "0"]


def model_dir(bento: Path, document: object) -> Path:
    directory = bento / "models" / "churn" / "v1-abc"
    directory.mkdir(parents=True)
    (directory / "smoke_rows.json").write_text(json.dumps(document))
    return directory


def test_smoke_rows_come_from_the_bentos_model(tmp_path: Path) -> None:
    model_dir(tmp_path, {"rows": [{"a": 1}, {"a": None}], "probabilities": [0.25, 0.5]})
    assert smoke.smoke_rows(tmp_path) == ([{"a": 1}, {"a": None}], [0.25, 0.5])


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (None, "no models/\\*/\\*/smoke_rows.json; expected a bento built by steps.build"),
        ({"rows": [{"a": 1}]}, r"expected \{rows: \[...\], probabilities: \[...\]\}"),
        ({"rows": [{"a": 1}], "probabilities": []}, "as many probabilities as rows"),
        ({"rows": [], "probabilities": []}, "at least one"),
    ],
)
def test_missing_or_malformed_smoke_rows_are_refused(
    tmp_path: Path, document: object, message: str
) -> None:
    if document is not None:
        model_dir(tmp_path, document)
    with pytest.raises(BuildError, match=message):
        smoke.smoke_rows(tmp_path)

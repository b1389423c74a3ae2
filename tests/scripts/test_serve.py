"""Tests for scripts/serve.py, the command ``make serve`` runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from scripts.serve import serve_command
from steps.core.errors import ConfigError
from steps.platform.local.processes import group_members, is_alive
from tests.fixtures.common import free_port
from tests.fixtures.serving import (
    READY_TIMEOUT_S,
    REPO,
    TinyModel,
    sample_rows,
    serving_env,
    start_server,
)
from tests.fixtures.training import TrainedRun

SCRIPT = str(REPO / "scripts" / "serve.py")


def test_a_model_dir_becomes_the_serving_settings(tmp_path: Path) -> None:
    argv, env = serve_command(
        model_dir=Path("models/../models/churn"),
        model_tag=None,
        host="127.0.0.1",
        port=3100,
        workers=2,
        log_dir=None,
        environ={
            "PYTHONDONTWRITEBYTECODE": "1",
            "LOOPLINE_SERVING__MODEL_TAG": "stale:1",
            "HOME": "/root",
        },
        bentoml_home=Path("/state/bentoml"),
    )
    assert argv[1:] == [
        "-m",
        "bentoml",
        "serve",
        "serving.service:Loopline",
        "--host",
        "127.0.0.1",
        "--port",
        "3100",
    ]
    assert env["LOOPLINE_SERVING__MODEL_DIR"] == str(Path("models/churn").resolve())
    assert "LOOPLINE_SERVING__MODEL_TAG" not in env
    assert env["LOOPLINE_SERVING__LEAN_IMPORTS"] == "true"
    assert env["LOOPLINE_SERVING__WORKERS"] == "2"
    assert "PYTHONDONTWRITEBYTECODE" not in env
    assert env["PYTHONPYCACHEPREFIX"] == str(REPO / ".loopline" / "pycache")
    assert env["HOME"] == "/root"
    assert env["BENTOML_HOME"] == "/state/bentoml"


def test_one_worker_is_served_by_one_process() -> None:
    argv, env = serve_command(
        model_dir=None,
        model_tag="churn:abc",
        host="0.0.0.0",
        port=3000,
        workers=1,
        log_dir=None,
        environ={},
        bentoml_home=Path("/state/bentoml"),
    )
    assert argv[1:] == [
        "-m",
        "serving.launch",
        "serving.service:Loopline",
        "--host",
        "0.0.0.0",
        "--port",
        "3000",
    ]
    assert env["LOOPLINE_SERVING__WORKERS"] == "1"


def test_a_tag_is_served_from_the_callers_store_when_it_names_one() -> None:
    _, env = serve_command(
        model_dir=None, model_tag="churn:v1-abc", host="h", port=1, workers=1, log_dir=None,
        environ={"BENTOML_HOME": "/mine"}, bentoml_home=Path("/state"),
    )  # fmt: skip
    assert env["LOOPLINE_SERVING__MODEL_TAG"] == "churn:v1-abc"
    assert env["BENTOML_HOME"] == "/mine"


def test_both_a_dir_and_a_tag_is_refused() -> None:
    with pytest.raises(ConfigError, match="not both"):
        serve_command(
            model_dir=Path("m"), model_tag="churn:1", host="h", port=1, workers=1, log_dir=None,
            environ={}, bentoml_home=Path("/state"),
        )  # fmt: skip


def _run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_incomplete_model_dir_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "model.ubj").write_bytes(b"")
    done = _run("--model-dir", str(tmp_path), "--port", "3999", env=dict(os.environ))
    assert done.returncode == 2
    assert "feature_spec.json" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_tag_missing_from_the_store_is_a_one_line_error(tmp_path: Path) -> None:
    env = {**os.environ, "BENTOML_HOME": str(tmp_path), "BENTOML_DO_NOT_TRACK": "True"}
    done = _run("--model-tag", "churn:nosuchversion", "--port", "3999", env=env)
    assert done.returncode == 2
    assert f"churn:nosuchversion is not in the BentoML model store at {tmp_path}" in done.stderr
    assert "Traceback" not in done.stderr


def _empty_state_env(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LOOPLINE_", "BENTOML_HOME"))}
    env.update({"LOOPLINE_STATE_DIR": str(state_dir), "LOOPLINE_MODEL_NAME": "attrition"})
    return env


def test_without_a_model_on_an_empty_state_it_says_make_demo_and_creates_nothing(
    tmp_path: Path,
) -> None:
    state_dir = tmp_path / "state"

    done = _run("--port", "3999", env=_empty_state_env(state_dir))

    message = " ".join(done.stderr.split())
    assert done.returncode == 2
    assert "model 'attrition' has no alias 'champion'" in message
    assert f"no registry at {state_dir / 'mlflow.db'} yet" in message
    assert "run `make demo` first" in message
    assert "MODEL_DIR=dir" in message and "MODEL_TAG=name:version" in message
    assert "Traceback" not in done.stderr
    assert not state_dir.exists()  # neither the state directory nor mlflow.db


def test_without_a_champion_in_an_existing_registry_it_says_make_demo(tmp_path: Path) -> None:
    env = _empty_state_env(tmp_path)
    connect = "from steps.core.settings import load_settings; from steps.io import tracking; "
    connect += "tracking.connect(load_settings())"
    subprocess.run([sys.executable, "-c", connect], cwd=REPO, env=env, check=True, timeout=120)

    done = _run("--port", "3999", env=env)

    message = " ".join(done.stderr.split())
    assert done.returncode == 2
    assert f"model 'attrition' has no alias 'champion' in sqlite:///{tmp_path}" in message
    assert "run `make demo` first" in message
    assert "Traceback" not in done.stderr


@pytest.mark.integration
def test_the_script_serves_a_model_dir(
    tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path
) -> None:
    env = serving_env(tiny_model, tmp_path / "unused", serving_pycache)
    log_dir = tmp_path / "log"
    server = start_server(
        env,
        tmp_path / "server.log",
        lambda port: [
            sys.executable,
            SCRIPT,
            "--model-dir",
            str(tiny_model.directory),
            "--port",
            str(port),
            "--log-dir",
            str(log_dir),
        ],
    )
    try:
        row = sample_rows(1)[0]
        response = httpx.post(f"{server.url}/predict", json=row, timeout=30)
        assert response.status_code == 200
        (expected,) = tiny_model.booster_probability([row])
        assert response.json()["probability"] == pytest.approx(expected, abs=1e-6)
        assert server.worker_pids() == []  # one worker: the script became the server process
    finally:
        assert server.stop() == 0
    assert len(list(log_dir.rglob("part-*.parquet"))) == 1


@pytest.mark.integration
def test_the_champion_is_materialized_once_for_serving(champion_store: TrainedRun) -> None:
    import json

    from scripts.serve import champion_dir

    first = champion_dir(champion_store.settings)
    metadata = json.loads((first / "metadata.json").read_text())
    assert (metadata["model_version"], metadata["alias"]) == ("1", "champion")
    assert metadata["run_id"] == champion_store.run_id
    assert (first / "model.ubj").is_file() and (first / "feature_spec.json").is_file()
    stamp = (first / "model.ubj").stat().st_mtime_ns
    assert champion_dir(champion_store.settings) == first
    assert (first / "model.ubj").stat().st_mtime_ns == stamp  # not downloaded again


class _Detached:
    """``scripts/serve.py`` started in a session of its own, as ``make serve`` runs in a shell."""

    def __init__(self, model: TinyModel, tmp_path: Path, pycache: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_dir = tmp_path / "log"
        self.output = tmp_path / "serve.out"
        argv = [sys.executable, SCRIPT, "--model-dir", str(model.directory), "--workers", "2"]
        argv += ["--port", str(self.port), "--log-dir", str(self.log_dir)]
        with self.output.open("wb") as sink:
            self.process = subprocess.Popen(
                argv,
                cwd=REPO,
                env=serving_env(model, tmp_path / "unused", pycache),
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not self.answers("/readyz"):
            assert self.process.poll() is None, self.output.read_text()
            assert time.monotonic() < deadline, self.output.read_text()
            time.sleep(0.1)

    def answers(self, path: str) -> bool:
        try:
            return httpx.get(self.url + path, timeout=1.0).status_code == 200
        except httpx.TransportError:
            return False

    def tree(self) -> list[int]:
        """The script, ``bentoml serve`` and its workers (each in a group of its own)."""
        return group_members(self.process.pid)

    def wait_gone(self, pids: list[int], timeout_s: float = 60.0) -> list[int]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.process.poll()
            alive = [pid for pid in pids if is_alive(pid)]
            if not alive:
                return []
            time.sleep(0.1)
        return alive


@pytest.fixture
def detached(tiny_model: TinyModel, tmp_path: Path, serving_pycache: Path) -> Iterator[_Detached]:
    """The script serving the tiny model with 2 workers; anything left is killed afterwards."""
    server = _Detached(tiny_model, tmp_path, serving_pycache)
    started = set(server.tree())
    yield server
    for pid in started:
        if is_alive(pid):
            os.kill(pid, signal.SIGKILL)
    server.process.poll()


def _logged_rows(log_dir: Path) -> int:
    import pyarrow.parquet as pq

    return sum(pq.read_table(p).num_rows for p in log_dir.rglob("part-*.parquet"))


@pytest.mark.integration
def test_a_sigkill_of_the_scripts_process_group_stops_every_worker(detached: _Detached) -> None:
    tree = detached.tree()
    assert len(tree) == 4  # the script, bentoml serve, two workers
    for row in sample_rows(20):
        assert httpx.post(f"{detached.url}/predict", json=row, timeout=30).status_code == 200
    os.killpg(detached.process.pid, signal.SIGKILL)
    assert detached.wait_gone(tree) == []
    assert not detached.answers("/livez")
    # bentoml serve got SIGTERM from the kernel when the script died: its workers flushed.
    assert _logged_rows(detached.log_dir) == 20


@pytest.mark.integration
def test_workers_orphaned_by_a_killed_bentoml_serve_are_stopped_by_the_script(
    detached: _Detached,
) -> None:
    tree = detached.tree()
    bentoml_serve = int(Path(f"/proc/{detached.process.pid}/task/{detached.process.pid}/children")
                        .read_text().split()[0])  # fmt: skip
    os.kill(bentoml_serve, signal.SIGKILL)
    assert detached.wait_gone(tree) == []
    assert detached.process.returncode == 128 + signal.SIGKILL
    assert not detached.answers("/livez")


@pytest.mark.integration
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stop_signal_to_the_script_stops_the_server_and_its_workers(
    detached: _Detached, stop_signal: int
) -> None:
    tree = detached.tree()
    assert httpx.post(f"{detached.url}/predict", json=sample_rows(1)[0], timeout=30).is_success
    detached.process.send_signal(stop_signal)
    assert detached.process.wait(60) == 0
    assert detached.wait_gone(tree, timeout_s=5) == []
    assert _logged_rows(detached.log_dir) == 1

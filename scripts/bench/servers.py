"""The four servers of the benchmark: how each is installed, started, asked and stopped.

* ``loopline``: Loopline's BentoML service, started the way operators start it
  (``python -m scripts.serve --model-dir ...``, which execs ``bentoml serve``) from the project
  virtualenv; it takes raw rows and encodes them itself.
* ``mlserver``: MLServer 1.7.1 with ``mlserver_xgboost.XGBoostModel``, V2 protocol.
* ``kserve``: KServe 0.21 with a small ``kserve.Model`` around the Booster, V1 protocol.
* ``fastapi``: a plain FastAPI app (one uvicorn worker) doing Loopline's encoding and scoring.

The peers run from their own virtualenvs under ``.bench/venvs/<name>``, made with the project's
uv from the pinned ``requirements-<name>.txt`` next to this file. Every server listens on
127.0.0.1 on free ports and runs with its library defaults except: no per-request log lines
(Loopline's access log is off too) and, for KServe, no gRPC server.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import httpx

from scripts.bench.errors import BenchError

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
UV = REPO / ".tools" / "bin" / "uv"
HERE = Path(__file__).resolve().parent
MODEL_NAME = "churn"
SERVER_NAMES = ("loopline", "mlserver", "kserve", "fastapi")
PEER_VENVS = ("mlserver", "kserve", "fastapi")
READY_POLL_S = 0.02
STOP_TIMEOUT_S = 30.0
# Variables that would reconfigure a server behind the benchmark's back.
_FOREIGN_ENV_PREFIXES = ("LOOPLINE_", "MLSERVER_", "KSERVE_", "BENTOML_")
_FOREIGN_ENV = (
    "PYTHONPATH",
    "VIRTUAL_ENV",
    "PYTHONDONTWRITEBYTECODE",
    "PYTHONPYCACHEPREFIX",
    "OMP_NUM_THREADS",
)

BodyForm = Literal["raw", "v1", "v2"]


@dataclasses.dataclass(frozen=True)
class ServerPlan:
    """Everything needed to start one server and send it requests."""

    name: str
    label: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    port: int
    ready_path: str
    predict_path: str
    body_form: BodyForm
    workers: int
    note: str

    @property
    def url(self) -> str:
        """Base URL of the server."""
        return f"http://127.0.0.1:{self.port}"


@dataclasses.dataclass
class RunningServer:
    """A started server and how long it took to answer its readiness endpoint."""

    plan: ServerPlan
    process: subprocess.Popen[bytes]
    log_path: Path
    ready_after_s: float


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def request_body(form: BodyForm, raw_row: Mapping[str, Any], encoded_row: Sequence[float]) -> str:
    """Return the JSON body carrying one row in a server's request format.

    ``raw`` is the row as Loopline's ``/predict`` takes it; ``v2`` (MLServer) and ``v1``
    (KServe) carry the encoded float32 vector, a missing value as ``null``.

    Returns:
        One line of JSON.
    """
    if form == "raw":
        return json.dumps(dict(raw_row), allow_nan=False)
    vector = [None if value != value else value for value in encoded_row]  # NaN -> null
    if form == "v1":
        return json.dumps({"instances": [vector]}, allow_nan=False)
    tensor = {"name": "input-0", "shape": [1, len(vector)], "datatype": "FP32", "data": vector}
    return json.dumps({"inputs": [tensor]}, allow_nan=False)


def response_probability(form: BodyForm, payload: Any) -> float:
    """Return the positive-class probability from a server's JSON answer to one row.

    Raises:
        BenchError: if the answer does not have the server's documented shape.
    """
    try:
        if form == "raw":
            return float(payload["probability"])
        if form == "v1":
            (value,) = payload["predictions"]
            return float(value)
        (output,) = payload["outputs"]
        (value,) = output["data"]
        return float(value)
    except (KeyError, TypeError, ValueError) as err:
        raise BenchError(f"unexpected {form} answer (no probability found): {payload!r}") from err


def _server_env(**extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(_FOREIGN_ENV_PREFIXES) and key not in _FOREIGN_ENV
    }
    env.update(extra)
    return env


def loopline_plan(model_dir: Path, run_dir: Path, workers: int) -> ServerPlan:
    """Loopline's service via ``scripts/serve.py`` from the project virtualenv.

    Returns:
        The plan (the inference log goes to ``run_dir/inference-log``).
    """
    port = free_port()
    argv = [str(REPO / ".venv" / "bin" / "python"), "-m", "scripts.serve"]
    argv += ["--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--workers", str(workers), "--log-dir", str(run_dir / "inference-log")]
    return ServerPlan(
        name="loopline",
        label="Loopline (BentoML)",
        argv=argv,
        env=_server_env(BENTOML_HOME=str(run_dir / "bentoml-home"), BENTOML_DO_NOT_TRACK="True"),
        cwd=REPO,
        port=port,
        ready_path="/readyz",
        predict_path="/predict",
        body_form="raw",
        workers=workers,
        note="raw JSON row; validates, encodes, micro-batches and logs each row in-server",
    )


def mlserver_plan(model_dir: Path, run_dir: Path) -> ServerPlan:
    """MLServer with its XGBoost runtime, configured by files written into ``run_dir``.

    Returns:
        The plan.
    """
    port, grpc_port, metrics_port = free_port(), free_port(), free_port()
    settings = {
        "host": "127.0.0.1",
        "http_port": port,
        "grpc_port": grpc_port,
        "metrics_port": metrics_port,
        "metrics_dir": str(run_dir / "metrics"),
        "debug": False,  # True (the default) writes an access-log line per request
    }
    model_settings = {
        "name": MODEL_NAME,
        "implementation": "mlserver_xgboost.XGBoostModel",
        "parameters": {"uri": str(model_dir / "model.ubj")},
    }
    repository = run_dir / "repository"
    (repository / MODEL_NAME).mkdir(parents=True, exist_ok=True)
    (repository / "settings.json").write_text(json.dumps(settings, indent=2), "utf-8")
    (repository / MODEL_NAME / "model-settings.json").write_text(
        json.dumps(model_settings, indent=2), "utf-8"
    )
    return ServerPlan(
        name="mlserver",
        label="MLServer 1.7.1",
        argv=[str(venv_bin("mlserver", "mlserver")), "start", str(repository)],
        env=_server_env(),
        cwd=run_dir,
        port=port,
        ready_path="/v2/health/ready",
        predict_path=f"/v2/models/{MODEL_NAME}/infer",
        body_form="v2",
        workers=1,
        note="encoded float32 vector (V2 tensor); default parallel_workers=1, no adaptive batching",
    )


def kserve_plan(model_dir: Path, run_dir: Path) -> ServerPlan:
    """KServe's model server with ``peers/kserve_server.py``.

    Returns:
        The plan.
    """
    port = free_port()
    argv = [str(venv_bin("kserve", "python")), str(HERE / "peers" / "kserve_server.py")]
    argv += ["--model_name", MODEL_NAME, "--model_dir", str(model_dir), "--host", "127.0.0.1"]
    argv += ["--http_port", str(port), "--enable_grpc", "false"]
    argv += ["--enable_latency_logging", "false"]
    return ServerPlan(
        name="kserve",
        label="KServe 0.21",
        argv=argv,
        env=_server_env(),
        cwd=run_dir,
        port=port,
        ready_path="/v2/health/ready",
        predict_path=f"/v1/models/{MODEL_NAME}:predict",
        body_form="v1",
        workers=1,
        note="encoded float32 vector (V1 instances); kserve.Model around the Booster, 1 worker",
    )


def fastapi_plan(model_dir: Path, run_dir: Path) -> ServerPlan:
    """The plain FastAPI app of ``peers/fastapi_app.py``.

    Returns:
        The plan.
    """
    port = free_port()
    argv = [str(venv_bin("fastapi", "python")), str(HERE / "peers" / "fastapi_app.py")]
    argv += ["--model-dir", str(model_dir), "--host", "127.0.0.1", "--port", str(port)]
    return ServerPlan(
        name="fastapi",
        label="FastAPI + uvicorn",
        argv=argv,
        env=_server_env(PYTHONPATH=str(REPO)),  # for serving.features
        cwd=run_dir,
        port=port,
        ready_path="/readyz",
        predict_path="/predict",
        body_form="raw",
        workers=1,
        note="raw JSON row; FeatureSpec encoding + Booster per request, no validation/logging",
    )


def plan_server(
    name: str,
    model_dir: Path,
    run_dir: Path,
    loopline_workers: int,
    omp_threads: int | None = None,
) -> ServerPlan:
    """Return the plan of server ``name`` (one of :data:`SERVER_NAMES`).

    Args:
        omp_threads: if set, ``OMP_NUM_THREADS`` for the server, which XGBoost takes as its
            default ``nthread``; None leaves every library at its default (all cores).

    Raises:
        BenchError: for an unknown name.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    if name == "loopline":
        plan = loopline_plan(model_dir, run_dir, loopline_workers)
    elif name == "mlserver":
        plan = mlserver_plan(model_dir, run_dir)
    elif name == "kserve":
        plan = kserve_plan(model_dir, run_dir)
    elif name == "fastapi":
        plan = fastapi_plan(model_dir, run_dir)
    else:
        raise BenchError(f"unknown server {name!r}; expected one of {', '.join(SERVER_NAMES)}")
    if omp_threads is None:
        return plan
    return dataclasses.replace(plan, env={**plan.env, "OMP_NUM_THREADS": str(omp_threads)})


def venv_bin(name: str, program: str) -> Path:
    """Return the path of ``program`` in the peer virtualenv ``name``."""
    return BENCH_DIR / "venvs" / name / "bin" / program


def requirements_file(name: str) -> Path:
    """Return the pinned requirements of the peer virtualenv ``name``."""
    return HERE / f"requirements-{name}.txt"


def ensure_venv(name: str, log_path: Path) -> bool:
    """Create or update ``.bench/venvs/<name>`` to match its pinned requirements exactly.

    A stamp holding the requirements' hash skips the work when nothing changed.

    Returns:
        True if uv ran, False if the virtualenv was already up to date.

    Raises:
        BenchError: if uv is missing or fails (with the tail of its output).
    """
    requirements = requirements_file(name)
    venv = BENCH_DIR / "venvs" / name
    digest = hashlib.sha256(requirements.read_bytes()).hexdigest()
    stamp = venv / ".requirements-sha256"
    if stamp.is_file() and stamp.read_text("utf-8").strip() == digest:
        return False
    if not UV.is_file():
        raise BenchError(f"uv is not installed at {UV}: run `make setup` first")
    env = {**os.environ, "UV_PYTHON": os.environ.get("UV_PYTHON", "python3.11")}
    env.pop("VIRTUAL_ENV", None)
    python = str(venv / "bin" / "python")
    commands = [
        [str(UV), "venv", "--allow-existing", str(venv)],
        [str(UV), "pip", "sync", "--python", python, "--compile-bytecode", str(requirements)],
    ]
    with log_path.open("ab") as log:
        for argv in commands:
            done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, env=env, check=False)
            if done.returncode != 0:
                tail = log_path.read_text("utf-8", errors="replace")[-2000:]
                raise BenchError(f"`{' '.join(argv)}` failed ({done.returncode}):\n{tail}")
    stamp.write_text(digest + "\n", "utf-8")
    return True


def start_server(plan: ServerPlan, log_path: Path, timeout_s: float) -> RunningServer:
    """Start ``plan``'s process and wait until its readiness endpoint answers 200.

    The clock starts just before the process is spawned, so ``ready_after_s`` is the cold start
    as a client sees it.

    Returns:
        The running server.

    Raises:
        BenchError: with the server's output if it exits or is not ready within ``timeout_s``.
    """
    ready_url = plan.url + plan.ready_path
    with log_path.open("ab") as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            plan.argv,
            cwd=plan.cwd,
            env=plan.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stop_server reaches workers
        )
    server = RunningServer(plan, process, log_path, 0.0)
    with httpx.Client(timeout=1.0) as client:
        while time.perf_counter() - started < timeout_s:
            if process.poll() is not None:
                raise BenchError(
                    f"{plan.label} exited with {process.returncode} before it was ready:\n"
                    + _tail(log_path)
                )
            with contextlib.suppress(httpx.TransportError):
                if client.get(ready_url).status_code == 200:
                    server.ready_after_s = time.perf_counter() - started
                    return server
            time.sleep(READY_POLL_S)
    stop_server(server)
    raise BenchError(
        f"{plan.label} not ready at {ready_url} in {timeout_s:.0f} s:\n{_tail(log_path)}"
    )


def stop_server(server: RunningServer, timeout_s: float = STOP_TIMEOUT_S) -> None:
    """Stop the server (SIGTERM, then SIGKILL to its process group after ``timeout_s``)."""
    process = server.process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process.pid)
            process.wait()
    deadline = time.monotonic() + 5.0
    while _group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _group_alive(process.pid):
        _kill_group(process.pid)


@contextlib.contextmanager
def running(plan: ServerPlan, log_path: Path, timeout_s: float) -> Iterator[RunningServer]:
    """Start ``plan`` for the duration of a ``with`` block; it is stopped on the way out.

    Yields:
        The running server.
    """
    server = start_server(plan, log_path, timeout_s)
    try:
        yield server
    finally:
        stop_server(server)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def _tail(log_path: Path, chars: int = 3000) -> str:
    return log_path.read_text("utf-8", errors="replace")[-chars:]

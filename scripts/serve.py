"""Serve a model on localhost with the Loopline BentoML service (what ``make serve`` runs).

Usage::

    python -m scripts.serve --port 3000                      # the registry's champion
    python -m scripts.serve --model-tag churn:abc123 --port 3000
    python -m scripts.serve --model-dir path/to/model-dir --port 3000

A tag is looked up in the pipeline's BentoML store (``BENTOML_HOME``, default: the Loopline
settings' ``bentoml_home``, i.e. ``.loopline/bentoml`` where the build step puts the models).
It checks the model first (a clear error instead of a server traceback), then starts
``serving.service:Loopline``, configured through ``LOOPLINE_SERVING__*``:
the model, ``LEAN_IMPORTS`` on (only the model kind's own library is importable, as in its image:
an XGBoost model loads without scikit-learn, so a worker starts in seconds, a scikit-learn model
without XGBoost; neither with pandas or MLflow), and a bytecode cache under ``.loopline/pycache``
so later starts skip recompiling. Every model kind the pipeline trains is served this way.

One worker (the default) is one process: this process replaces itself with
:mod:`serving.launch`, which replaces itself with the worker, so Ctrl-C and SIGTERM reach the
server directly. With ``--workers`` above 1, ``bentoml serve`` runs the workers and this process
stays as its supervisor (:func:`supervise`), because BentoML starts each worker in a session of
its own, out of reach of a signal to this process' group:

- Ctrl-C, SIGTERM or SIGHUP here is passed on to ``bentoml serve`` as SIGTERM: it stops its
  workers, which first flush the inference log; then anything left below this process is killed.
- ``bentoml serve`` runs in a session of its own with a parent-death signal (SIGTERM), so a
  SIGKILL of this process, or of its whole process group, still stops it the graceful way.
- This process is a child subreaper: workers orphaned by a killed ``bentoml serve`` become its
  children, and are stopped when it notices ``bentoml serve`` is gone.

Not covered: SIGKILL of this process and of ``bentoml serve`` together (e.g. ``kill -9`` of
both): nothing is left to stop the workers; only the worker noticing its parent is gone can.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from serving.model import METADATA_FILENAME
from serving.settings import server_environment
from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError, RegistryError
from steps.core.settings import Settings, load_settings
from steps.io.registry import Registry
from steps.ml import servability

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Loopline"
PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
STOP_GRACE_S = 30.0
NO_CHAMPION_HINT = (
    "run `make demo` first, or name a model: `make serve MODEL_DIR=dir` or `MODEL_TAG=name:version`"
    " (--model-dir / --model-tag here)"
)

app = new_app("Serve a model with the Loopline BentoML service on localhost.")


def serve_command(
    *,
    model_dir: Path | None,
    model_tag: str | None,
    host: str,
    port: int,
    workers: int,
    log_dir: Path | None,
    environ: dict[str, str],
    bentoml_home: Path,
) -> tuple[list[str], dict[str, str]]:
    """Return the server's argv and environment for the given model and address.

    One worker is served by one process (:mod:`serving.launch`), several by ``bentoml serve``.

    Args:
        bentoml_home: the BentoML store to use unless ``environ`` names one.

    Raises:
        ConfigError: unless exactly one of a model directory and a tag is given.
    """
    if (model_dir is None) == (model_tag is None):
        raise ConfigError("give --model-dir or --model-tag, not both")
    own = {"LOOPLINE_SERVING__WORKERS": str(workers)}
    if model_dir is not None:
        own["LOOPLINE_SERVING__MODEL_DIR"] = str(model_dir.resolve())
    else:
        own["LOOPLINE_SERVING__MODEL_TAG"] = str(model_tag)
    if log_dir is not None:
        own["LOOPLINE_SERVING__LOG_DIR"] = str(log_dir.resolve())
    env = server_environment(environ, own)
    env.setdefault("PYTHONPYCACHEPREFIX", str(REPO / ".loopline" / "pycache"))
    env.setdefault("BENTOML_HOME", str(bentoml_home))
    env.setdefault("BENTOML_DO_NOT_TRACK", "True")
    command = ["serving.launch", SERVICE] if workers == 1 else ["bentoml", "serve", SERVICE]
    return [sys.executable, "-m", *command, "--host", host, "--port", str(port)], env


def check_model(model_dir: Path | None, model_tag: str) -> None:
    """Fail early, with the reason, if the model cannot be served (``BENTOML_HOME`` set first).

    Raises:
        ConfigError: if the directory is incomplete, its model kind's library cannot be imported,
            or the tag is not in the BentoML store.
    """
    from serving.model import ModelDirError, check_servable, read_model_dir

    try:
        if model_dir is not None:
            check_servable(read_model_dir(model_dir))
            return
        import bentoml
        from bentoml.exceptions import NotFound

        try:
            stored = bentoml.models.get(model_tag)
        except NotFound as err:
            raise ConfigError(
                f"model {model_tag} is not in the BentoML model store at "
                f"{os.environ.get('BENTOML_HOME')}; build it first or pass --model-dir: {err}"
            ) from err
        check_servable(read_model_dir(Path(stored.path)))
    except ModelDirError as err:
        raise ConfigError(str(err)) from err


def champion_dir(settings: Settings) -> Path:
    """Return a servable directory of the registry's ``champion``, materializing it once.

    With the default tracking store (SQLite under the state directory), a missing database means
    nothing was trained yet: that is reported without creating the state directory or the file.

    Raises:
        RegistryError: when there is no champion yet, naming ``make demo`` and the other ways
            to choose a model.
    """
    from steps.io import tracking

    missing = f"model {settings.model_name!r} has no alias {names.CHAMPION!r}"
    if settings.tracking_uri is None:  # the default, sqlite:///<state>/mlflow.db
        database = Path(settings.resolved_tracking_uri.removeprefix("sqlite:///"))
        if not database.exists():
            raise RegistryError(f"{missing}: no registry at {database} yet; {NO_CHAMPION_HINT}")
    tracking.connect(settings)
    version = Registry(settings.model_name).champion()
    if version is None:
        shown = tracking.shown_tracking_uri(settings)
        raise RegistryError(f"{missing} in {shown}; {NO_CHAMPION_HINT}")
    target = settings.state_path / "serving" / f"{settings.model_name}-v{version.version}"
    if not (target / METADATA_FILENAME).exists():
        servability.materialize(settings, version, names.CHAMPION, target)
    console.print(f"serving {settings.model_name} v{version.version} (champion) from {target}")
    return target


@app.command()
@reports_errors
def main(
    model_dir: Annotated[
        Path | None,
        typer.Option(
            help="directory with model.ubj or model.pkl, feature_spec.json, metadata.json"
        ),
    ] = None,
    model_tag: Annotated[
        str | None, typer.Option(help="BentoML model tag (e.g. one the build step imported)")
    ] = None,
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="port to listen on")] = 3000,
    workers: Annotated[int, typer.Option(min=1, max=64, help="worker processes")] = 1,
    log_dir: Annotated[
        Path | None, typer.Option(help="inference log directory [default: .loopline/inference-log]")
    ] = None,
) -> None:
    """Serve a model until Ctrl-C: by default the registry's current champion."""
    settings = load_settings()
    if model_dir is None and model_tag is None:
        model_dir = champion_dir(settings)
    argv, env = serve_command(
        model_dir=model_dir,
        model_tag=model_tag,
        host=host,
        port=port,
        workers=workers,
        log_dir=log_dir or settings.state_path / "inference-log",
        environ=dict(os.environ),
        bentoml_home=settings.resolved_bentoml_home,
    )
    os.environ["BENTOML_HOME"] = env["BENTOML_HOME"]
    check_model(model_dir, env.get("LOOPLINE_SERVING__MODEL_TAG", ""))
    os.chdir(REPO)
    if workers == 1:
        os.execve(argv[0], argv, env)  # noqa: S606 - our own argv; signals reach the server
    raise typer.Exit(supervise(argv, env))


def _prctl() -> Callable[..., int]:
    prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
    return prctl


def _stop_with(parent: int, prctl: Callable[..., int]) -> Callable[[], None]:
    """A ``preexec_fn``: the child gets SIGTERM when ``parent`` dies, even before it execs."""

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the parent died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def supervise(argv: Sequence[str], env: Mapping[str, str], grace_s: float = STOP_GRACE_S) -> int:
    """Run ``argv`` (``bentoml serve``) until it exits, then stop everything left below us.

    See the module docstring for what stops the server and what is not covered.

    Returns:
        The server's exit code (128 + N when signal N ended it).
    """
    prctl = _prctl()
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    server = subprocess.Popen(
        list(argv),
        env=dict(env),
        start_new_session=True,
        preexec_fn=_stop_with(os.getpid(), prctl),  # this process runs no threads
    )

    def forward(signum: int, frame: FrameType | None) -> None:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    code = server.wait()
    stop_descendants(grace_s)
    return 128 - code if code < 0 else code


def _children() -> list[int]:
    pid = os.getpid()
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def _reap() -> None:
    """Collect every exited child (orphans adopted as subreaper included)."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def stop_descendants(grace_s: float) -> list[int]:
    """SIGTERM every process still below this one, SIGKILL what outlives ``grace_s``.

    Orphans below a child subreaper become its children, so the direct children, read again
    until none is left, are every descendant.

    Returns:
        The processes that had to be stopped.
    """
    stopped: set[int] = set()
    deadline = time.monotonic() + grace_s
    while True:
        _reap()
        children = set(_children())
        if not children:
            return sorted(stopped)
        if time.monotonic() < deadline:
            _signal(children - stopped, signal.SIGTERM)
        else:
            _signal(children, signal.SIGKILL)
        stopped |= children
        time.sleep(0.1)


def _signal(pids: set[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


if __name__ == "__main__":
    app()

"""Serve a model on localhost with the Loopline BentoML service (what ``make serve`` runs).

Usage::

    python -m scripts.serve --port 3000                      # <model_name>:latest
    python -m scripts.serve --model-tag churn:abc123 --port 3000
    python -m scripts.serve --model-dir path/to/model-dir --port 3000

A tag is looked up in the pipeline's BentoML store (``BENTOML_HOME``, default: the Loopline
settings' ``bentoml_home``, i.e. ``.loopline/bentoml`` where the build step puts the models).
It checks the model first (a clear error instead of a server traceback), then replaces itself
with ``bentoml serve serving.service:Loopline``, configured through ``LOOPLINE_SERVING__*``:
the model, ``LEAN_IMPORTS`` on (only the model kind's own library is importable, as in its image:
an XGBoost model loads without scikit-learn, so a worker starts in seconds, a scikit-learn model
without XGBoost; neither with pandas or MLflow), and a bytecode cache under ``.loopline/pycache``
so later starts skip recompiling. Every model kind the pipeline trains is served this way.
Ctrl-C or SIGTERM stops the server, which first flushes the inference log.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from serving.model import METADATA_FILENAME
from serving.settings import server_environment
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError
from steps.core.settings import Settings, load_settings
from steps.io.registry import Registry
from steps.ml import servability

REPO = Path(__file__).resolve().parents[1]
SERVICE = "serving.service:Loopline"

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
    """Return the ``bentoml serve`` argv and environment for the given model and address.

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
    argv = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", host, "--port", str(port)]
    return argv, env


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

    Raises:
        RegistryError: when there is no champion yet (run ``make demo`` first).
    """
    from steps.io import tracking

    tracking.connect(settings)
    version = Registry(settings.model_name).resolve(None, "champion")
    target = settings.state_path / "serving" / f"{settings.model_name}-v{version.version}"
    if not (target / METADATA_FILENAME).exists():
        servability.materialize(settings, version, "champion", target)
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
    # Replace this process, so Ctrl-C and SIGTERM reach bentoml serve directly.
    os.execve(argv[0], argv, env)  # noqa: S606 - argv is built above, no shell involved


if __name__ == "__main__":
    app()

"""MLflow session handling shared by the steps: URIs, experiment, lineage values.

Nothing here runs at import; :func:`connect` sets MLflow's URIs for the current process. The
tracking URI may carry credentials (``https://user:password@host/``): every message and command
this module returns shows it through :func:`steps.core.redact.redact`.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from steps.core.errors import RegistryError, ServiceError
from steps.core.redact import redact
from steps.core.settings import Settings

if TYPE_CHECKING:
    import pandas as pd
    from mlflow.exceptions import MlflowException


def connect(settings: Settings) -> str:
    """Point MLflow at the configured tracking/registry URI and return the experiment id.

    With the embedded default (SQLite), the state directory is created and the experiment's
    artifacts go to the configured artifact store; with a tracking server, the server decides.

    Raises:
        ServiceError: when the tracking store cannot be reached or opened (no answer, a 5xx, an
            unreadable local store): worth retrying.
        RegistryError: when the store answers and refuses (a 4xx such as a bad experiment name
            or missing permission): retrying cannot help.
    """
    import mlflow

    uri = settings.resolved_tracking_uri
    shown = shown_tracking_uri(settings)
    try:
        if settings.tracking_is_local:
            settings.state_path.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return _experiment_id(settings)
    except mlflow.exceptions.MlflowException as err:
        raise mlflow_error(err, f"cannot use MLflow tracking store {shown!r}") from err
    except OSError as err:
        raise ServiceError(redact(f"cannot open MLflow tracking store {shown!r}: {err}")) from err


def shown_tracking_uri(settings: Settings) -> str:
    """Return the tracking URI as it may be printed: without a password or signed query."""
    return redact(settings.resolved_tracking_uri)


def _experiment_id(settings: Settings) -> str:
    import mlflow

    experiment = mlflow.get_experiment_by_name(settings.experiment)
    if experiment is not None:
        return str(experiment.experiment_id)
    location = f"{settings.resolved_artifact_store}/mlflow" if settings.tracking_is_local else None
    try:
        return str(mlflow.create_experiment(settings.experiment, artifact_location=location))
    except mlflow.exceptions.MlflowException as err:
        if err.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
        # Two steps starting at once on a new store: the other one created it first.
        experiment = mlflow.get_experiment_by_name(settings.experiment)
        if experiment is None:
            raise
        return str(experiment.experiment_id)


TRANSIENT_HTTP_STATUSES = frozenset({408, 429})
"""4xx statuses that still mean "try again later": a request timeout and rate limiting."""


def mlflow_error(err: MlflowException, context: str) -> RegistryError | ServiceError:
    """Classify an MLflow failure by the HTTP status its error code stands for.

    Returns:
        :class:`ServiceError` (exit 1, retried) when MLflow did not answer, failed or asked to
        slow down (no connection and timeouts arrive as ``INTERNAL_ERROR``; a 5xx such as
        ``TEMPORARILY_UNAVAILABLE``; a 408 or 429); :class:`RegistryError` (exit 2) when it
        answered and refused (any other 4xx: a missing resource, an invalid value, no
        permission). The message is ``"<context>: <MLflow's message>"``, credentials redacted
        (MLflow's own message may quote the request URL, password included).
    """
    from mlflow.exceptions import ERROR_CODE_TO_HTTP_STATUS

    message = redact(f"{context}: {err.message}")
    status = ERROR_CODE_TO_HTTP_STATUS.get(err.error_code, 500)
    if status >= 500 or status in TRANSIENT_HTTP_STATUSES:
        return ServiceError(message)
    return RegistryError(message)


def git_commit(settings: Settings) -> str:
    """Return the source commit: the configured one (baked into images), else ``git rev-parse``."""
    if settings.git_commit:
        return settings.git_commit
    try:
        completed = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
            cwd=Path(__file__).resolve().parent,
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return completed.stdout.strip() or "unknown"


def ui_command(settings: Settings) -> str:
    """Return the shell command that opens the MLflow UI on the configured store (a tracking
    server's URI without its password: the browser asks for it)."""
    if not settings.tracking_is_local:
        return f"open {shown_tracking_uri(settings)}"
    return "make mlflow-ui  # then open http://127.0.0.1:5000"


def run_table(run_id: str, artifact: str, what: str) -> pd.DataFrame:
    """Read a Parquet artifact the train step logged on ``run_id`` (``what`` names it in errors).

    Raises:
        RegistryError: when the run has no such artifact.
        ServiceError: when MLflow cannot be reached.
    """
    import mlflow
    import pandas as pd

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact)
    except mlflow.exceptions.MlflowException as err:
        raise mlflow_error(
            err,
            f"run {run_id!r} has no {what} at {artifact} (expected a run logged by steps.train)",
        ) from err
    return pd.read_parquet(path)

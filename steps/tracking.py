"""MLflow session handling shared by the steps: URIs, experiment, lineage values.

Nothing here runs at import; :func:`connect` sets MLflow's URIs for the current process.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from steps.errors import RegistryError
from steps.settings import Settings

LINEAGE_TAGS = ("run_id", "data_hash", "git_commit", "pipeline_run")


def connect(settings: Settings) -> str:
    """Point MLflow at the configured tracking/registry URI and return the experiment id.

    With the embedded default (SQLite), the state directory is created and the experiment's
    artifacts go to the configured artifact store; with a tracking server, the server decides.

    Raises:
        RegistryError: when the tracking store cannot be reached or opened.
    """
    import mlflow

    if settings.tracking_is_local:
        settings.state_path.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(settings.resolved_tracking_uri)
    mlflow.set_registry_uri(settings.resolved_tracking_uri)
    try:
        experiment = mlflow.get_experiment_by_name(settings.experiment)
        if experiment is not None:
            return str(experiment.experiment_id)
        location = (
            f"{settings.resolved_artifact_store}/mlflow" if settings.tracking_is_local else None
        )
        return str(mlflow.create_experiment(settings.experiment, artifact_location=location))
    except mlflow.exceptions.MlflowException as err:
        raise RegistryError(
            f"cannot use MLflow tracking store {settings.resolved_tracking_uri!r}: {err.message}"
        ) from err


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
    """Return the shell command that opens the MLflow UI on the configured store."""
    if not settings.tracking_is_local:
        return f"open {settings.resolved_tracking_uri}"
    return "make mlflow-ui  # then open http://127.0.0.1:5000"

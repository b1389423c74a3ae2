"""The champion's side of the drift check: which version serves, with which features, and the
reference sample its training run logged (``reference/reference.parquet``), read from MLflow.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel

from serving.inference_log import PREDICTION
from steps.core.errors import ConfigError, RegistryError
from steps.core.names import CHAMPION, REFERENCE_ARTIFACT
from steps.core.settings import DriftSettings
from steps.io.registry import Registry


class Champion(BaseModel):
    """The champion version whose reference sample the window is compared with."""

    model_name: str
    version: str
    run_id: str
    features: tuple[str, ...]
    numeric: tuple[str, ...]
    categorical: tuple[str, ...]
    reference_rows: int


def load_champion(model_name: str) -> tuple[Champion, pd.DataFrame]:
    """Read the ``champion`` version of ``model_name``, its run's ``features`` and reference.

    MLflow must already point at the registry (:func:`steps.io.tracking.connect`).

    Returns:
        The champion (version, run, features split into numeric and categorical by the
        reference's column types) and the reference sample.

    Raises:
        RegistryError: naming the model and alias when there is no champion, and the version,
            run and artifact when the reference sample or the ``features`` param is missing.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    version = Registry(model_name).champion()
    if version is None:
        raise RegistryError(
            f"model {model_name!r} has no {CHAMPION!r} alias in {mlflow.get_registry_uri()} "
            "(register a model first: loopline demo, or train, evaluate and register)"
        )
    run_id = str(version.run_id)
    label = f"{model_name}@{CHAMPION} (version {version.version}, run {run_id})"
    try:
        features_param = client.get_run(run_id).data.params.get("features")
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=REFERENCE_ARTIFACT)
    except MlflowException as err:
        raise RegistryError(
            f"{label} has no reference sample at artifact {REFERENCE_ARTIFACT}: {err.message} "
            "(expected a run logged by steps.train)"
        ) from err
    if not features_param:
        raise RegistryError(
            f"{label}: its run has no 'features' param (expected a steps.train run)"
        )
    reference = pd.read_parquet(path)
    features = tuple(features_param.split(","))
    missing = [name for name in (*features, PREDICTION) if name not in reference.columns]
    if missing:
        raise RegistryError(
            f"{label}: reference sample {REFERENCE_ARTIFACT} lacks column(s) {', '.join(missing)}"
        )
    numeric = tuple(n for n in features if pd.api.types.is_numeric_dtype(reference[n].dtype))
    champion = Champion(
        model_name=model_name,
        version=str(version.version),
        run_id=run_id,
        features=features,
        numeric=numeric,
        categorical=tuple(name for name in features if name not in numeric),
        reference_rows=len(reference),
    )
    return champion, reference


def check_policy_columns(policy: DriftSettings, champion: Champion) -> None:
    """Check that the critical features and column thresholds name columns of the champion.

    Raises:
        ConfigError: naming the setting, the unknown names and the champion's columns.
    """
    columns = (*champion.features, PREDICTION)
    for setting, names in (
        ("critical_features", policy.critical_features),
        ("column_thresholds", tuple(policy.column_thresholds)),
    ):
        unknown = [name for name in names if name not in columns]
        if unknown:
            raise ConfigError(
                f"LOOPLINE_DRIFT__{setting.upper()} names {', '.join(unknown)}, not a column of "
                f"{champion.model_name} v{champion.version}; columns: {', '.join(columns)}"
            )

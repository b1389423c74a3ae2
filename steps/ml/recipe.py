"""The training recipe: what a model was trained with, so that a retrain can train it again.

A recipe is the ``data`` settings without the data's location (target, features, id columns,
held-out split), the whole ``train`` section (model kind, hyper-parameters) and the ``gate``
policy. The train step resolves it once per run, field by field:

1. **explicit**: given by a CLI flag / workflow parameter or a ``LOOPLINE_*`` variable;
2. **champion**: else the value in the current champion's recipe (``recipe.json`` of its run),
   so a retrain started by the schedule, the drift monitor or the webhook trains what serves;
3. **default**: else the value in code.

The result is logged as ``recipe.json`` on the run (values, the origin of each field, and the
champion it came from) and read back by the evaluate step for the gate policy.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from steps.core import names
from steps.core.errors import ConfigError, RegistryError
from steps.core.settings import Settings, describe_validation_error
from steps.io.registry import Registry
from steps.io.tracking import mlflow_error

SECTIONS = ("data", "train", "gate")
_NOT_RECIPE = frozenset({"data.uri"})
Origin = Literal["explicit", "champion", "default"]


class ChampionRecipe(BaseModel):
    """The recipe of the registered champion, as its training run logged it."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    run_id: str
    values: dict[str, Any]
    """Dotted field name -> value, e.g. ``{"data.target": "churned"}``."""


class ResolvedRecipe(BaseModel):
    """The recipe a run trains with, and where each field came from."""

    model_config = ConfigDict(frozen=True)

    settings: Settings
    origins: dict[str, Origin]
    source: str
    """``champion churn v3 (run 1f2e...)`` or ``defaults (no champion yet)``."""
    champion_version: str | None = None

    def values(self) -> dict[str, Any]:
        """Dotted field name -> the value this run uses."""
        return recipe_values(self.settings)

    def document(self) -> dict[str, Any]:
        """The ``recipe.json`` logged on the run."""
        return {
            "source": self.source,
            "champion_version": self.champion_version,
            "values": self.values(),
            "origins": dict(sorted(self.origins.items())),
        }

    def describe(self) -> str:
        """One line: the source, then the fields given explicitly instead."""
        explicit = sorted(name for name, origin in self.origins.items() if origin == "explicit")
        if len(explicit) == len(self.origins):
            return "recipe: every field as configured"
        given = f"; explicit: {', '.join(explicit)}" if explicit else ""
        return f"recipe from {self.source}{given}"


def recipe_values(settings: Settings) -> dict[str, Any]:
    """Return the recipe part of ``settings`` as dotted name -> JSON value."""
    values: dict[str, Any] = {}
    for section in SECTIONS:
        for name, value in getattr(settings, section).model_dump(mode="json").items():
            dotted = f"{section}.{name}"
            if dotted not in _NOT_RECIPE:
                values[dotted] = value
    return values


def resolve(
    settings: Settings, explicit: frozenset[str], champion: ChampionRecipe | None
) -> ResolvedRecipe:
    """Merge ``settings`` with the champion's recipe: explicit fields win, then the champion's.

    Args:
        settings: the run's settings (defaults, environment and flags already applied).
        explicit: dotted names given explicitly (:func:`steps.core.settings.explicit_fields`).
        champion: the current champion's recipe, or None when there is no champion.

    Returns:
        The settings to train with and the origin of every recipe field.

    Raises:
        ConfigError: when the champion's recipe holds a value these settings reject.
    """
    merged = settings.model_dump(mode="json")
    origins: dict[str, Origin] = {}
    for dotted in recipe_values(settings):
        section, name = dotted.split(".", 1)
        if dotted in explicit:
            origins[dotted] = "explicit"
        elif champion is not None and dotted in champion.values:
            merged[section][name] = champion.values[dotted]
            origins[dotted] = "champion"
        else:
            origins[dotted] = "default"
    if champion is None:
        return ResolvedRecipe(settings=settings, origins=origins, source="defaults (no champion)")
    try:
        effective = Settings.model_validate(merged)
    except ValidationError as err:
        raise ConfigError(
            f"the recipe of {champion.model_name} v{champion.version} (run {champion.run_id}) "
            f"does not fit these settings; override the field explicitly. "
            f"{describe_validation_error(err)}"
        ) from err
    return ResolvedRecipe(
        settings=effective,
        origins=origins,
        source=f"champion {champion.model_name} v{champion.version} (run {champion.run_id})",
        champion_version=champion.version,
    )


def champion_recipe(model_name: str) -> ChampionRecipe | None:
    """Return the recipe of ``model_name``'s champion, None when there is no champion.

    Runs logged before recipes existed give their ``train`` params, target and features.

    Raises:
        RegistryError: when the champion's run cannot be read.
    """
    version = Registry(model_name).champion()
    if version is None:
        return None
    run_id = str(version.run_id)
    return ChampionRecipe(
        model_name=model_name,
        version=str(version.version),
        run_id=run_id,
        values=read_run_recipe(run_id),
    )


def read_run_recipe(run_id: str) -> dict[str, Any]:
    """Return the recipe values (dotted name -> value) a training run logged.

    Raises:
        RegistryError: when the run cannot be read or its ``recipe.json`` is malformed.
    """
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    try:
        logged = {item.path for item in client.list_artifacts(run_id)}
        if names.RECIPE_ARTIFACT not in logged:
            return _recipe_from_params(client.get_run(run_id).data.params)
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{names.RECIPE_ARTIFACT}")
    except MlflowException as err:
        raise mlflow_error(err, f"cannot read the recipe of run {run_id}") from err
    try:
        values = json.loads(text)["values"]
    except (ValueError, KeyError, TypeError) as err:
        raise RegistryError(
            f"{names.RECIPE_ARTIFACT} of run {run_id} is not a recipe (expected JSON with "
            f"'values'): {err}"
        ) from err
    if not isinstance(values, dict):
        raise RegistryError(f"{names.RECIPE_ARTIFACT} of run {run_id}: 'values' is not an object")
    return values


def _recipe_from_params(params: dict[str, str]) -> dict[str, Any]:
    """What a run logged before ``recipe.json``: its train section, target and features."""
    values: dict[str, Any] = {}
    for name in ("model_kind", "test_size", "n_estimators", "max_depth", "learning_rate"):
        if name in params:
            values[f"train.{name}"] = params[name]
    if "target" in params:
        values["data.target"] = params["target"]
    if params.get("features"):
        values["data.features"] = params["features"].split(",")
    return values

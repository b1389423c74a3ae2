"""The MLflow model registry as Loopline uses it: one registered model, versions, aliases.

Every registry read and write of the steps goes through :class:`Registry`: which version an
alias points at, a version by number, creating a version with its lineage tags, moving aliases.
MLflow must already point at the registry (:func:`steps.io.tracking.connect`). Versions are
returned as MLflow ``ModelVersion`` objects; version numbers as strings (MLflow answers ints over
SQLite and strings over REST).
"""

from __future__ import annotations

import difflib
import time
from typing import Any

from steps.core import names
from steps.core.errors import ConfigError, RegistryError
from steps.io.tracking import mlflow_error

READY_TIMEOUT_S = 120.0


class Registry:
    """One registered model of the MLflow registry."""

    def __init__(self, model_name: str) -> None:
        """Bind to ``model_name`` (nothing is read or created yet)."""
        from mlflow.tracking import MlflowClient

        self.model_name = model_name
        self._client = MlflowClient()

    def aliases(self) -> dict[str, str]:
        """Return alias -> version of the model; empty when the model does not exist yet."""
        from mlflow.exceptions import MlflowException

        try:
            aliases: dict[str, Any] = self._client.get_registered_model(self.model_name).aliases
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return {}
            raise mlflow_error(err, f"cannot read model {self.model_name!r}") from err
        return {alias: str(version) for alias, version in aliases.items()}

    def alias_version(self, alias: str) -> str | None:
        """Return the version ``alias`` points at, None when it points nowhere."""
        return self.aliases().get(alias)

    def aliases_of(self, version: str) -> list[str]:
        """Return the aliases pointing at ``version``, sorted."""
        return sorted(alias for alias, target in self.aliases().items() if target == str(version))

    def by_alias(self, alias: str) -> Any | None:
        """Return the ``ModelVersion`` ``alias`` points at, None when it points nowhere."""
        version = self.alias_version(alias)
        return None if version is None else self.version(version)

    def champion(self) -> Any | None:
        """Return the ``ModelVersion`` of the champion, None when there is none yet."""
        return self.by_alias(names.CHAMPION)

    def version(self, version: str) -> Any:
        """Return ``ModelVersion`` number ``version``.

        Raises:
            RegistryError: when the model has no such version.
        """
        from mlflow.exceptions import MlflowException

        try:
            return self._client.get_model_version(self.model_name, str(version))
        except MlflowException as err:
            existing = [str(v.version) for v in self.all_versions()] if self.exists() else None
            if existing is None:
                context = missing_model(self.model_name)
            else:
                context = (
                    f"model {self.model_name!r} has no version {version!r}; its versions: "
                    f"{', '.join(existing) or 'none'}"
                )
            raise mlflow_error(err, context) from err

    def exists(self) -> bool:
        """True when the model is registered (with or without versions)."""
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(self.model_name)
        except MlflowException as err:
            if err.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return False
            raise mlflow_error(err, f"cannot read model {self.model_name!r}") from err
        return True

    def require(self) -> None:
        """Check the model is registered.

        Raises:
            RegistryError: naming the models that are (:func:`missing_model`).
        """
        if not self.exists():
            raise RegistryError(missing_model(self.model_name))

    def resolve(self, version: str | None, alias: str | None) -> Any:
        """Return the ``ModelVersion`` named by ``version`` or ``alias`` (exactly one given).

        Raises:
            ConfigError: when both or neither are given.
            RegistryError: when the registry has no such version or alias.
        """
        if (version is None) == (alias is None):
            raise ConfigError("give exactly one of --model-version or --alias")
        if version is not None:
            return self.version(version)
        assert alias is not None
        found = self.by_alias(alias)
        if found is None:
            raise RegistryError(f"model {self.model_name!r} has no alias {alias!r}")
        return found

    def versions_of_run(self, run_id: str) -> list[str]:
        """Return the versions registered from ``run_id``, oldest first."""
        found = self._client.search_model_versions(
            f"name='{self.model_name}' and run_id='{run_id}'"
        )
        return [str(v) for v in sorted(int(v.version) for v in found)]

    def all_versions(self) -> list[Any]:
        """Return every ``ModelVersion`` of the model, oldest first."""
        found = self._client.search_model_versions(f"name='{self.model_name}'")
        return sorted(found, key=lambda v: int(v.version))

    def create_version(self, run_id: str, model_id: str, tags: dict[str, str]) -> str:
        """Register logged model ``model_id`` of ``run_id`` as a new version, wait until READY.

        Returns:
            The new version number.

        Raises:
            RegistryError: when MLflow refuses or the version does not become READY.
        """
        self._ensure_model()
        registered = self._client.create_model_version(
            self.model_name, source=f"models:/{model_id}", run_id=run_id, tags=tags,
            model_id=model_id,
        )  # fmt: skip
        version = str(registered.version)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while (status := self.version(version).status) != "READY":
            if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
                raise RegistryError(
                    f"model {self.model_name} version {version} did not become READY: {status}"
                )
            time.sleep(0.5)
        return version

    def set_version_tags(self, version: str, tags: dict[str, str]) -> None:
        """Set ``tags`` on model version ``version``.

        Raises:
            RegistryError | ServiceError: when MLflow refuses or cannot be reached.
        """
        from mlflow.exceptions import MlflowException

        try:
            for name, value in tags.items():
                self._client.set_model_version_tag(self.model_name, str(version), name, value)
        except MlflowException as err:
            raise mlflow_error(err, f"cannot tag {self.model_name} v{version}") from err

    def delete_version(self, version: str) -> None:
        """Delete ``version`` from the registry (its run and artifacts stay in tracking).

        Raises:
            RegistryError: when it does not exist, or an alias points at it (naming the alias:
                move it first).
        """
        found = self.version(version)
        held = self.aliases_of(str(found.version))
        if held:
            raise RegistryError(
                f"model {self.model_name!r} version {version} is {', '.join(held)}: not deleted "
                "(move the alias first)"
            )
        self._client.delete_model_version(self.model_name, str(version))

    def set_alias(self, alias: str, version: str) -> None:
        """Point ``alias`` at ``version``."""
        self._client.set_registered_model_alias(self.model_name, alias, str(version))

    def promote_champion(self, version: str) -> str | None:
        """Point ``champion`` at ``version``; the champion it replaces becomes
        ``previous_champion``. Idempotent.

        Returns:
            The previous champion's version (None when there was none, or it already was
            ``version``).

        Raises:
            RegistryError: when the version does not exist.
        """
        self.version(version)
        previous = self.alias_version(names.CHAMPION)
        if previous == version:
            return None
        if previous is not None:
            self.set_alias(names.PREVIOUS_CHAMPION, previous)
        self.set_alias(names.CHAMPION, version)
        return previous

    def _ensure_model(self) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self._client.get_registered_model(self.model_name)
        except MlflowException:
            self._client.create_registered_model(
                self.model_name, description="Managed by Loopline."
            )


def registered_models() -> list[str]:
    """Return the names of every registered model, sorted."""
    from mlflow.tracking import MlflowClient

    return sorted(model.name for model in MlflowClient().search_registered_models())


def missing_model(name: str) -> str:
    """The message for a model that is not registered: what is, or how to get one."""
    models = registered_models()
    if not models:
        return f"no registered model {name!r}: the registry is empty (make demo registers one)"
    close = difflib.get_close_matches(name, models, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no registered model {name!r}; registered: {', '.join(models)}{hint}"

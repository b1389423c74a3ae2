"""Register step and model aliases: the MLflow registry side of Loopline.

``run`` checks that a Loopline image can serve a gated run's model (before the registry is
touched: nothing gets a version or an alias it cannot be served with), registers it as a new
version (idempotent per run), points the ``challenger`` alias at it and tags its lineage; the
first version to pass the gate when no champion exists becomes ``champion``. ``promote`` moves
``champion`` (the canary calls it), keeping the previous one under ``previous_champion`` for
rollback. Aliases only: stages are deprecated.

CLI: ``python -m steps.register --run-id ID --out-dir DIR`` and
``loopline model promote NAME VERSION`` / ``loopline model show NAME``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.table import Table

from steps import tracking
from steps.build import ServabilityReport, check_servability
from steps.cli_support import console, new_app, reports_errors
from steps.errors import RegistryError
from steps.evaluate import CHAMPION, DECISION_TAG
from steps.outputs import write_outputs, write_result
from steps.settings import Settings, load_settings
from steps.train import MODEL_ID_TAG

CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
READY_TIMEOUT_S = 120.0


class RegisterResult(BaseModel):
    """The registered version and what changed."""

    model_name: str
    model_version: str
    run_id: str
    created: bool
    champion_set: bool
    aliases: list[str]
    servability: ServabilityReport


class PromoteResult(BaseModel):
    """Where ``champion`` pointed before and after a promotion."""

    model_name: str
    champion: str
    previous_champion: str | None


def run(settings: Settings, run_id: str, pipeline_run: str = "") -> RegisterResult:
    """Register the model of ``run_id`` and set aliases; idempotent for the same run.

    Raises:
        RegistryError: when the run did not pass the evaluation gate, or MLflow refuses.
        ServabilityError: when no Loopline image can serve the run's model, or serves it with
            other probabilities than MLflow's; the registry is then left as it was.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking.connect(settings)
    client = MlflowClient()
    name = settings.model_name
    try:
        source_run = client.get_run(run_id)
    except MlflowException as err:
        raise RegistryError(f"run {run_id!r} not found: {err.message}") from err
    decision = source_run.data.tags.get(DECISION_TAG)
    if decision != "promote":
        raise RegistryError(
            f"run {run_id} has gate decision {decision or 'none'!r}; only runs the evaluate step "
            "decided to promote are registered (run steps.evaluate first)"
        )
    model_id = source_run.data.tags.get(MODEL_ID_TAG)
    if not model_id:
        raise RegistryError(f"run {run_id} has no {MODEL_ID_TAG} tag (not a steps.train run)")
    servability = check_servability(settings, run_id, model_id)
    _ensure_registered_model(client, name)
    existing = client.search_model_versions(f"name='{name}' and run_id='{run_id}'")
    if existing:
        version, created = str(min(int(v.version) for v in existing)), False
    else:
        tags = {
            "run_id": run_id,
            "data_hash": source_run.data.tags.get("loopline.data_hash", ""),
            "git_commit": source_run.data.tags.get("loopline.git_commit", ""),
            "pipeline_run": pipeline_run,
            "model_kind": servability.model_kind,
        }
        registered = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=run_id, tags=tags, model_id=model_id
        )
        version, created = str(registered.version), True
        _wait_ready(client, name, version)
    client.set_registered_model_alias(name, CHALLENGER, version)
    champion_set = _alias_version(client, name, CHAMPION) is None
    if champion_set:
        client.set_registered_model_alias(name, CHAMPION, version)
    return RegisterResult(
        model_name=name,
        model_version=version,
        run_id=run_id,
        created=created,
        champion_set=champion_set,
        aliases=sorted(aliases_of(client, name, version)),
        servability=servability,
    )


def promote(settings: Settings, name: str, version: str) -> PromoteResult:
    """Point ``champion`` at ``version``; the old champion becomes ``previous_champion``.

    Raises:
        RegistryError: when the model or version does not exist.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking.connect(settings)
    client = MlflowClient()
    try:
        client.get_model_version(name, version)
    except MlflowException as err:
        raise RegistryError(f"model {name!r} has no version {version!r}: {err.message}") from err
    previous = _alias_version(client, name, CHAMPION)
    if previous is not None and previous != version:
        client.set_registered_model_alias(name, PREVIOUS_CHAMPION, previous)
    client.set_registered_model_alias(name, CHAMPION, version)
    return PromoteResult(model_name=name, champion=version, previous_champion=previous)


def aliases_of(client: Any, name: str, version: str) -> list[str]:
    """Return the aliases pointing at ``version`` (read from the registered model)."""
    aliases: dict[str, Any] = client.get_registered_model(name).aliases
    return [alias for alias, target in aliases.items() if str(target) == str(version)]


def _alias_version(client: Any, name: str, alias: str) -> str | None:
    aliases: dict[str, Any] = client.get_registered_model(name).aliases
    target = aliases.get(alias)
    return None if target is None else str(target)


def _ensure_registered_model(client: Any, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(name, description="Managed by Loopline.")


def _wait_ready(client: Any, name: str, version: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        status = client.get_model_version(name, version).status
        if status == "READY":
            return
        if status == "FAILED_REGISTRATION" or time.monotonic() > deadline:
            raise RegistryError(f"model {name} version {version} did not become READY: {status}")
        time.sleep(0.5)


app = new_app("Register a gated model version and set its aliases.")
model_app = new_app("Inspect registered models and move the champion alias.")


@app.command()
@reports_errors
def main(
    run_id: Annotated[str, typer.Option(help="MLflow run id that passed evaluation")],
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    pipeline_run: Annotated[str, typer.Option(help="workflow name, for lineage")] = "",
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
) -> None:
    """Register the run's model, set alias challenger (and champion if none), write outputs."""
    settings = load_settings(model_name=model_name)
    result = run(settings, run_id, pipeline_run)
    write_outputs(
        out_dir,
        {
            "model_version": result.model_version,
            "champion_set": "true" if result.champion_set else "false",
        },
    )
    write_result(out_dir, result)
    verb = "registered" if result.created else "already registered as"
    served = result.servability
    console.print(
        f"servable: {served.model_kind} ({served.model_file}, {served.requirements_lock}), "
        f"max abs difference {served.max_abs_diff:.1g} from the MLflow model"
    )
    console.print(
        f"{verb} {result.model_name} version {result.model_version} "
        f"(aliases: {', '.join(result.aliases)})"
    )
    if result.champion_set:
        console.print(f"no champion existed: version {result.model_version} is now champion")


@model_app.command("promote")
@reports_errors
def promote_command(
    name: Annotated[str, typer.Argument(help="registered model name")],
    version: Annotated[str, typer.Argument(help="version to make champion")],
) -> None:
    """Move the champion alias to VERSION (the previous one becomes previous_champion)."""
    result = promote(load_settings(), name, version)
    before = f"v{result.previous_champion}" if result.previous_champion else "none"
    console.print(f"{name}: champion {before} -> v{result.champion}")


@model_app.command("show")
@reports_errors
def show_command(name: Annotated[str, typer.Argument(help="registered model name")]) -> None:
    """List the versions of NAME with their aliases and lineage."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking.connect(load_settings())
    client = MlflowClient()
    try:
        versions = client.search_model_versions(f"name='{name}'")
        aliases: dict[str, Any] = client.get_registered_model(name).aliases
    except MlflowException as err:
        raise RegistryError(f"model {name!r} not found: {err.message}") from err
    table = Table("version", "aliases", "data hash", "pipeline run")
    table.add_column("run id", no_wrap=True, min_width=32)
    for version in sorted(versions, key=lambda v: int(v.version)):
        labels = [a for a, v in aliases.items() if str(v) == str(version.version)]
        table.add_row(
            str(version.version),
            ", ".join(sorted(labels)),
            str(version.tags.get("data_hash", ""))[:12],
            str(version.tags.get("pipeline_run", "")),
            str(version.run_id),
        )
    console.print(table)


if __name__ == "__main__":
    app()

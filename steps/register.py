"""Register step: a gated run's model becomes a registry version with aliases.

``run`` checks the run passed the evaluation gate and that a Loopline service image can serve its
model (:func:`steps.ml.servability.check_servability`, before anything is written), registers it
as a new version (idempotent per run) with its lineage tags and points ``challenger`` at it.
Aliases only: stages are deprecated. Registration never moves ``champion``: the champion is what
production serves, so it moves when a version reaches 100 % of the traffic (the canary
promotion, ``steps/promote.py``), at the first deployment when nothing was served
(``steps/deploy.py``), or by hand (:func:`promote`, ``loopline model promote``).

CLI: ``python -m steps.register --run-id ID --out-dir DIR``; output ``model_version``.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import BaseModel

from steps.core import names
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError, RegistryError
from steps.core.outputs import write_outputs, write_result
from steps.core.settings import Settings, load_settings
from steps.io import tracking
from steps.io.registry import Registry
from steps.ml.servability import ServabilityReport, check_servability


class RegisterResult(BaseModel):
    """The registered version and what changed."""

    model_name: str
    model_version: str
    run_id: str
    created: bool
    aliases: list[str]
    servability: ServabilityReport
    identical_to: str | None = None
    """The version this run repeats (same data hash, same held-out metrics): nothing was
    registered and ``model_version`` is that one."""


class PromoteResult(BaseModel):
    """Where ``champion`` pointed before and after a promotion."""

    model_name: str
    champion: str
    previous_champion: str | None


def run(
    settings: Settings, run_id: str, pipeline_run: str = "", force: bool = False
) -> RegisterResult:
    """Register the model of ``run_id`` and set aliases; idempotent for the same run.

    A run that repeats a registered version (same data hash and the same held-out metrics, a
    retrain on unchanged data) is not registered again unless ``force``: the result names that
    version, which gets the ``challenger`` alias.

    Raises:
        RegistryError: when the run did not pass the evaluation gate, or MLflow refuses.
        ServabilityError: when no Loopline image can serve the run's model, or serves it with
            other probabilities than MLflow's; the registry is then left as it was.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    tracking.connect(settings)
    try:
        tags = MlflowClient().get_run(run_id).data.tags
    except MlflowException as err:
        raise tracking.mlflow_error(err, f"run {run_id!r} not found") from err
    decision = tags.get(names.DECISION_TAG)
    if decision != "promote":
        raise RegistryError(
            f"run {run_id} has gate decision {decision or 'none'!r}; only runs the evaluate step "
            "decided to promote are registered (run steps.evaluate first)"
        )
    model_id = tags.get(names.MODEL_ID_TAG)
    if not model_id:
        raise RegistryError(f"run {run_id} has no {names.MODEL_ID_TAG} tag (not a steps.train run)")
    servability = check_servability(settings, run_id, model_id)
    registry = Registry(settings.model_name)
    existing = registry.versions_of_run(run_id)
    identical = None if existing or force else identical_version(registry, run_id, tags)
    if existing:
        version, created = existing[0], False
    elif identical is not None:
        version, created = identical, False
    else:
        lineage = {
            "run_id": run_id,
            "data_hash": tags.get(names.DATA_HASH_TAG, ""),
            "git_commit": tags.get(names.GIT_COMMIT_TAG, ""),
            "pipeline_run": pipeline_run,
            "model_kind": servability.model_kind,
        }
        version, created = registry.create_version(run_id, model_id, lineage), True
    registry.set_alias(names.CHALLENGER, version)
    return RegisterResult(
        model_name=settings.model_name,
        model_version=version,
        run_id=run_id,
        created=created,
        aliases=registry.aliases_of(version),
        servability=servability,
        identical_to=identical,
    )


def identical_version(registry: Registry, run_id: str, tags: dict[str, str]) -> str | None:
    """The newest version whose run had the same data hash and the same held-out metrics as
    ``run_id`` (to 1e-9), or None."""
    from mlflow.tracking import MlflowClient

    data_hash = tags.get(names.DATA_HASH_TAG)
    if not data_hash:
        return None
    client = MlflowClient()
    metrics = _holdout_metrics(client.get_run(run_id).data.metrics)
    for version in reversed(registry.all_versions()):
        if version.tags.get("data_hash") != data_hash:
            continue
        theirs = _holdout_metrics(client.get_run(version.run_id).data.metrics)
        if (
            metrics
            and theirs.keys() == metrics.keys()
            and all(abs(theirs[key] - value) <= 1e-9 for key, value in metrics.items())
        ):
            return str(version.version)
    return None


def _holdout_metrics(metrics: dict[str, float]) -> dict[str, float]:
    return {key: value for key, value in metrics.items() if key.startswith("holdout_")}


def promote(settings: Settings, name: str, version: str) -> PromoteResult:
    """Point ``champion`` at ``version``; the old champion becomes ``previous_champion``.

    Raises:
        RegistryError: when the model or version does not exist.
    """
    tracking.connect(settings)
    registry = Registry(name)
    before = registry.alias_version(names.CHAMPION)
    registry.promote_champion(version)
    return PromoteResult(model_name=name, champion=version, previous_champion=before)


class PruneResult(BaseModel):
    """The versions deleted (with their local bentos) and those kept."""

    model_name: str
    deleted: list[str]
    kept: list[str]
    bentos_deleted: list[str]


def prune(settings: Settings, name: str, keep: int, dry_run: bool = False) -> PruneResult:
    """Delete the versions of ``name`` beyond the newest ``keep`` that no alias points at, and
    the bentos and BentoML models built from them in the local store.

    Raises:
        RegistryError: when the model is not registered (naming those that are).
        ConfigError: when ``keep`` is below 1.
    """
    if keep < 1:
        raise ConfigError(f"--keep {keep}: expected at least 1 (the newest version is kept)")
    tracking.connect(settings)
    registry = Registry(name)
    registry.require()
    versions = registry.all_versions()
    aliased = set(registry.aliases().values())
    newest = {str(v.version) for v in versions[-keep:]}
    doomed = [v for v in versions if str(v.version) not in newest | aliased]
    bentos: list[str] = []
    if not dry_run:
        for version in doomed:
            registry.delete_version(str(version.version))
            bentos += _delete_bentos(settings, name, version)
    return PruneResult(
        model_name=name,
        deleted=[str(v.version) for v in doomed],
        kept=[str(v.version) for v in versions if v not in doomed],
        bentos_deleted=bentos,
    )


def _delete_bentos(settings: Settings, name: str, version: Any) -> list[str]:
    """Delete the local bentos labelled with ``version``'s run, and its BentoML model."""
    os.environ["BENTOML_HOME"] = str(settings.resolved_bentoml_home)
    import bentoml

    deleted = []
    for bento in bentoml.bentos.list():
        if bento.info.labels.get("run_id") == version.run_id:
            bentoml.bentos.delete(bento.tag)
            deleted.append(str(bento.tag))
    model_tag = f"{name}:v{version.version}-{version.run_id[:8]}".lower()
    with contextlib.suppress(bentoml.exceptions.NotFound):
        bentoml.models.delete(model_tag)
    return deleted


app = new_app("Register a gated model version and set its aliases.")


@app.command()
@reports_errors
def main(
    run_id: Annotated[str, typer.Option(help="MLflow run id that passed evaluation")],
    out_dir: Annotated[Path, typer.Option(help="directory for output parameter files")],
    pipeline_run: Annotated[str, typer.Option(help="workflow name, for lineage")] = "",
    model_name: Annotated[str | None, typer.Option(help="registered model name")] = None,
    force: Annotated[
        bool, typer.Option(help="register even a run identical to a registered version")
    ] = False,
) -> None:
    """Register the run's model, set alias challenger, write output model_version."""
    settings = load_settings(model_name=model_name)
    result = run(settings, run_id, pipeline_run, force)
    write_outputs(
        out_dir,
        "register",
        {"model_version": result.model_version},
    )
    write_result(out_dir, result)
    if result.identical_to is not None:
        verb = "identical to a registered version (same data hash, same held-out metrics), not "
        verb += "registered again (--force registers it):"
    else:
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


if __name__ == "__main__":
    app()

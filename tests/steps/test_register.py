"""Register step and champion alias moves against a real local MLflow registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from steps import build, evaluate, register, train
from steps.cli import app
from steps.core import names
from steps.core.errors import RegistryError, ServabilityError
from steps.core.settings import Settings
from steps.io.registry import Registry
from tests.fixtures.training import make_champion, small_settings

pytestmark = pytest.mark.integration


def _aliases(settings: Settings, name: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    tracking.connect(settings)
    return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_registration_lifecycle(tmp_path: Path, churn_parquet: Path) -> None:
    from mlflow.tracking import MlflowClient

    settings = small_settings(tmp_path, churn_parquet)
    first = train.run(settings, pipeline_run="wf-1").run_id

    # Given a run that has not been through the gate, registration refuses.
    with pytest.raises(RegistryError, match="gate decision 'none'"):
        register.run(settings, first)

    # The first gated version becomes challenger, never champion (a deployment moves that),
    # with lineage tags.
    evaluate.run(settings, first)
    one = register.run(settings, first, pipeline_run="wf-1")
    assert (one.model_version, one.created) == ("1", True)
    assert one.aliases == ["challenger"]
    served = one.servability
    assert (served.model_kind, served.model_file) == ("xgboost", "model.ubj")
    assert served.requirements_lock == "serving/requirements.lock"
    assert served.rows_compared == 5 and served.max_abs_diff <= 1e-6
    version = MlflowClient().get_model_version(settings.model_name, "1")
    assert version.tags["run_id"] == first
    assert version.tags["pipeline_run"] == "wf-1"
    assert len(version.tags["data_hash"]) == 64
    assert version.tags["git_commit"]
    assert version.tags["model_kind"] == "xgboost"

    # Re-running for the same run creates no second version.
    again = register.run(settings, first, pipeline_run="wf-1")
    assert (again.model_version, again.created) == ("1", False)
    assert len(MlflowClient().search_model_versions(f"name='{settings.model_name}'")) == 1

    # A retrain on unchanged data (same seed) repeats v1: not registered again unless forced.
    repeat = train.run(settings, pipeline_run="wf-repeat").run_id
    evaluate.run(settings, repeat)
    same = register.run(settings, repeat, pipeline_run="wf-repeat")
    assert (same.model_version, same.created, same.identical_to) == ("1", False, "1")
    assert len(MlflowClient().search_model_versions(f"name='{settings.model_name}'")) == 1

    # Made champion (as its first deployment does), then a second gated run (another seed)
    # becomes challenger; the champion stays.
    assert register.promote(settings, settings.model_name, "1").previous_champion is None
    reseeded = settings.model_copy(update={"seed": settings.seed + 1})
    second = train.run(reseeded, pipeline_run="wf-2").run_id
    evaluate.run(settings, second)
    two = register.run(settings, second, pipeline_run="wf-2")
    assert two.model_version == "2"
    assert _aliases(settings, settings.model_name) == {"challenger": "2", "champion": "1"}

    # Promotion moves champion and remembers the previous one for rollback.
    promoted = register.promote(settings, settings.model_name, "2")
    assert (promoted.champion, promoted.previous_champion) == ("2", "1")
    assert _aliases(settings, settings.model_name) == {
        "challenger": "2",
        "champion": "2",
        "previous_champion": "1",
    }
    with pytest.raises(RegistryError, match="no version '7'"):
        register.promote(settings, settings.model_name, "7")
    # Nothing moved on the failed promotion.
    assert _aliases(settings, settings.model_name)["champion"] == "2"
    # Forced, the repeating run is registered after all.
    forced = register.run(settings, repeat, pipeline_run="wf-repeat", force=True)
    assert (forced.model_version, forced.created, forced.identical_to) == ("3", True, None)

    # Pruning keeps every aliased version and the newest; v3 (built) loses its alias to v4.
    built = build.run(settings, version="3")
    third = train.run(settings.model_copy(update={"seed": settings.seed + 2})).run_id
    evaluate.run(settings, third)
    assert register.run(settings, third).model_version == "4"
    dry = register.prune(settings, settings.model_name, keep=1, dry_run=True)
    assert (dry.deleted, dry.kept) == (["3"], ["1", "2", "4"])
    assert len(MlflowClient().search_model_versions(f"name='{settings.model_name}'")) == 4
    pruned = register.prune(settings, settings.model_name, keep=1)
    assert pruned.deleted == ["3"] and pruned.bentos_deleted == [built.bento_tag]
    left = MlflowClient().search_model_versions(f"name='{settings.model_name}'")
    assert sorted(str(v.version) for v in left) == ["1", "2", "4"]
    import bentoml

    assert built.bento_tag not in {str(bento.tag) for bento in bentoml.bentos.list()}
    with pytest.raises(RegistryError, match="version 2 is champion: not deleted"):
        Registry(settings.model_name).delete_version("2")


def test_cli_writes_outputs_and_model_commands_report(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = small_settings(tmp_path, churn_parquet)
    run_id = train.run(settings).run_id
    evaluate.run(settings, run_id)
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(tmp_path))
    out = tmp_path / "out"

    registered = CliRunner().invoke(app, ["register", "--run-id", run_id, "--out-dir", str(out)])
    assert registered.exit_code == 0, registered.output
    assert (out / "model_version").read_text() == "1"
    assert sorted(p.name for p in out.iterdir() if p.name != "result.json") == ["model_version"]
    assert "champion" not in registered.output

    shown = CliRunner().invoke(app, ["model", "show", settings.model_name, "-o", "json"])
    assert shown.exit_code == 0, shown.output
    (version,) = json.loads(shown.output)
    assert (version["version"], version["run_id"], version["kind"]) == ("1", run_id, "xgboost")
    assert version["aliases"] == "challenger" and len(version["data_hash"]) == 12
    assert 0.5 < version["holdout_roc_auc"] <= 1.0
    table = CliRunner().invoke(app, ["model", "show", settings.model_name])
    assert table.exit_code == 0 and run_id[:8] in table.output and "challenger" in table.output
    listed = CliRunner().invoke(app, ["model", "list", "-o", "yaml"])
    assert yaml.safe_load(listed.output) == [
        {"model": settings.model_name, "versions": 1, "latest": "1", "aliases": "challenger -> v1"}
    ]
    # Not found: the message says what exists
    missing = CliRunner().invoke(app, ["model", "promote", settings.model_name, "9"])
    assert missing.exit_code == 2 and "no version '9'; its versions: 1" in missing.output
    unknown = CliRunner().invoke(app, ["model", "promote", "chrun", "1"])
    assert unknown.exit_code == 2
    assert f"no registered model 'chrun'; registered: {settings.model_name}" in unknown.output
    unknown = CliRunner().invoke(app, ["model", "show", "no-such-model"])
    assert unknown.exit_code == 2 and f"registered: {settings.model_name}" in unknown.output
    pruned = CliRunner().invoke(app, ["model", "prune", settings.model_name, "--dry-run"])
    assert pruned.exit_code == 0 and "would delete nothing; kept v1" in pruned.output
    refused = CliRunner().invoke(app, ["model", "prune", settings.model_name, "--keep", "0"])
    assert refused.exit_code == 2 and "--keep 0: expected at least 1" in refused.output


def _native_dir(settings: Settings, run_id: str) -> Path:
    """Where the local artifact store keeps the run's logged native model files."""
    import mlflow
    from mlflow.tracking import MlflowClient

    from steps.io import tracking

    tracking.connect(settings)
    model_id = MlflowClient().get_run(run_id).data.tags[names.MODEL_ID_TAG]
    location = mlflow.get_logged_model(model_id).artifact_location
    return Path(location.removeprefix("file://")) / "artifacts" / "native"


def _registry(settings: Settings) -> tuple[list[str], dict[str, str]]:
    from mlflow.tracking import MlflowClient

    client = MlflowClient()
    if not client.search_registered_models():
        return [], {}
    versions = client.search_model_versions(f"name='{settings.model_name}'")
    return sorted(str(v.version) for v in versions), _aliases(settings, settings.model_name)


def test_an_unservable_model_is_refused_before_the_registry_is_touched(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from serving.model import REQUIREMENTS_LOCKS

    settings = small_settings(tmp_path, churn_parquet)
    first = train.run(settings, pipeline_run="wf-1").run_id
    assert evaluate.run(settings, first)[0].decision == "promote"
    # Given a gated run whose native files hold a model.pkl that joblib cannot load,
    native = _native_dir(settings, first)
    (native / "model.ubj").rename(native / "model.pkl")
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(tmp_path))
    out = tmp_path / "out"

    refused = CliRunner().invoke(app, ["register", "--run-id", first, "--out-dir", str(out)])

    # the register step exits 2 (not retried) naming the kind, the file and what is expected,
    assert refused.exit_code == 2, refused.output
    message = " ".join(refused.output.split())
    assert f"model kind sklearn of run {first} cannot be served" in message
    assert "model.pkl is not a model joblib can load" in message
    # and the registry is as it was: not even the registered model exists.
    assert _registry(settings) == ([], {})
    assert not out.exists()

    # Restored, the same run registers as version 1 (challenger; made champion as a deployment
    # would).
    (native / "model.pkl").rename(native / "model.ubj")
    make_champion(register.run(settings, first).model_version, settings)

    # A second gated run whose kind has no serving image is refused; nothing moves.
    second = train.run(settings, pipeline_run="wf-2").run_id
    assert evaluate.run(settings, second)[0].decision == "promote"
    before = _registry(settings)
    assert before == (["1"], {"challenger": "1", "champion": "1"})
    monkeypatch.delitem(REQUIREMENTS_LOCKS, "xgboost")
    with pytest.raises(
        ServabilityError,
        match=r"model kind xgboost \(model\.ubj\) has no serving image: expected its locked "
        r"requirements in serving/requirements-xgboost\.lock",
    ):
        register.run(settings, second)
    assert _registry(settings) == before

"""Register step and champion alias moves against a real local MLflow registry."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from steps import evaluate, register, train
from steps.cli import app
from steps.errors import RegistryError
from steps.settings import Settings
from tests.fixtures.training import small_settings

pytestmark = pytest.mark.integration


def _aliases(settings: Settings, name: str) -> dict[str, str]:
    from mlflow.tracking import MlflowClient

    from steps import tracking

    tracking.connect(settings)
    return {k: str(v) for k, v in MlflowClient().get_registered_model(name).aliases.items()}


def test_registration_lifecycle(tmp_path: Path, churn_parquet: Path) -> None:
    from mlflow.tracking import MlflowClient

    settings = small_settings(tmp_path, churn_parquet)
    first = train.run(settings, pipeline_run="wf-1").run_id

    # Given a run that has not been through the gate, registration refuses.
    with pytest.raises(RegistryError, match="gate decision 'none'"):
        register.run(settings, first)

    # The first gated version becomes challenger and champion, with lineage tags.
    evaluate.run(settings, first)
    one = register.run(settings, first, pipeline_run="wf-1")
    assert (one.model_version, one.created, one.champion_set) == ("1", True, True)
    assert one.aliases == ["challenger", "champion"]
    version = MlflowClient().get_model_version(settings.model_name, "1")
    assert version.tags["run_id"] == first
    assert version.tags["pipeline_run"] == "wf-1"
    assert len(version.tags["data_hash"]) == 64
    assert version.tags["git_commit"]

    # Re-running for the same run creates no second version.
    again = register.run(settings, first, pipeline_run="wf-1")
    assert (again.model_version, again.created) == ("1", False)
    assert len(MlflowClient().search_model_versions(f"name='{settings.model_name}'")) == 1

    # A second gated run becomes challenger; the champion stays.
    second = train.run(settings, pipeline_run="wf-2").run_id
    evaluate.run(settings, second)
    two = register.run(settings, second, pipeline_run="wf-2")
    assert (two.model_version, two.champion_set) == ("2", False)
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
    assert (out / "champion_set").read_text() == "true"
    assert "is now champion" in registered.output

    shown = CliRunner().invoke(app, ["model", "show", settings.model_name])
    assert shown.exit_code == 0 and run_id in shown.output
    missing = CliRunner().invoke(app, ["model", "promote", settings.model_name, "9"])
    assert missing.exit_code == 2 and "no version '9'" in missing.output
    unknown = CliRunner().invoke(app, ["model", "show", "no-such-model"])
    assert unknown.exit_code == 2 and "no-such-model" in unknown.output

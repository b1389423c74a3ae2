"""Evaluate step against a real local MLflow store: report, decision, champion comparison."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from steps import evaluate, register, train
from steps.cli import app
from tests.fixtures.training import small_settings

pytestmark = pytest.mark.integration


def test_first_challenger_is_promoted_and_report_is_logged(
    tmp_path: Path, churn_parquet: Path
) -> None:
    import json

    import mlflow
    from mlflow.tracking import MlflowClient

    settings = small_settings(tmp_path, churn_parquet)
    trained = train.run(settings)

    result, verdict = evaluate.run(settings, trained.run_id)

    assert verdict.promote and result.champion is None
    assert any("no champion" in reason for reason in result.reasons)
    # Same model, same held-out rows: evaluation reproduces the train step's metric exactly.
    assert result.challenger_metrics["roc_auc"] == trained.metrics["holdout_roc_auc"]
    files = {Path(a.path).name for a in MlflowClient().list_artifacts(trained.run_id, "evaluation")}
    assert files == {
        "metrics.json",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "report.html",
    }
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=trained.run_id, artifact_path="evaluation")
    )
    assert (local / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64" in (local / "report.html").read_text()
    logged = json.loads((local / "metrics.json").read_text())
    assert logged["decision"] == "promote"
    assert logged["models"]["challenger"]["roc_auc"] == result.challenger_metrics["roc_auc"]
    tags = MlflowClient().get_run(trained.run_id).data.tags
    assert tags[evaluate.DECISION_TAG] == "promote"


def test_weak_challenger_is_rejected_against_the_champion(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong = small_settings(tmp_path, churn_parquet)
    champion_run = train.run(strong).run_id
    evaluate.run(strong, champion_run)
    register.run(strong, champion_run)
    weak = small_settings(tmp_path, churn_parquet, n_estimators=1, max_depth=1)
    weak_run = train.run(weak).run_id
    lenient = weak.model_copy(update={"gate": weak.gate.model_copy(update={"min_value": 0.5})})

    result, verdict = evaluate.run(lenient, weak_run)

    assert not verdict.promote
    assert verdict.passed_absolute  # it fails on the regression only
    assert result.champion is not None and result.champion.version == "1"
    assert result.champion.run_id == champion_run
    assert result.champion.metrics["roc_auc"] > result.challenger_metrics["roc_auc"] + 0.01
    assert "champion v1" in result.reasons[1] and "exceeds" in result.reasons[1]

    # The CLI exits 3 with the reason, or writes decision=reject when asked not to fail.
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(tmp_path))
    out = tmp_path / "out"
    failed = CliRunner().invoke(app, ["evaluate", "--run-id", weak_run, "--out-dir", str(out)])
    assert failed.exit_code == 3
    assert "reject" in failed.output and "exceeds the allowed regression" in failed.output
    kept = CliRunner().invoke(
        app, ["evaluate", "--run-id", weak_run, "--out-dir", str(out), "--no-fail-on-reject"]
    )
    assert kept.exit_code == 0
    assert (out / "decision").read_text() == "reject"
    assert (out / "report_uri").read_text().endswith(f"{weak_run}/artifacts/evaluation")


def test_unknown_run_is_a_clear_error_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(tmp_path))
    result = CliRunner().invoke(
        app, ["evaluate", "--run-id", "0123456789abcdef", "--out-dir", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "0123456789abcdef" in result.output
    assert "Traceback" not in result.output

"""Evaluate step against a real local MLflow store: report, decision, champion comparison."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from steps import evaluate, register, train
from steps.cli import app
from steps.core import names
from steps.ml.holdout import ROW_KEY_COLUMN
from tests.fixtures.training import make_champion, small_settings

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
        "confusion_matrix.png",
        "feature_importance.png",
        "report.html",
    }  # no champion: no data-shift comparison
    local = Path(
        mlflow.artifacts.download_artifacts(run_id=trained.run_id, artifact_path="evaluation")
    )
    assert (local / "roc.png").read_bytes().startswith(b"\x89PNG")
    assert "data:image/png;base64" in (local / "report.html").read_text()
    logged = json.loads((local / "metrics.json").read_text())
    assert logged["decision"] == "promote"
    assert logged["models"]["challenger"]["roc_auc"] == result.challenger_metrics["roc_auc"]
    assert logged["kinds"] == {"challenger": "xgboost"}
    assert logged["comparison"] == []
    served = logged["confusion"]["challenger"]
    counts = ("true_positive", "false_positive", "false_negative", "true_negative")
    assert sum(served[k] for k in counts) == result.rows_holdout
    ranked = logged["importance"]["challenger"]
    features = MlflowClient().get_run(trained.run_id).data.params["features"].split(",")
    assert ranked and {i["feature"] for i in ranked} <= set(features)
    assert [i["mean"] for i in ranked] == sorted((i["mean"] for i in ranked), reverse=True)
    tags = MlflowClient().get_run(trained.run_id).data.tags
    assert tags[names.DECISION_TAG] == "promote"


def test_weak_challenger_is_rejected_against_the_champion(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    strong = small_settings(tmp_path, churn_parquet)
    champion_run = train.run(strong).run_id
    evaluate.run(strong, champion_run)
    make_champion(register.run(strong, champion_run).model_version, strong)
    weak = small_settings(tmp_path, churn_parquet, n_estimators=1, max_depth=1)
    weak_run = train.run(weak).run_id
    lenient = weak.model_copy(update={"gate": weak.gate.model_copy(update={"min_value": 0.5})})

    result, verdict = evaluate.run(lenient, weak_run)

    assert not verdict.promote
    assert verdict.passed_absolute  # it fails on the regression only
    assert result.champion is not None and result.champion.version == "1"
    assert result.champion.run_id == champion_run
    assert result.champion.metrics["roc_auc"] > result.challenger_metrics["roc_auc"] + 0.01
    assert any(
        "champion v1" in r and "worse, more than the allowed drop of 0.0100" in r
        for r in result.reasons
    )
    logged = _metrics_json(weak_run)
    roc = next(row for row in logged["comparison"] if row["metric"] == "roc_auc")
    assert roc["difference"] < -0.01 and roc["better"] == "champion"
    assert logged["kinds"] == {"challenger": "xgboost", "champion v1": "xgboost"}
    assert set(logged["importance"]) == {"challenger", "champion v1"}

    # The CLI exits 3 with the reason, or writes decision=reject when asked not to fail.
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(tmp_path))
    out = tmp_path / "out"
    failed = CliRunner().invoke(app, ["evaluate", "--run-id", weak_run, "--out-dir", str(out)])
    assert failed.exit_code == 3
    assert "reject" in failed.output and "more than the allowed drop" in failed.output
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


def _credit_table(tmp_path: Path, churn_parquet: Path, balance_scale: float = 1.0) -> Path:
    """The churn table without its time column (so rows are held out by key), one column in
    other units when ``balance_scale`` is not 1."""
    import pandas as pd

    frame = pd.read_parquet(churn_parquet).drop(columns=["event_timestamp"])
    frame["monthly_charges"] = frame["monthly_charges"] * balance_scale
    path = tmp_path / f"credit-x{balance_scale:g}.parquet"
    frame.to_parquet(path)
    return path


def _cli_cycle(settings_dir: Path, data: Path, seed: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Train and evaluate through the CLIs (recipe inherited from the champion), return the run."""
    monkeypatch.setenv("LOOPLINE_STATE_DIR", str(settings_dir))
    out = settings_dir / f"out-{data.stem}-{seed}"
    trained = CliRunner().invoke(
        app, ["train", "--data-uri", str(data), "--seed", str(seed), "--out-dir", str(out)]
    )
    assert trained.exit_code == 0, trained.output
    run_id = (out / "run_id").read_text()
    evaluated = CliRunner().invoke(
        app, ["evaluate", "--run-id", run_id, "--out-dir", str(out), "--no-fail-on-reject"]
    )
    assert evaluated.exit_code == 0, evaluated.output
    return run_id


def _registered_champion(state: Path, data: Path, holdout: str = "auto") -> str:
    settings = small_settings(state, data)
    settings = settings.model_copy(
        update={"data": settings.data.model_copy(update={"holdout": holdout})}
    )
    run_id = train.run(settings).run_id
    evaluate.run(settings, run_id)
    make_champion(register.run(settings, run_id).model_version, settings)
    return run_id


def test_retrain_with_another_seed_is_scored_on_rows_neither_model_trained_on(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    import pandas as pd

    data = _credit_table(tmp_path, churn_parquet)
    champion_run = _registered_champion(tmp_path / "state", data)
    challenger_run = _cli_cycle(tmp_path / "state", data, seed=9, monkeypatch=monkeypatch)

    def keys(run_id: str, artifact: str) -> set[int]:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=artifact)
        return set(pd.read_parquet(path)[ROW_KEY_COLUMN].tolist())

    held = keys(challenger_run, names.HOLDOUT_ARTIFACT)
    assert held == keys(champion_run, names.HOLDOUT_ARTIFACT)  # the seed moved no row
    assert not held & keys(challenger_run, names.TRAIN_KEYS_ARTIFACT)
    assert not held & keys(champion_run, names.TRAIN_KEYS_ARTIFACT)
    logged = _metrics_json(challenger_run)
    assert [(o["label"], o["seen_rows"]) for o in logged["overlaps"]] == [
        ("challenger", 0),
        ("champion v1", 0),
    ]
    assert logged["decision"] == "promote", logged["reasons"]


def test_a_champion_scored_on_rows_it_trained_on_is_refused(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The champion held out rows by key, the challenger holds out the newest rows of the same
    # table: most of those were the champion's training rows.
    champion_run = _registered_champion(tmp_path / "state", churn_parquet, holdout="key")
    monkeypatch.setenv("LOOPLINE_DATA__HOLDOUT", "time")
    challenger_run = _cli_cycle(tmp_path / "state", churn_parquet, seed=1, monkeypatch=monkeypatch)

    logged = _metrics_json(challenger_run)
    seen = {o["label"]: o["seen_rows"] for o in logged["overlaps"]}
    assert seen["challenger"] == 0
    assert seen["champion v1"] > 0.5 * logged["rows_holdout"]
    assert logged["decision"] == "reject"
    assert any("comparison refused" in reason for reason in logged["reasons"])
    assert champion_run != challenger_run


def test_a_unit_change_is_visible_and_blocks_promotion(
    tmp_path: Path, churn_parquet: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    _registered_champion(tmp_path / "state", _credit_table(tmp_path, churn_parquet))
    in_thousands = _credit_table(tmp_path, churn_parquet, balance_scale=0.001)
    challenger_run = _cli_cycle(tmp_path / "state", in_thousands, seed=2, monkeypatch=monkeypatch)

    logged = _metrics_json(challenger_run)
    gross = [s["column"] for s in logged["shifts"] if s["gross"]]
    assert gross == ["monthly_charges"]
    assert logged["decision"] == "reject"
    assert any("monthly_charges (wasserstein" in r for r in logged["reasons"])
    files = {Path(a.path).name for a in MlflowClient().list_artifacts(challenger_run, "evaluation")}
    assert {"data_shift.png", "data_shift.html"} <= files
    page = mlflow.artifacts.load_text(f"runs:/{challenger_run}/evaluation/report.html")
    assert "monthly_charges" in page and "GROSS" in page


def _metrics_json(run_id: str) -> dict[str, Any]:
    import json

    import mlflow

    return dict(json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/evaluation/metrics.json")))

"""The evaluation report: what it measures (checked against sklearn or by hand) and what it
writes (the same facts in ``metrics.json`` and ``report.html``)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.ml.comparison import (
    HIGHER_IS_BETTER,
    IMPORTANCE_TOP,
    SERVING_THRESHOLD,
    FeatureImportance,
    compare_metrics,
    confusion_at,
    permutation_importance,
)
from steps.ml.gate import Shift
from steps.ml.metrics import classification_metrics
from steps.ml.report import ScoredModel, write_report

LABELS = np.array([1, 1, 1, 0, 0, 0, 1, 0])
CHALLENGER_P = np.array([0.9, 0.5, 0.2, 0.7, 0.1, 0.49, 0.8, 0.3])
CHAMPION_P = np.array([0.4, 0.6, 0.3, 0.2, 0.5, 0.55, 0.35, 0.45])


def test_serving_threshold_is_the_one_the_service_documents() -> None:
    from serving.schema import Prediction

    description = Prediction.model_fields["label"].description
    assert description == f"1 when probability >= {SERVING_THRESHOLD}, else 0"


def test_confusion_counts_match_sklearn_with_the_threshold_itself_labelled_positive() -> None:
    from sklearn.metrics import confusion_matrix

    confusion = confusion_at(LABELS, CHALLENGER_P)

    served = (CHALLENGER_P >= 0.5).astype(int)  # 0.5 is labelled 1, 0.49 is not
    (tn, fp), (fn, tp) = confusion_matrix(LABELS, served, labels=[0, 1])
    assert (confusion.true_negative, confusion.false_positive) == (tn, fp)
    assert (confusion.false_negative, confusion.true_positive) == (fn, tp)
    assert (tp, fp, fn, tn) == (3, 1, 1, 3)
    assert confusion.precision == pytest.approx(3 / 4)
    assert confusion.recall == pytest.approx(3 / 4)
    assert confusion.threshold == SERVING_THRESHOLD


def test_confusion_precision_is_undefined_when_nothing_is_labelled_positive() -> None:
    confusion = confusion_at(np.array([0, 1]), np.array([0.1, 0.2]))
    assert confusion.precision is None
    assert confusion.recall == 0.0
    assert confusion.false_negative == 1 and confusion.true_negative == 1


def test_every_metric_the_evaluation_computes_has_a_direction() -> None:
    assert set(classification_metrics(LABELS, CHALLENGER_P)) == set(HIGHER_IS_BETTER)


def test_difference_is_challenger_minus_champion_and_direction_picks_the_better() -> None:
    challenger = {"roc_auc": 0.85, "brier": 0.20, "log_loss": 0.40, "pr_auc": 0.70}
    champion = {"roc_auc": 0.80, "brier": 0.15, "log_loss": 0.45, "pr_auc": 0.70002}

    rows = {row.metric: row for row in compare_metrics(challenger, champion)}

    assert list(rows) == ["roc_auc", "brier", "log_loss", "pr_auc"]
    assert rows["roc_auc"].difference == pytest.approx(0.05)
    assert rows["roc_auc"].better == "challenger"  # higher AUC
    assert rows["brier"].difference == pytest.approx(0.05)
    assert rows["brier"].better == "champion"  # higher Brier is worse
    assert rows["log_loss"].difference == pytest.approx(-0.05)
    assert rows["log_loss"].better == "challenger"
    assert rows["pr_auc"].better == "equal"  # 2e-05 does not show at 4 decimals


def test_a_metric_without_a_direction_is_refused() -> None:
    with pytest.raises(KeyError):
        compare_metrics({"f1": 0.5}, {"f1": 0.4})


def _one_feature_decides(rows: int = 400, noise_features: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({f"noise_{i}": rng.normal(size=rows) for i in range(noise_features)})
    frame["signal"] = rng.uniform(size=rows)
    return frame


def test_the_feature_that_decides_the_label_ranks_first_and_ignored_ones_score_zero() -> None:
    frame = _one_feature_decides()
    labels = (frame["signal"] >= 0.5).to_numpy().astype(int)

    def predict(rows: pd.DataFrame) -> np.ndarray:
        return rows["signal"].to_numpy()

    ranked = permutation_importance(predict, frame, labels)

    assert ranked[0].feature == "signal"
    assert ranked[0].mean > 0.3  # AUC 1.0 falls to about 0.5 when shuffled
    assert [(r.feature, r.mean) for r in ranked[1:]] == [
        ("noise_0", 0.0),
        ("noise_1", 0.0),
        ("noise_2", 0.0),
    ]
    assert permutation_importance(predict, frame, labels) == ranked  # seeded


def test_importance_keeps_the_top_features_only() -> None:
    frame = _one_feature_decides(rows=60, noise_features=IMPORTANCE_TOP + 4)
    labels = (frame["signal"] >= 0.5).to_numpy().astype(int)

    ranked = permutation_importance(lambda rows: rows["signal"].to_numpy(), frame, labels)

    assert len(ranked) == IMPORTANCE_TOP
    assert ranked[0].feature == "signal"


def _model(label: str, probability: np.ndarray, kind: str, top: str) -> ScoredModel:
    importance = (
        FeatureImportance(feature=top, mean=0.2, std=0.01),
        FeatureImportance(feature="tenure", mean=0.05, std=0.02),
    )
    return ScoredModel(
        label, probability, classification_metrics(LABELS, probability), kind, importance
    )


CHALLENGER = _model("challenger", CHALLENGER_P, "sklearn-hgb", "monthly_charges")
CHAMPION = _model("champion v2", CHAMPION_P, "xgboost", "contract")
SHIFTS = (
    Shift(column="monthly_charges", method="wasserstein", score=1.7, threshold=1.0, gross=True),
    Shift(column="tenure", method="wasserstein", score=0.05, threshold=1.0, gross=False),
)
SUMMARY: dict[str, object] = {
    "decision": "reject",
    "reasons": ["roc_auc 0.7500 vs champion v2 0.8000: 0.0500 worse, more than ..."],
    "shifts": [s.model_dump() for s in SHIFTS],
}


def test_json_holds_comparison_kinds_confusion_and_importance(tmp_path: Path) -> None:
    paths = write_report(tmp_path, LABELS, CHALLENGER, CHAMPION, SUMMARY, SHIFTS)

    logged = json.loads(paths[0].read_text())
    assert logged["kinds"] == {"challenger": "sklearn-hgb", "champion v2": "xgboost"}
    rows = {row["metric"]: row for row in logged["comparison"]}
    assert (rows["roc_auc"]["challenger"], rows["roc_auc"]["champion"]) == (0.75, 0.4375)
    assert rows["roc_auc"]["difference"] == pytest.approx(0.3125)
    assert rows["roc_auc"]["better"] == "challenger"
    assert rows["brier"]["difference"] < 0 and rows["brier"]["better"] == "challenger"
    assert logged["serving_threshold"] == 0.5
    assert logged["confusion"]["challenger"]["true_positive"] == 3
    champion = logged["confusion"]["champion v2"]
    assert [champion[k] for k in ("true_positive", "false_positive", "false_negative")] == [1, 2, 3]
    assert champion == confusion_at(LABELS, CHAMPION_P).model_dump()
    assert [i["feature"] for i in logged["importance"]["champion v2"]] == ["contract", "tenure"]
    assert "permutation" in logged["importance_method"]
    assert [s["column"] for s in logged["shifts"] if s["gross"]] == ["monthly_charges"]
    assert logged["decision"] == "reject"  # the summary is kept


def test_html_tables_the_same_facts_and_embeds_every_png(tmp_path: Path) -> None:
    paths = write_report(tmp_path, LABELS, CHALLENGER, CHAMPION, SUMMARY, SHIFTS)

    names = [p.name for p in paths]
    assert names == [
        "metrics.json",
        "roc.png",
        "precision_recall.png",
        "calibration.png",
        "confusion_matrix.png",
        "feature_importance.png",
        "data_shift.png",
        "report.html",
    ]
    page = paths[-1].read_text()
    assert "<td>challenger</td><td>sklearn-hgb</td>" in page
    assert "<td>champion v2</td><td>xgboost</td>" in page
    assert "<td>roc_auc</td><td>higher is better</td><td>0.7500</td><td>0.4375</td>" in page
    assert "<td>+0.3125</td><td>challenger</td>" in page
    brier = CHALLENGER.metrics["brier"] - CHAMPION.metrics["brier"]
    assert "<td>brier</td><td>lower is better</td>" in page
    assert f"<td>{brier:+.4f}</td><td>challenger</td>" in page and f"{brier:+.4f}".startswith("-")
    assert "probability &gt;= 0.5" in page
    assert "<td>challenger</td><td>3</td><td>1</td><td>1</td><td>3</td>" in page
    assert "<td>1</td><td>monthly_charges</td><td>0.2000</td>" in page
    assert "<td>1</td><td>contract</td><td>0.2000</td>" in page
    assert "<td>monthly_charges</td><td>wasserstein</td>" in page and "GROSS" in page
    assert page.count("data:image/png;base64") == 6
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in paths if p.suffix == ".png")


def test_report_files_are_byte_stable(tmp_path: Path) -> None:
    first = write_report(tmp_path / "a", LABELS, CHALLENGER, CHAMPION, SUMMARY, SHIFTS)
    second = write_report(tmp_path / "b", LABELS, CHALLENGER, CHAMPION, SUMMARY, SHIFTS)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_without_a_champion_there_is_no_difference_and_no_data_comparison(
    tmp_path: Path,
) -> None:
    paths = write_report(tmp_path, LABELS, CHALLENGER, None, {"decision": "promote"})

    logged = json.loads(paths[0].read_text())
    assert logged["comparison"] == []
    assert list(logged["confusion"]) == ["challenger"]
    page = paths[-1].read_text()
    assert "challenger - champion" not in page
    assert "Not compared: there is no champion yet." in page
    assert "data_shift.png" not in [p.name for p in paths]

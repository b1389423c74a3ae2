"""Per-column drift scores from Evidently: verdicts, methods, thresholds, columns it cannot test.

Evidently costs ~16 s to import once per test session; the frames stay small.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from steps.core.errors import ConfigError
from steps.core.settings import DriftSettings
from steps.monitor.measure import ALL_MISSING, measure

NUMERIC = ["stable", "shifted"]
CATEGORICAL = ["plan"]


def frame(rows: int, seed: int, shift: float = 0.0, new_plan: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    plans = rng.choice(["basic", "plus", "pro"], rows, p=[0.5, 0.3, 0.2]).astype(object)
    plans[rng.random(rows) < new_plan] = "enterprise"
    return pd.DataFrame(
        {
            "stable": rng.normal(10, 2, rows),
            "shifted": rng.normal(10 + 2 * shift, 2, rows),
            "plan": plans,
            "prediction": rng.beta(2, 5, rows),
        }
    )


REFERENCE = frame(2_000, seed=1)


def by_column(current: pd.DataFrame, policy: DriftSettings | None = None):
    measured = measure(REFERENCE, current, NUMERIC, CATEGORICAL, policy or DriftSettings())
    return {score.column: score for score in measured.scores}, measured


def test_a_shifted_column_drifts_and_the_others_do_not() -> None:
    scores, _ = by_column(frame(3_000, seed=2, shift=0.5))
    assert [name for name, score in scores.items() if score.drifted] == ["shifted"]
    assert list(scores) == ["stable", "shifted", "plan", "prediction"]
    assert [scores[name].kind for name in scores] == [
        "numeric",
        "numeric",
        "categorical",
        "prediction",
    ]
    # Evidently's defaults above 1,000 reference rows: normed Wasserstein and Jensen-Shannon.
    assert scores["shifted"].method == "Wasserstein distance (normed)"
    assert scores["plan"].method == "Jensen-Shannon distance"
    assert scores["shifted"].threshold == 0.1
    assert scores["shifted"].score == pytest.approx(0.5, abs=0.06)
    assert scores["stable"].score < 0.06


def test_a_new_category_drifts_the_categorical_column() -> None:
    scores, _ = by_column(frame(3_000, seed=3, new_plan=0.15))
    assert scores["plan"].drifted is True
    assert not scores["shifted"].drifted


def test_configured_methods_and_thresholds_are_used() -> None:
    policy = DriftSettings(
        numeric_method="psi",
        categorical_method="TVD",
        numeric_threshold=0.5,
        column_thresholds={"prediction": 0.9},
    )
    scores, _ = by_column(frame(3_000, seed=4, shift=0.5), policy)
    assert (scores["shifted"].method, scores["shifted"].threshold) == ("psi", 0.5)
    assert scores["plan"].method == "TVD"
    assert (scores["prediction"].method, scores["prediction"].threshold) == ("psi", 0.9)
    assert scores["shifted"].drifted is False  # psi ~0.25 is under the raised 0.5


def test_a_p_value_method_drifts_below_its_threshold() -> None:
    scores, _ = by_column(frame(3_000, seed=5, shift=0.5), DriftSettings(numeric_method="ks"))
    assert scores["shifted"].method == "ks"
    assert scores["shifted"].score < 0.05
    assert scores["shifted"].drifted is True


def test_a_column_missing_on_one_side_is_drift_without_evidently() -> None:
    current = frame(1_000, seed=6)
    current["stable"] = np.nan
    current["plan"] = None
    scores, _ = by_column(current)
    for name in ("stable", "plan"):
        assert (scores[name].method, scores[name].score, scores[name].drifted) == (
            ALL_MISSING,
            1.0,
            True,
        )
    assert scores["shifted"].method == "Wasserstein distance (normed)"


def test_a_column_missing_on_both_sides_is_not_drift() -> None:
    reference = REFERENCE.assign(stable=np.nan)
    current = frame(1_000, seed=7).assign(stable=np.nan)
    measured = measure(reference, current, NUMERIC, CATEGORICAL, DriftSettings())
    stable = next(score for score in measured.scores if score.column == "stable")
    assert (stable.method, stable.drifted) == (ALL_MISSING, False)


def test_a_method_evidently_rejects_for_the_data_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"categorical_method='fisher_exact'.*binary data"):
        by_column(frame(1_000, seed=8), DriftSettings(categorical_method="fisher_exact"))


def test_the_html_report_counts_features_only_like_the_policy(tmp_path: Path) -> None:
    scores, measured = by_column(frame(1_500, seed=9, shift=0.5).assign(prediction=0.9))
    assert scores["prediction"].drifted is True
    path = measured.save_html(tmp_path / "report.html")
    assert path == tmp_path / "report.html"
    text = path.read_text(encoding="utf-8")
    assert text.lstrip().startswith("<!DOCTYPE html>")
    # One of three features drifted; the drifted prediction is reported on its own.
    assert "Drift is detected for 33.333% of columns (1 out of 3)" in text
    assert "shifted" in text
    assert "prediction" in text


def test_nothing_testable_means_no_report(tmp_path: Path) -> None:
    current = frame(1_000, seed=10)
    for name in current.columns:
        current[name] = None
    measured = measure(REFERENCE, current, NUMERIC, CATEGORICAL, DriftSettings())
    assert measured.snapshot is None
    assert [score.drifted for score in measured.scores] == [True] * 4
    assert measured.save_html(tmp_path / "report.html") is None
    assert not (tmp_path / "report.html").exists()

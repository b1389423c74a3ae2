"""The drift decision is a pure function: exhaustive cases without Evidently, MLflow or files."""

from __future__ import annotations

import pytest

from serving.inference_log import PREDICTION
from steps.core.settings import DriftSettings
from steps.monitor.policy import (
    ColumnKind,
    ColumnScore,
    DriftDecision,
    decide,
    insufficient_data,
)

POLICY = DriftSettings(drift_share=0.3)


def score(
    column: str, drifted: bool, kind: ColumnKind = "numeric", value: float | None = None
) -> ColumnScore:
    return ColumnScore(
        column=column,
        kind=kind,
        method="Wasserstein distance (normed)",
        threshold=0.1,
        score=value if value is not None else (0.31 if drifted else 0.02),
        drifted=drifted,
    )


def features(drifted: int, total: int) -> list[ColumnScore]:
    return [score(f"f{i:02d}", i < drifted) for i in range(total)]


def test_nothing_drifted_is_stable_with_a_zero_share() -> None:
    decision = decide(features(0, 10), POLICY)
    assert decision.status == "stable"
    assert decision.drifted is False
    assert decision.drifted_share == 0.0
    assert decision.drifted_columns == ()
    assert decision.reasons == ("0 of 10 features drifted (share 0.000 < threshold 0.300)",)


@pytest.mark.parametrize(
    ("drifted", "total", "threshold", "expected"),
    [
        (3, 10, 0.3, True),  # exactly at the threshold counts as drift
        (2, 10, 0.3, False),  # just below
        (3, 20, 0.3, False),  # the bench's 3 of 20 is 0.15
        (3, 20, 0.15, True),
        (1, 1, 1.0, True),  # a threshold of 1.0 needs every feature
        (19, 20, 1.0, False),
        (6, 20, 0.3, True),  # 6/20 == 0.3 in floating point too
        (1, 12, 0.05, True),
    ],
)
def test_share_rule(drifted: int, total: int, threshold: float, expected: bool) -> None:
    decision = decide(features(drifted, total), DriftSettings(drift_share=threshold))
    assert decision.drifted is expected
    assert decision.status == ("drifted" if expected else "stable")
    assert decision.drifted_share == pytest.approx(drifted / total)


def test_share_reason_names_the_drifted_features_with_scores() -> None:
    decision = decide(features(3, 10), POLICY)
    assert decision.reasons[0] == (
        "3 of 10 features drifted (share 0.300 >= threshold 0.300): "
        "f00 (Wasserstein distance (normed) 0.31, threshold 0.1), "
        "f01 (Wasserstein distance (normed) 0.31, threshold 0.1), "
        "f02 (Wasserstein distance (normed) 0.31, threshold 0.1)"
    )
    assert decision.drifted_columns == ("f00", "f01", "f02")


def test_a_drifted_critical_feature_is_drift_below_the_share() -> None:
    policy = DriftSettings(drift_share=0.5, critical_features=("f00",))
    decision = decide(features(1, 10), policy)
    assert decision.drifted is True
    assert decision.drifted_share == pytest.approx(0.1)
    assert decision.reasons[1] == (
        "critical drifted: f00 (Wasserstein distance (normed) 0.31, threshold 0.1)"
    )


def test_a_stable_critical_feature_changes_nothing() -> None:
    policy = DriftSettings(drift_share=0.5, critical_features=("f05",))
    decision = decide(features(1, 10), policy)
    assert decision.drifted is False
    assert len(decision.reasons) == 1


def test_prediction_never_counts_towards_the_share() -> None:
    scores = [*features(0, 4), score(PREDICTION, True, kind="prediction", value=0.9)]
    decision = decide(scores, DriftSettings(drift_share=0.2))
    assert decision.drifted is False
    assert decision.drifted_share == 0.0
    assert decision.prediction_drifted is True
    assert decision.drifted_columns == (PREDICTION,)
    assert decision.reasons[-1] == (
        "prediction drifted: prediction (Wasserstein distance (normed) 0.9, threshold 0.1)"
    )


def test_prediction_listed_as_critical_decides_alone() -> None:
    scores = [*features(0, 4), score(PREDICTION, True, kind="prediction")]
    decision = decide(scores, DriftSettings(critical_features=(PREDICTION,)))
    assert decision.drifted is True
    assert any(reason.startswith("critical drifted: prediction") for reason in decision.reasons)


def test_stable_prediction_is_reported_as_stable() -> None:
    scores = [*features(3, 4), score(PREDICTION, False, kind="prediction")]
    decision = decide(scores, POLICY)
    assert decision.drifted is True
    assert decision.prediction_drifted is False
    assert decision.reasons[-1].startswith("prediction stable: prediction (")
    assert PREDICTION not in decision.drifted_columns


def test_without_a_prediction_score_its_verdict_is_unknown() -> None:
    assert decide(features(1, 4), POLICY).prediction_drifted is None


def test_drifted_columns_keep_the_given_order() -> None:
    scores = [score("b", True), score("a", False), score("c", True, kind="categorical")]
    assert decide(scores, POLICY).drifted_columns == ("b", "c")


def test_categorical_and_numeric_features_count_alike() -> None:
    scores = [score("n", False), score("c", True, kind="categorical")]
    decision = decide(scores, DriftSettings(drift_share=0.5))
    assert decision.drifted is True
    assert decision.drifted_share == 0.5


def test_one_line_reason_joins_every_reason() -> None:
    scores = [*features(1, 2), score(PREDICTION, False, kind="prediction")]
    decision = decide(scores, DriftSettings(drift_share=0.5, critical_features=("f00",)))
    assert decision.reason == "; ".join(decision.reasons)
    assert len(decision.reasons) == 3
    assert "\n" not in decision.reason


def test_no_feature_scores_is_an_error() -> None:
    with pytest.raises(ValueError, match="no feature scores"):
        decide([score(PREDICTION, True, kind="prediction")], POLICY)


def test_a_column_scored_twice_is_an_error() -> None:
    with pytest.raises(ValueError, match="more than once: a"):
        decide([score("a", True), score("a", False)], POLICY)


def test_a_critical_feature_without_a_score_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"critical feature\(s\) ghost not among"):
        decide(features(0, 2), DriftSettings(critical_features=("ghost",)))


def test_insufficient_data_is_not_drift_and_says_why() -> None:
    decision = insufficient_data(120, 500, excluded_rows=30, where="since x, 2 file(s)")
    assert decision == DriftDecision(
        status="insufficient_data",
        drifted=False,
        reasons=(
            "insufficient data: 120 rows in the window, fewer than the minimum 500; "
            "30 rows of other model versions excluded (since x, 2 file(s))",
        ),
        drifted_share=0.0,
        drifted_columns=(),
    )


def test_insufficient_data_without_exclusions_says_only_the_counts() -> None:
    assert insufficient_data(0, 1).reason == (
        "insufficient data: 0 rows in the window, fewer than the minimum 1"
    )


def test_insufficient_data_refuses_a_testable_window() -> None:
    with pytest.raises(ValueError, match="500 rows is enough data"):
        insufficient_data(500, 500)


def test_the_policy_prediction_column_is_the_one_training_logs() -> None:
    assert PREDICTION == PREDICTION

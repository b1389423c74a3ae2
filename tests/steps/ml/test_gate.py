"""The evaluation gate is a pure function: exhaustive cases without MLflow."""

from __future__ import annotations

import pytest

from steps.core.settings import GateSettings
from steps.ml.gate import Overlap, Shift, decide

POLICY = GateSettings(metric="roc_auc", min_value=0.70, max_regression=0.01)


def test_first_model_above_minimum_is_promoted_with_both_reasons() -> None:
    verdict = decide({"roc_auc": 0.75}, None, POLICY)
    assert verdict.decision == "promote"
    assert verdict.passed_absolute is True
    assert verdict.passed_relative is None
    assert "0.7500 >= minimum 0.7000" in verdict.reasons[0]
    assert "no champion" in verdict.reasons[1]


def test_first_model_below_minimum_is_rejected() -> None:
    verdict = decide({"roc_auc": 0.69}, None, POLICY)
    assert verdict.decision == "reject"
    assert verdict.passed_absolute is False
    assert "0.6900 < minimum 0.7000" in verdict.reasons[0]


@pytest.mark.parametrize(
    ("challenger", "champion", "expected"),
    [
        (0.80, 0.80, "promote"),  # equal
        (0.85, 0.80, "promote"),  # better
        (0.795, 0.80, "promote"),  # small regression within 0.01
        (0.789, 0.80, "reject"),  # regression 0.011 beyond 0.01
        (0.60, 0.55, "reject"),  # better than champion but under the absolute minimum
    ],
)
def test_relative_gate(challenger: float, champion: float, expected: str) -> None:
    verdict = decide({"roc_auc": challenger}, {"roc_auc": champion}, POLICY)
    assert verdict.decision == expected


def test_a_better_challenger_reads_better_with_the_allowed_drop_aside() -> None:
    verdict = decide({"roc_auc": 0.8436}, {"roc_auc": 0.8263}, POLICY)
    assert verdict.passed_relative is True
    assert verdict.reasons[1] == (
        "roc_auc 0.8436 vs champion 0.8263: 0.0173 better (a drop of up to 0.0100 is allowed)"
    )


def test_a_slightly_worse_challenger_reads_worse_within_the_allowed_drop() -> None:
    verdict = decide({"roc_auc": 0.8213}, {"roc_auc": 0.8263}, POLICY)
    assert verdict.passed_relative is True
    assert verdict.reasons[1] == (
        "roc_auc 0.8213 vs champion 0.8263: 0.0050 worse, within the allowed drop of 0.0100"
    )


def test_a_much_worse_challenger_reads_more_than_the_allowed_drop() -> None:
    verdict = decide({"roc_auc": 0.8113}, {"roc_auc": 0.8263}, POLICY, "champion v3")
    assert verdict.passed_relative is False
    assert verdict.reasons[1] == (
        "roc_auc 0.8113 vs champion v3 0.8263: 0.0150 worse, more than the allowed drop of 0.0100"
    )


def test_a_tiny_drop_against_no_allowance_shows_its_size_not_zero() -> None:
    policy = GateSettings(metric="roc_auc", min_value=0.5, max_regression=0.0)
    verdict = decide({"roc_auc": 0.79999}, {"roc_auc": 0.8}, policy)
    assert verdict.decision == "reject"
    assert "1.0e-05 worse, more than the allowed drop of 0.0000" in verdict.reasons[1]


def test_gate_uses_the_configured_metric_only() -> None:
    policy = GateSettings(metric="pr_auc", min_value=0.5, max_regression=0.0)
    verdict = decide({"roc_auc": 0.1, "pr_auc": 0.6}, {"roc_auc": 0.99, "pr_auc": 0.6}, policy)
    assert verdict.decision == "promote"


def test_zero_tolerance_rejects_any_regression() -> None:
    policy = GateSettings(metric="roc_auc", min_value=0.5, max_regression=0.0)
    assert decide({"roc_auc": 0.7999}, {"roc_auc": 0.8}, policy).decision == "reject"


def test_missing_metric_raises_key_error() -> None:
    with pytest.raises(KeyError):
        decide({"pr_auc": 0.9}, None, POLICY)


def test_equal_metrics_read_as_no_change() -> None:
    verdict = decide({"roc_auc": 0.8}, {"roc_auc": 0.8}, POLICY)
    assert verdict.reasons[1].endswith(": no change (a drop of up to 0.0100 is allowed)")


def test_a_champion_that_saw_held_out_rows_makes_the_comparison_refused() -> None:
    overlaps = [
        Overlap(label="challenger", seen_rows=0, holdout_rows=800),
        Overlap(label="champion v2", seen_rows=120, holdout_rows=800),
    ]
    verdict = decide({"roc_auc": 0.95}, {"roc_auc": 0.80}, POLICY, "champion v2", overlaps)
    assert verdict.decision == "reject"
    assert verdict.comparable is False
    assert verdict.passed_relative is None  # no comparison was made
    assert any(
        "champion v2 trained on 120 of the 800" in r and "refused" in r for r in verdict.reasons
    )
    assert any("challenger trained on 0 of the 800" in r for r in verdict.reasons)


def test_unknown_overlap_is_reported_but_does_not_refuse() -> None:
    overlaps = [Overlap(label="champion v1", seen_rows=None, holdout_rows=50)]
    verdict = decide({"roc_auc": 0.81}, {"roc_auc": 0.80}, POLICY, "champion v1", overlaps)
    assert verdict.promote and verdict.comparable
    assert any("overlap with the 50 held-out rows is unknown" in r for r in verdict.reasons)


def _shift(column: str, score: float, gross: bool) -> Shift:
    return Shift(column=column, method="wasserstein", score=score, threshold=1.0, gross=gross)


def test_a_gross_shift_rejects_when_the_policy_blocks() -> None:
    shifts = [_shift("balance", 1.7, True), _shift("income", 0.05, False)]
    verdict = decide({"roc_auc": 0.95}, {"roc_auc": 0.5}, POLICY, "champion v1", shifts=shifts)
    assert verdict.decision == "reject"
    assert verdict.gross_shift == ("balance",)
    assert any("balance (wasserstein 1.7 >= 1)" in r and "rejected" in r for r in verdict.reasons)
    assert not any("income" in r for r in verdict.reasons)


def test_a_gross_shift_is_reported_not_blocking_when_the_policy_allows() -> None:
    lenient = POLICY.model_copy(update={"block_on_gross_shift": False})
    verdict = decide(
        {"roc_auc": 0.95}, {"roc_auc": 0.5}, lenient, shifts=[_shift("balance", 1.7, True)]
    )
    assert verdict.promote
    assert any("not blocking" in r for r in verdict.reasons)


def test_small_shifts_pass_with_a_reason() -> None:
    verdict = decide({"roc_auc": 0.8}, {"roc_auc": 0.8}, POLICY, shifts=[_shift("x", 0.2, False)])
    assert verdict.promote
    assert verdict.reasons[-1] == "no feature changed grossly against champion's training data"

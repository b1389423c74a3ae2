"""The evaluation gate is a pure function: exhaustive cases without MLflow."""

from __future__ import annotations

import pytest

from steps.gate import decide
from steps.settings import GateSettings

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


def test_regression_reason_names_champion_and_amount() -> None:
    verdict = decide({"roc_auc": 0.75}, {"roc_auc": 0.80}, POLICY, champion_label="champion v3")
    assert verdict.passed_relative is False
    assert "champion v3 0.8000" in verdict.reasons[1]
    assert "regression 0.0500" in verdict.reasons[1]
    assert "exceeds the allowed regression 0.0100" in verdict.reasons[1]


def test_gain_is_reported_as_gain() -> None:
    verdict = decide({"roc_auc": 0.82}, {"roc_auc": 0.80}, POLICY)
    assert "gain 0.0200" in verdict.reasons[1]


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
    assert "no change" in verdict.reasons[1]

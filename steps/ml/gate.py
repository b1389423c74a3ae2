"""The evaluation gate: a pure decision from measured metrics and a policy.

No I/O here: :func:`decide` takes numbers and returns promote/reject with every reason, so the
policy can be tested exhaustively without MLflow. Besides the metric checks (an absolute minimum,
and at most ``max_regression`` below the champion) it refuses an unfair comparison: a model
scored on held-out rows it was trained on (:class:`Overlap`), and, when
``block_on_gross_shift`` is on, a challenger whose training data changed grossly against the
champion's (:class:`Shift`: a unit change, a recoded category, a missing column).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from steps.core.settings import GateSettings

Decision = Literal["promote", "reject"]
NO_CHANGE_BELOW = 5e-5
"""Half the last of the 4 decimals a reason shows: a smaller difference reads as no change."""


class Overlap(BaseModel):
    """How many of the held-out rows one model saw in training (expected: none)."""

    model_config = ConfigDict(frozen=True)

    label: str
    seen_rows: int | None
    """None when the model's run logged no training keys (trained before they were logged)."""
    holdout_rows: int


class Shift(BaseModel):
    """One feature of the challenger's training data against the champion's reference sample."""

    model_config = ConfigDict(frozen=True)

    column: str
    method: str
    score: float
    threshold: float
    gross: bool


class GateDecision(BaseModel):
    """The gate's verdict and why."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    passed_absolute: bool
    passed_relative: bool | None
    reasons: tuple[str, ...]
    comparable: bool = True
    """False when a model was scored on rows it had trained on: no comparison was made."""
    gross_shift: tuple[str, ...] = ()

    @property
    def promote(self) -> bool:
        """True when the challenger may go on to registration."""
        return self.decision == "promote"


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    policy: GateSettings,
    champion_label: str = "champion",
    overlaps: Sequence[Overlap] = (),
    shifts: Sequence[Shift] = (),
) -> GateDecision:
    """Decide whether the challenger passes the gate.

    The challenger must reach ``policy.min_value`` on ``policy.metric`` and, when a champion
    exists, must not fall more than ``policy.max_regression`` below it (higher is better for
    every gate metric). A model that saw held-out rows in training makes the comparison unfair:
    it is refused (reject). A gross shift of a feature rejects when
    ``policy.block_on_gross_shift`` is on, and is reported either way.

    Returns:
        The decision with one reason per check, passed or failed.

    Raises:
        KeyError: when the gate metric is missing from a metrics dict.
    """
    metric = policy.metric
    value = challenger[metric]
    passed_absolute = value >= policy.min_value
    reasons = [
        f"{metric} {value:.4f} {'>=' if passed_absolute else '<'} minimum {policy.min_value:.4f}"
    ]
    comparable = True
    for overlap in overlaps:
        reasons.append(_overlap_reason(overlap))
        comparable = comparable and not overlap.seen_rows
    passed_relative: bool | None = None
    if champion is None:
        reasons.append("no champion yet: only the absolute minimum applies")
    elif comparable:
        passed_relative, reason = _relative(value, champion[metric], policy, champion_label)
        reasons.append(reason)
    gross = tuple(shift.column for shift in shifts if shift.gross)
    if gross:
        reasons.append(_shift_reason([s for s in shifts if s.gross], policy, champion_label))
    elif shifts:
        reasons.append(f"no feature changed grossly against {champion_label}'s training data")
    blocked = bool(gross) and policy.block_on_gross_shift
    promote = passed_absolute and comparable and passed_relative is not False and not blocked
    return GateDecision(
        decision="promote" if promote else "reject",
        passed_absolute=passed_absolute,
        passed_relative=passed_relative,
        reasons=tuple(reasons),
        comparable=comparable,
        gross_shift=gross,
    )


def _relative(
    value: float, baseline: float, policy: GateSettings, champion_label: str
) -> tuple[bool, str]:
    drop = baseline - value
    allowed = policy.max_regression
    passed = drop <= allowed
    compared = f"{policy.metric} {value:.4f} vs {champion_label} {baseline:.4f}: "
    if not passed:
        # Enough digits that a tiny drop against a zero allowance does not read "0.0000 worse".
        amount = f"{drop:.4f}" if drop >= NO_CHANGE_BELOW else f"{drop:.1e}"
        return passed, f"{compared}{amount} worse, more than the allowed drop of {allowed:.4f}"
    if drop >= NO_CHANGE_BELOW:
        return passed, f"{compared}{drop:.4f} worse, within the allowed drop of {allowed:.4f}"
    change = "no change" if drop > -NO_CHANGE_BELOW else f"{-drop:.4f} better"
    return passed, f"{compared}{change} (a drop of up to {allowed:.4f} is allowed)"


def _overlap_reason(overlap: Overlap) -> str:
    if overlap.seen_rows is None:
        return (
            f"{overlap.label} logged no training row keys: its overlap with the "
            f"{overlap.holdout_rows:,} held-out rows is unknown"
        )
    if overlap.seen_rows == 0:
        return f"{overlap.label} trained on 0 of the {overlap.holdout_rows:,} held-out rows"
    return (
        f"{overlap.label} trained on {overlap.seen_rows:,} of the {overlap.holdout_rows:,} "
        "held-out rows: comparison refused (its score would be inflated); hold rows out by key "
        "or time (LOOPLINE_DATA__HOLDOUT) and make sure the data has a stable row key"
    )


def _shift_reason(gross: list[Shift], policy: GateSettings, champion_label: str) -> str:
    columns = ", ".join(
        f"{s.column} ({s.method} {s.score:.3g} >= {s.threshold:.3g})" for s in gross
    )
    effect = (
        "rejected (LOOPLINE_GATE__BLOCK_ON_GROSS_SHIFT=true)"
        if policy.block_on_gross_shift
        else "not blocking (LOOPLINE_GATE__BLOCK_ON_GROSS_SHIFT=false)"
    )
    return (
        f"gross change against {champion_label}'s training data, a unit or schema change?: "
        f"{columns}; {effect}"
    )

"""The evaluation gate: a pure decision from measured metrics and a policy.

No I/O here: :func:`decide` takes numbers and returns promote/reject with every reason, so the
policy can be tested exhaustively without MLflow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from steps.settings import GateSettings

Decision = Literal["promote", "reject"]


class GateDecision(BaseModel):
    """The gate's verdict and why."""

    model_config = ConfigDict(frozen=True)

    decision: Decision
    passed_absolute: bool
    passed_relative: bool | None
    reasons: tuple[str, ...]

    @property
    def promote(self) -> bool:
        """True when the challenger may go on to registration."""
        return self.decision == "promote"


def decide(
    challenger: dict[str, float],
    champion: dict[str, float] | None,
    policy: GateSettings,
    champion_label: str = "champion",
) -> GateDecision:
    """Decide whether the challenger passes the gate.

    The challenger must reach ``policy.min_value`` on ``policy.metric`` and, when a champion
    exists, must not fall more than ``policy.max_regression`` below it (higher is better for
    every gate metric).

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
    passed_relative: bool | None = None
    if champion is not None:
        baseline = champion[metric]
        regression = baseline - value
        passed_relative = regression <= policy.max_regression
        if abs(regression) < 5e-5:
            change = "no change"
        elif regression > 0:
            change = f"regression {regression:.4f}"
        else:
            change = f"gain {-regression:.4f}"
        limit = "within" if passed_relative else "exceeds"
        reasons.append(
            f"{metric} {value:.4f} vs {champion_label} {baseline:.4f}: {change}, "
            f"{limit} the allowed regression {policy.max_regression:.4f}"
        )
    else:
        reasons.append("no champion yet: only the absolute minimum applies")
    promote = passed_absolute and passed_relative is not False
    return GateDecision(
        decision="promote" if promote else "reject",
        passed_absolute=passed_absolute,
        passed_relative=passed_relative,
        reasons=tuple(reasons),
    )

"""The drift decision: a pure function of per-column drift verdicts and a policy.

No I/O and no Evidently here. :func:`decide` takes the per-column scores that
:mod:`steps.monitor.measure` measured (each with Evidently's own drifted/not verdict for its
method and threshold) and applies the monitor's policy:

* **drifted** when the share of drifted *features* reaches ``policy.drift_share``, or when any
  column named in ``policy.critical_features`` drifted (``prediction`` may be named there too);
* the ``prediction`` column (the model's P(positive)) never counts towards the share: prediction
  drift is reported as a reason of its own, and is decisive only when listed as critical.

:func:`insufficient_data` is the decision when the window holds too few rows to test at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict

from steps.core.settings import DriftSettings

ColumnKind = Literal["numeric", "categorical", "prediction"]
Status = Literal["drifted", "stable", "insufficient_data"]


class ColumnScore(BaseModel):
    """One column's drift measurement: the method, its threshold, the score and the verdict."""

    model_config = ConfigDict(frozen=True)

    column: str
    kind: ColumnKind
    method: str
    threshold: float
    score: float
    drifted: bool

    def describe(self) -> str:
        """``column (method score, threshold t)``, e.g. for a reason line."""
        return f"{self.column} ({self.method} {self.score:.4g}, threshold {self.threshold:.4g})"


class DriftDecision(BaseModel):
    """The monitor's verdict and why."""

    model_config = ConfigDict(frozen=True)

    status: Status
    drifted: bool
    reasons: tuple[str, ...]
    drifted_share: float
    drifted_columns: tuple[str, ...]
    prediction_drifted: bool | None = None

    @property
    def reason(self) -> str:
        """The reasons on one line (the ``reason`` output parameter)."""
        return "; ".join(self.reasons)


def decide(column_scores: Sequence[ColumnScore], policy: DriftSettings) -> DriftDecision:
    """Apply the drift policy to the measured columns.

    Args:
        column_scores: one score per feature, plus optionally the ``prediction`` column.
        policy: ``drift_share`` (share of drifted features that means drift) and
            ``critical_features`` (columns whose drift alone means drift).

    Returns:
        The decision: ``drifted_share`` over features only, ``drifted_columns`` in the order
        given (prediction included when it drifted), and one reason per rule that applied.

    Raises:
        ValueError: when there is no feature score, a column is scored twice, or a critical
            column has no score.
    """
    names = [score.column for score in column_scores]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ValueError(f"columns scored more than once: {', '.join(repeated)}")
    features = [score for score in column_scores if score.kind != "prediction"]
    if not features:
        raise ValueError("no feature scores: the drift share needs at least one feature")
    unknown = [name for name in policy.critical_features if name not in names]
    if unknown:
        raise ValueError(
            f"critical feature(s) {', '.join(unknown)} not among the scored columns: "
            f"{', '.join(names)}"
        )
    drifted_features = [score for score in features if score.drifted]
    share = len(drifted_features) / len(features)
    by_share = share >= policy.drift_share
    reasons = [_share_reason(drifted_features, len(features), share, policy.drift_share)]
    critical = [
        score
        for score in column_scores
        if score.drifted and score.column in policy.critical_features
    ]
    if critical:
        reasons.append("critical drifted: " + ", ".join(score.describe() for score in critical))
    prediction = next((score for score in column_scores if score.kind == "prediction"), None)
    if prediction is not None:
        state = "drifted" if prediction.drifted else "stable"
        reasons.append(f"prediction {state}: {prediction.describe()}")
    drifted = by_share or bool(critical)
    return DriftDecision(
        status="drifted" if drifted else "stable",
        drifted=drifted,
        reasons=tuple(reasons),
        drifted_share=share,
        drifted_columns=tuple(score.column for score in column_scores if score.drifted),
        prediction_drifted=None if prediction is None else prediction.drifted,
    )


def insufficient_data(
    rows: int, min_rows: int, excluded_rows: int = 0, where: str = ""
) -> DriftDecision:
    """The decision for a window too small to test: not drifted, with the counts as the reason.

    Args:
        rows: rows of the champion's version in the window.
        min_rows: the fewest rows a test needs (``DriftSettings.min_rows``).
        excluded_rows: rows of other model versions left out of the window.
        where: the window and log in words, appended to the reason.

    Returns:
        A ``insufficient_data`` decision (``drifted`` false).

    Raises:
        ValueError: when ``rows`` is not below ``min_rows`` (then the window is testable).
    """
    if rows >= min_rows:
        raise ValueError(f"{rows} rows is enough data (minimum {min_rows}); run the test")
    reason = f"insufficient data: {rows} rows in the window, fewer than the minimum {min_rows}"
    if excluded_rows:
        reason += f"; {excluded_rows} rows of other model versions excluded"
    if where:
        reason += f" ({where})"
    return DriftDecision(
        status="insufficient_data",
        drifted=False,
        reasons=(reason,),
        drifted_share=0.0,
        drifted_columns=(),
    )


def _share_reason(drifted: list[ColumnScore], total: int, share: float, threshold: float) -> str:
    comparison = ">=" if share >= threshold else "<"
    head = (
        f"{len(drifted)} of {total} features drifted "
        f"(share {share:.3f} {comparison} threshold {threshold:.3f})"
    )
    if not drifted:
        return head
    return f"{head}: " + ", ".join(score.describe() for score in drifted)

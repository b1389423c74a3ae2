"""The analysis record of one canary promotion: every check, weight change and the outcome.

The promotion (:mod:`steps.canary.promotion`) appends to it as it goes; :mod:`steps.canary.report`
writes it as ``analysis.json`` (for machines) and ``analysis.html`` with one PNG per metric (for
people), logged to MLflow with the model version.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from steps.canary.judge import Verdict

Action = Literal["advance", "hold", "retry", "rollback", "promote"]
"""What the promotion did after a check: move to the next step, stay at this one, query again
after a backoff (an error), roll back, or promote fully (the check at 100 % passed)."""
Outcome = Literal["promoted", "rolled_back"]
METRICS = ("request_rate", "error_ratio", "p99_ms", "mean_probability")
"""The per-track metrics the record's series and summaries hold, in plot order."""


class TrackSummary(BaseModel):
    """One track over one analysis window, as the check saw it."""

    model_config = ConfigDict(frozen=True)

    version: str
    requests: float
    request_rate: float
    error_ratio: float | None
    p99_ms: float | None
    mean_probability: float | None


class CheckRecord(BaseModel):
    """One analysis: when, at which weight, what was measured, the verdict and what followed."""

    model_config = ConfigDict(frozen=True)

    at: float
    """Unix time (seconds) the check was made."""
    weight: int
    """The canary's traffic share (percent) during the window."""
    window_s: float
    tracks: dict[str, TrackSummary]
    """``stable`` and ``canary`` (a track with no traffic in the window is absent)."""
    verdict: Verdict
    action: Action
    analysis_s: float
    """How long the queries and the judgement took."""


class WeightChange(BaseModel):
    """The route's split changed at ``at`` (unix seconds) to ``canary`` percent."""

    model_config = ConfigDict(frozen=True)

    at: float
    canary: int


Point = tuple[float, float]
"""(unix seconds, value)."""


class AnalysisRecord(BaseModel):
    """Everything one promotion run measured and decided."""

    model_name: str
    version: str
    stable_version: str | None
    platform: str
    steps: tuple[int, ...]
    interval_s: float
    policy: dict[str, object]
    started_at: float
    finished_at: float | None = None
    outcome: Outcome | None = None
    final_weight: int | None = None
    reasons: list[str] = []
    checks: list[CheckRecord] = []
    weight_changes: list[WeightChange] = []
    series: dict[str, dict[str, list[Point]]] = {}
    """metric (:data:`METRICS`) -> track -> points over the promotion, from Prometheus' range
    queries when it answered at the end; empty otherwise (the report then plots the checks)."""

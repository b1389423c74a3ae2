"""The promotion's sequencing, with verdicts scripted per check and an in-memory platform.

The platform here keeps the same state a real one reports (releases per track, weights) and
records every call, so each test asserts the exact order of route changes and rollouts. The
judge itself is tested in test_judge.py; the real stack in test_promote_stack.py.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from steps.canary.analysis import AnalysisError
from steps.canary.judge import Histogram, Measurement, TrackWindow, Verdict
from steps.canary.promotion import Clock, Promotion, Tally, next_action, remaining_steps
from steps.canary.record import AnalysisRecord
from steps.core.errors import DeployConflict
from steps.core.settings import CanarySettings
from steps.platform.base import Release, Served, Track, Weights

STEPS = (10, 30, 50, 100)


class MemoryPlatform:
    """Deployer and router over a dict: what a real platform reports, and a call log."""

    def __init__(self, stable: str | None, canary: str | None, canary_weight: int) -> None:
        self.tracks: dict[str, Release | None] = {
            "stable": _release(stable) if stable else None,
            "canary": _release(canary) if canary else None,
        }
        self.split = Weights.canary_at(canary_weight)
        self.calls: list[str] = []

    def served(self) -> Served:
        return Served(self.tracks["stable"], self.tracks["canary"], self.split)

    def roll_out(self, track: Track, release: Release, timeout_s: float) -> None:
        self.calls.append(f"roll_out {track} v{release.version}")
        self.tracks[track] = release

    def track_url(self, track: Track) -> str:
        return f"http://{track}"

    def retire(self, track: Track) -> None:
        self.calls.append(f"retire {track}")
        self.tracks[track] = None

    def weights(self) -> Weights:
        return self.split

    def set_weights(self, weights: Weights) -> None:
        self.calls.append(f"weights {weights.canary}")
        self.split = weights

    def endpoint(self) -> str:
        return "http://route"


def _release(version: str) -> Release:
    return Release(model_name="churn", version=version, artifact=f"file:///bentos/{version}")


def _verdict(outcome: str) -> Verdict:
    return Verdict.model_validate(
        {"outcome": outcome, "checks": (), "reasons": (f"scripted {outcome}",)}
    )


def _measurement(window_s: float) -> Measurement:
    empty = TrackWindow("2", 0.0, 0.0, Histogram(), Histogram())
    return Measurement(window_s=window_s, canary=empty, stable=None)


def _promotion(
    platform: MemoryPlatform,
    outcomes: list[str],
    policy: CanarySettings | None = None,
    version: str = "2",
) -> tuple[Promotion, list[float]]:
    """A promotion whose checks answer ``outcomes`` in order ("error" raises AnalysisError)."""
    script: Iterator[str] = iter(outcomes)
    slept: list[float] = []
    pending: list[str] = []

    def analyze(window_s: float) -> Measurement:
        outcome = next(script)
        if outcome == "error":
            raise AnalysisError("Prometheus at http://prometheus not reachable: refused")
        pending.append(outcome)
        return _measurement(window_s)

    def judge(measurement: Measurement) -> Verdict:
        return _verdict(pending.pop())

    now = [1000.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    record = AnalysisRecord(
        model_name="churn", version=version, stable_version="1", platform="local",
        steps=STEPS, interval_s=10.0, policy={}, started_at=now[0],
    )  # fmt: skip
    promotion = Promotion(
        platform=platform, version=version, policy=policy or CanarySettings(), steps=STEPS,
        interval_s=10.0, analyze=analyze, judge=judge, record=record,
        clock=Clock(now=lambda: now[0], sleep=sleep),
    )  # fmt: skip
    return promotion, slept


def test_passing_checks_walk_every_step_then_stable_takes_the_canary() -> None:
    # Given v2 as the canary at 10 % beside stable v1
    platform = MemoryPlatform("1", "2", 10)
    promotion, slept = _promotion(platform, ["pass"] * 4)
    # When every check passes
    record = promotion.run()
    # Then the weights go 30, 50, 100; stable rolls out v2 with no traffic; the route returns
    assert platform.calls == [
        "weights 30", "weights 50", "weights 100", "roll_out stable v2", "weights 0",
        "retire canary",
    ]  # fmt: skip
    assert (record.outcome, record.final_weight) == ("promoted", 100)
    assert [c.weight for c in record.checks] == [10, 30, 50, 100]
    assert [c.action for c in record.checks] == ["advance", "advance", "advance", "promote"]
    assert slept == [10.0] * 4
    served = platform.served()
    assert served.stable is not None and served.stable.version == "2" and served.canary is None


def test_a_failed_check_rolls_back_at_once_and_never_touches_stable() -> None:
    platform = MemoryPlatform("1", "2", 10)
    promotion, _ = _promotion(platform, ["pass", "fail"])
    record = promotion.run()
    assert platform.calls == ["weights 30", "weights 0", "retire canary"]
    assert (record.outcome, record.final_weight) == ("rolled_back", 30)
    assert record.reasons == ["scripted fail"]
    stable = platform.served().stable
    assert stable is not None and stable.version == "1"


def test_failure_limit_holds_the_step_before_rolling_back() -> None:
    platform = MemoryPlatform("1", "2", 10)
    policy = CanarySettings(failure_limit=1)
    promotion, _ = _promotion(platform, ["fail", "pass", "fail"], policy)
    record = promotion.run()
    assert [c.action for c in record.checks] == ["hold", "advance", "rollback"]
    assert platform.calls == ["weights 30", "weights 0", "retire canary"]


def test_inconclusive_holds_up_to_max_inconclusive_then_rolls_back() -> None:
    platform = MemoryPlatform("1", "2", 10)
    policy = CanarySettings(max_inconclusive=2)
    promotion, slept = _promotion(platform, ["inconclusive"] * 3, policy)
    record = promotion.run()
    assert [c.action for c in record.checks] == ["hold", "hold", "rollback"]
    assert record.outcome == "rolled_back"
    assert slept == [10.0, 10.0, 10.0]


def test_inconclusive_then_pass_moves_on_and_resets_the_hold_count_per_step() -> None:
    platform = MemoryPlatform("1", "2", 10)
    policy = CanarySettings(max_inconclusive=1)
    outcomes = ["inconclusive", "pass", "inconclusive", "pass", "pass", "pass"]
    record = _promotion(platform, outcomes, policy)[0].run()
    assert record.outcome == "promoted"
    assert [c.weight for c in record.checks] == [10, 10, 30, 30, 50, 100]


def test_errors_are_retried_with_doubling_backoff_then_roll_back() -> None:
    platform = MemoryPlatform("1", "2", 10)
    policy = CanarySettings(error_retries=2, error_backoff_s=1.5)
    promotion, slept = _promotion(platform, ["error", "error", "error"], policy)
    record = promotion.run()
    assert slept == [10.0, 1.5, 3.0]
    assert [c.verdict.outcome for c in record.checks] == ["error"] * 3
    assert [c.action for c in record.checks] == ["retry", "retry", "rollback"]
    assert "not reachable" in record.reasons[0]
    assert platform.calls == ["weights 0", "retire canary"]


def test_an_error_then_a_pass_carries_on() -> None:
    platform = MemoryPlatform("1", "2", 10)
    record = _promotion(platform, ["error", "pass", "pass", "pass", "pass"])[0].run()
    assert record.outcome == "promoted"


def test_resume_continues_from_the_routes_weight_and_never_jumps_ahead() -> None:
    # Given a promotion interrupted after it set 50 %
    platform = MemoryPlatform("1", "2", 50)
    record = _promotion(platform, ["pass", "pass"])[0].run()
    # Then 50 % is judged again before 100 %, and 10/30 are not revisited
    assert [c.weight for c in record.checks] == [50, 100]
    assert platform.calls[0] == "weights 100"


def test_a_version_already_promoted_is_reported_without_any_change() -> None:
    platform = MemoryPlatform("2", None, 0)
    record = _promotion(platform, [])[0].run()
    assert (record.outcome, record.final_weight, platform.calls) == ("promoted", 100, [])


def test_a_version_that_is_not_the_canary_is_refused_naming_what_is() -> None:
    platform = MemoryPlatform("1", "3", 10)
    with pytest.raises(DeployConflict, match="canary serves v3, stable v1"):
        _promotion(platform, ["pass"])[0].run()
    assert platform.calls == []


def test_an_abort_meanwhile_stops_the_promotion_without_touching_the_route() -> None:
    platform = MemoryPlatform("1", "2", 10)
    promotion, _ = _promotion(platform, ["pass", "pass"])
    original = promotion.analyze

    def abort_after_first(window_s: float) -> Measurement:
        measured = original(window_s)
        if len(promotion.record.checks) == 0:
            platform.tracks["canary"] = None  # an engineer's `loopline canary abort`
            platform.split = Weights.canary_at(0)
        return measured

    promotion.analyze = abort_after_first
    record = promotion.run()
    assert record.outcome == "rolled_back"
    assert "no longer v2" in record.reasons[0]
    assert platform.calls == []


@pytest.mark.parametrize(
    ("weight", "expected"),
    [(0, [10, 30, 50, 100]), (10, [10, 30, 50, 100]), (30, [30, 50, 100]), (40, [40, 50, 100]),
     (100, [100])],
)  # fmt: skip
def test_remaining_steps(weight: int, expected: list[int]) -> None:
    assert remaining_steps(STEPS, weight) == expected


def test_next_action_table() -> None:
    policy = CanarySettings(failure_limit=0, max_inconclusive=1, error_retries=1)
    tally = Tally()
    assert next_action(_verdict("pass"), 30, tally, policy) == "advance"
    assert next_action(_verdict("pass"), 100, tally, policy) == "promote"
    assert next_action(_verdict("inconclusive"), 30, tally, policy) == "hold"
    assert next_action(_verdict("inconclusive"), 30, tally, policy) == "rollback"
    assert next_action(_verdict("error"), 30, Tally(), policy) == "retry"
    errors = Tally(errors=1)
    assert next_action(_verdict("error"), 30, errors, policy) == "rollback"
    assert next_action(_verdict("fail"), 30, Tally(), policy) == "rollback"
    # no verdict other than pass ever advances
    for outcome in ("fail", "inconclusive", "error"):
        assert next_action(_verdict(outcome), 100, Tally(), policy) not in ("advance", "promote")

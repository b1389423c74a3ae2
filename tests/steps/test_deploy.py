"""Tests of steps/deploy.py: the pure decision, and the flow against an in-memory platform."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import pytest

from steps.core.errors import ConfigError, DeployConflict, DeployError
from steps.core.settings import DeploySettings, Settings
from steps.deploy import SmokeReport, decide, deploy, release_artifact
from steps.platform.base import Release, Served, Track, Weights

ARCHIVE = "file:///state/artifacts/bentos/loopline/loopline-abc.bento"


def _release(version: str) -> Release:
    return Release(model_name="churn", version=version, artifact=f"{ARCHIVE}#{version}")


def _served(stable: str | None, canary: str | None, canary_weight: int = 0) -> Served:
    return Served(
        stable=_release(stable) if stable else None,
        canary=_release(canary) if canary else None,
        weights=Weights.canary_at(canary_weight),
    )


@pytest.mark.parametrize(
    ("served", "version", "action", "track", "canary_weight"),
    [
        (_served(None, None), "1", "first_deploy", "stable", 0),
        (_served("1", None), "2", "canary", "canary", 10),
        (_served("1", "1"), "2", "canary", "canary", 10),  # canary at rest on stable's version
        (_served("1", "2"), "2", "canary", "canary", 10),  # rolled out, never got traffic: resume
        (_served("1", "2", 10), "2", "unchanged", "canary", 10),
        (_served("1", "2", 30), "2", "unchanged", "canary", 30),
        (_served("1", None), "1", "unchanged", "stable", 0),
        (_served("1", "1"), "1", "unchanged", "stable", 0),
        (_served("1", "2", 10), "3", "refuse", "canary", 10),
        (_served("1", "2"), "3", "refuse", "canary", 0),  # a failed canary waits for rollback
        (_served("1", "2", 10), "1", "refuse", "canary", 10),
        (_served(None, "2"), "3", "refuse", "canary", 0),
    ],
)
def test_decide(
    served: Served, version: str, action: str, track: Track, canary_weight: int
) -> None:
    decision = decide(served, version, first_step=10)

    assert (decision.action, decision.track, decision.weights.canary) == (
        action,
        track,
        canary_weight,
    )
    assert decision.weights.stable == 100 - canary_weight


def test_a_refusal_names_the_version_in_progress_and_its_traffic() -> None:
    decision = decide(_served("1", "2", 30), "3", first_step=10)

    assert "v2 is in progress as the canary (30% of traffic)" in decision.reason
    assert "before deploying v3" in decision.reason


def test_the_first_step_comes_from_the_policy() -> None:
    assert decide(_served("1", None), "2", first_step=25).weights == Weights(stable=75, canary=25)


@dataclass
class FakePlatform:
    """An in-memory Deployer and Router recording every call in order."""

    served_now: Served
    fail_rollout: bool = False
    calls: list[str] = field(default_factory=list)

    def served(self) -> Served:
        self.calls.append("served")
        return self.served_now

    def roll_out(self, track: Track, release: Release, timeout_s: float) -> None:
        self.calls.append(f"roll_out {track} v{release.version} {timeout_s:g}s")
        if self.fail_rollout:
            raise DeployError("Progressing=False (ProgressDeadlineExceeded: timed out)")
        now = self.served_now
        self.served_now = Served(
            stable=release if track == "stable" else now.stable,
            canary=release if track == "canary" else now.canary,
            weights=now.weights,
        )

    def track_url(self, track: Track) -> str:
        return f"http://{track}.test:3000"

    def retire(self, track: Track) -> None:
        self.calls.append(f"retire {track}")

    def weights(self) -> Weights:
        return self.served_now.weights

    def set_weights(self, weights: Weights) -> None:
        self.calls.append(f"set_weights {weights.stable}/{weights.canary}")
        now = self.served_now
        self.served_now = Served(stable=now.stable, canary=now.canary, weights=weights)

    def endpoint(self) -> str:
        return "http://route.test"


POLICY = DeploySettings(rollout_timeout_s=42)


def _smoke(calls: list[str], fail: bool = False) -> Callable[[str], SmokeReport]:
    def check(url: str) -> SmokeReport:
        calls.append(f"smoke {url}")
        if fail:
            raise DeployError(f"smoke test at {url}: /metadata names churn v1, expected v2")
        return SmokeReport(url=url, bento_tag="loopline:abc", rows_compared=5, max_abs_diff=0.0)

    return check


def test_canary_rolls_out_then_smoke_tests_directly_then_moves_the_route() -> None:
    platform = FakePlatform(_served("1", None))

    decision, smoke = deploy(platform, _release("2"), POLICY, _smoke(platform.calls))

    assert platform.calls == [
        "served",
        "roll_out canary v2 42s",
        "smoke http://canary.test:3000",
        "set_weights 90/10",
    ]
    assert decision.action == "canary"
    assert smoke is not None and smoke.url == "http://canary.test:3000"
    assert platform.served_now == Served(_release("1"), _release("2"), Weights.canary_at(10))


def test_first_deployment_goes_to_stable_at_100_percent() -> None:
    platform = FakePlatform(_served(None, None, 0))

    decision, _ = deploy(platform, _release("1"), POLICY, _smoke(platform.calls))

    assert platform.calls[1:] == [
        "roll_out stable v1 42s",
        "smoke http://stable.test:3000",
        "set_weights 100/0",
    ]
    assert "goes straight to stable at 100%" in decision.reason


def test_deploying_twice_changes_nothing_the_second_time() -> None:
    platform = FakePlatform(_served("1", None))
    deploy(platform, _release("2"), POLICY, _smoke(platform.calls))
    platform.calls.clear()

    decision, smoke = deploy(platform, _release("2"), POLICY, _smoke(platform.calls))

    assert platform.calls == ["served"]
    assert (decision.action, smoke) == ("unchanged", None)
    assert platform.served_now.weights == Weights(stable=90, canary=10)


def test_another_version_in_progress_is_refused_before_anything_changes() -> None:
    platform = FakePlatform(_served("1", "2", 10))

    with pytest.raises(DeployConflict, match="v2 is in progress as the canary"):
        deploy(platform, _release("3"), POLICY, _smoke(platform.calls))

    assert platform.calls == ["served"]


@pytest.mark.parametrize("fail", ["rollout", "smoke"])
def test_a_failed_rollout_or_smoke_test_leaves_the_route_untouched(fail: str) -> None:
    platform = FakePlatform(_served("1", None), fail_rollout=fail == "rollout")
    check = _smoke(platform.calls, fail=fail == "smoke")

    with pytest.raises(DeployError):
        deploy(platform, _release("2"), POLICY, check)

    assert not [call for call in platform.calls if call.startswith("set_weights")]
    assert platform.served_now.weights == Weights(stable=100, canary=0)


def test_each_platform_needs_its_own_artifact() -> None:
    local = Settings()
    cluster = Settings.model_validate({"platform": "kubernetes"})
    image = "ghcr.io/loopline/churn@sha256:" + "a" * 64

    assert release_artifact(local, ARCHIVE, "none") == ARCHIVE
    assert release_artifact(cluster, ARCHIVE, image) == image
    with pytest.raises(ConfigError, match="--image-ref"):
        release_artifact(cluster, ARCHIVE, "none")
    with pytest.raises(ConfigError, match="--archive-uri"):
        release_artifact(local, None, image)

"""The canary promotion: move the canary's share step by step, judge each interval, then promote
fully or roll back.

For each remaining step (by default 10, 30, 50, 100 %): set the route's weights, wait one
analysis interval, measure both tracks over that interval (:mod:`steps.canary.analysis`) and
judge (:mod:`steps.canary.judge`); then :func:`next_action` (pure) says what follows:

========================  =============================================================
verdict                   action
========================  =============================================================
pass                      advance to the next step; at 100 %: promote fully
fail                      roll back once more than ``failure_limit`` checks failed,
                          else hold (judge the same step again after an interval)
inconclusive              hold, up to ``max_inconclusive`` times at one step, then roll
                          back: too little data never promotes
error (Prometheus down,   query again after a backoff (``error_backoff_s``, doubling) up
a query refused)          to ``error_retries`` times, then roll back
========================  =============================================================

- **Rollback**: the route goes 100 % to stable, then the canary track is retired (scaled to
  zero). Stable is never touched.
- **Full promotion**: with the canary at 100 %, stable is rolled out with the canary's release
  (it has no traffic then), the route goes back 100 % to stable, the canary track is retired.
- **Resumable**: the promotion starts from the weight the route has now (:func:`remaining_steps`)
  and never jumps ahead; interrupted at any point, running it again continues from there. Before
  every change it checks the canary track still serves the version it promotes (an engineer's
  ``loopline canary abort`` in between ends it).

The caller holds the promotion lock (:mod:`steps.canary.lock`) and acts on the registry; this
module only talks to the platform and the metrics, through the callables it is given.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from steps.canary.analysis import AnalysisError, summarize
from steps.canary.judge import Measurement, Verdict, error_verdict
from steps.canary.record import Action, AnalysisRecord, CheckRecord, WeightChange
from steps.core.errors import DeployConflict
from steps.core.settings import CanarySettings
from steps.platform.base import Release, Served, Weights
from steps.platform.target import Platform

Analyze = Callable[[float], Measurement]
"""Measure both tracks over the last ``window_s`` seconds; raises AnalysisError."""
Judge = Callable[[Measurement], Verdict]
OnCheck = Callable[[CheckRecord], None]


@dataclass(frozen=True)
class Clock:
    """Time as the promotion sees it; tests and drills may pass their own."""

    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass
class Tally:
    """What the checks said so far: failures over the whole promotion, inconclusive checks at
    the current step, errors in a row."""

    failures: int = 0
    inconclusive: int = 0
    errors: int = 0


def next_action(verdict: Verdict, weight: int, tally: Tally, policy: CanarySettings) -> Action:
    """Decide what follows a check at ``weight`` percent (see the module's table); updates
    ``tally`` with this verdict.

    Returns:
        ``advance``, ``promote``, ``hold``, ``retry`` or ``rollback``.
    """
    if verdict.outcome == "error":
        tally.errors += 1
        return "retry" if tally.errors <= policy.error_retries else "rollback"
    tally.errors = 0
    if verdict.outcome == "fail":
        tally.failures += 1
        return "rollback" if tally.failures > policy.failure_limit else "hold"
    if verdict.outcome == "inconclusive":
        tally.inconclusive += 1
        return "rollback" if tally.inconclusive > policy.max_inconclusive else "hold"
    return "promote" if weight >= 100 else "advance"


def remaining_steps(steps: tuple[int, ...], canary_weight: int) -> list[int]:
    """The steps still to take from the route's current canary share.

    A share on a step resumes there (it is judged again before moving on); a share between
    steps is judged where it is, then the next larger step follows; 0 starts at the first.
    """
    if canary_weight <= 0:
        return list(steps)
    return [canary_weight, *(step for step in steps if step > canary_weight)]


class CanaryGone(Exception):
    """The canary track no longer serves the version being promoted (aborted meanwhile)."""


@dataclass
class Promotion:
    """One promotion of ``version`` on ``platform``; :meth:`run` fills ``record``."""

    platform: Platform
    version: str
    policy: CanarySettings
    steps: tuple[int, ...]
    interval_s: float
    analyze: Analyze
    judge: Judge
    record: AnalysisRecord
    rollout_timeout_s: float = 600.0
    renew_lock: Callable[[], None] = lambda: None
    on_check: OnCheck = lambda check: None
    clock: Clock = field(default_factory=Clock)

    def run(self) -> AnalysisRecord:
        """Carry the canary to 100 % or roll it back; return the completed record.

        Raises:
            DeployConflict: when the canary track does not serve ``version`` (and it is not
                already fully promoted).
            DeployError: when the platform refuses a change; the promotion can be run again.
        """
        served = self.platform.served()
        if self._already_promoted(served):
            return self._finish(
                "promoted", 100, [f"v{self.version} already serves 100% on stable: nothing to do"]
            )
        canary = self._canary(served)
        weight = self.platform.weights().canary
        reached = weight
        tally = Tally()
        try:
            for step in remaining_steps(self.steps, weight):
                if step != weight:
                    self._ensure_ours()
                    self.platform.set_weights(Weights.canary_at(step))
                    self.record.weight_changes.append(
                        WeightChange(at=self.clock.now(), canary=step)
                    )
                    weight = step
                reached = weight
                action = self._judge_step(weight, tally)
                if action == "rollback":
                    return self._roll_back(reached)
                if action == "promote":
                    return self._promote(canary)
        except CanaryGone as gone:
            return self._finish("rolled_back", reached, [str(gone)])
        raise AssertionError("steps end at 100 %, where a pass promotes")  # pragma: no cover

    def _judge_step(self, weight: int, tally: Tally) -> Action:
        """Judge ``weight`` every interval until the checks say to move on or to stop."""
        tally.inconclusive = 0
        wait_s = self.interval_s
        while True:
            self.clock.sleep(wait_s)
            self.renew_lock()
            self._ensure_ours()
            started = time.perf_counter()
            measurement = None
            try:
                measurement = self.analyze(self.interval_s)
                verdict = self.judge(measurement)
            except AnalysisError as err:
                verdict = error_verdict(str(err))
            except ValueError as err:  # the judge refuses a malformed measurement
                verdict = error_verdict(f"malformed measurement: {err}")
            action = next_action(verdict, weight, tally, self.policy)
            check = CheckRecord(
                at=self.clock.now(),
                weight=weight,
                window_s=self.interval_s,
                tracks=summarize(measurement) if measurement is not None else {},
                verdict=verdict,
                action=action,
                analysis_s=round(time.perf_counter() - started, 4),
            )
            self.record.checks.append(check)
            self.on_check(check)
            if action == "retry":
                wait_s = self.policy.error_backoff_s * 2 ** (tally.errors - 1)
                continue
            if action == "hold":
                wait_s = self.interval_s
                continue
            return action

    def _roll_back(self, reached: int) -> AnalysisRecord:
        self.platform.set_weights(Weights.canary_at(0))
        self.record.weight_changes.append(WeightChange(at=self.clock.now(), canary=0))
        self.platform.retire("canary")
        last = self.record.checks[-1].verdict if self.record.checks else None
        reasons = list(last.reasons) if last is not None else ["rolled back"]
        return self._finish("rolled_back", reached, reasons)

    def _promote(self, canary: Release) -> AnalysisRecord:
        # Stable has no traffic at 100 %: it takes the canary's release, then the traffic.
        self.platform.roll_out("stable", canary, self.rollout_timeout_s)
        self.platform.set_weights(Weights.canary_at(0))
        self.record.weight_changes.append(WeightChange(at=self.clock.now(), canary=0))
        self.platform.retire("canary")
        passed = self.record.checks[-1].verdict.reasons if self.record.checks else ()
        return self._finish("promoted", 100, [f"v{self.version} serves 100% on stable", *passed])

    def _finish(self, outcome: str, weight: int, reasons: list[str]) -> AnalysisRecord:
        self.record.outcome = "promoted" if outcome == "promoted" else "rolled_back"
        self.record.final_weight = weight
        self.record.reasons = reasons
        self.record.finished_at = self.clock.now()
        return self.record

    def _already_promoted(self, served: Served) -> bool:
        stable = served.stable
        return served.canary is None and stable is not None and stable.version == self.version

    def _canary(self, served: Served) -> Release:
        canary = served.canary
        if canary is None or canary.version != self.version:
            on_canary = f"v{canary.version}" if canary else "nothing"
            stable = f"v{served.stable.version}" if served.stable else "nothing"
            raise DeployConflict(
                f"v{self.version} is not the canary (canary serves {on_canary}, stable "
                f"{stable}); deploy it first (loopline deploy --model-version {self.version})"
            )
        return canary

    def _ensure_ours(self) -> None:
        canary = self.platform.served().canary
        if canary is None or canary.version != self.version:
            now = f"v{canary.version}" if canary else "nothing"
            raise CanaryGone(
                f"the canary track serves {now} now, no longer v{self.version} (aborted or "
                "rolled back meanwhile): the promotion stopped"
            )

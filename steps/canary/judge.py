"""The canary judge: a pure decision on one analysis window, with every reason and number.

No I/O here: :func:`judge` takes what both tracks did during one window (request and 5xx
counts, a latency histogram and a histogram of predicted probabilities each, as Prometheus
reports them) and a :class:`~steps.core.settings.CanarySettings` policy, and returns a
:class:`Verdict` whose checks carry the measured value, the limit, the p-value of any test that
ran and a one-line reason. The promotion acts on it; :func:`error_verdict` is the verdict when
the window could not be measured at all.

The checks, in order:

1. ``canary_requests``: the canary served at least ``min_requests``. Fewer is inconclusive,
   and then every other check is reported inconclusive too (still measured and shown): too
   little data never passes and never fails.
2. ``error_ratio``: canary 5xx / requests <= ``max_error_ratio``.
3. ``p99_latency``: canary p99 (as Prometheus' ``histogram_quantile``) <= ``max_p99_ms``;
   inconclusive without latency observations.
4. ``error_ratio_vs_stable``: canary ratio <= stable ratio + ``error_ratio_slack``.
5. ``p99_vs_stable``: canary p99 <= stable p99 x ``p99_ratio`` + ``p99_slack_ms``.
6. ``predictions_vs_stable``: the population stability index (PSI) of the canary's predicted
   probabilities against stable's <= ``max_psi``: the one check that looks at the model.

Checks 4 to 6 compare with stable and are skipped when it served fewer than ``min_requests``
(no baseline); 6 also when a track scored no rows. A comparison above its margin fails only when
a one-sided test says the difference is real (a pooled two-proportion z test, a
Mann-Whitney U test on the latency buckets, a chi-square test of homogeneity on the prediction
buckets); above the margin but not significant is inconclusive. ``alpha`` is the chance of
rolling back, over the whole promotion, a canary no worse than stable: each test runs at
``alpha`` divided by the number of tests the promotion can run (three per window, every window
of every step, :func:`comparison_level`). Tested at ``alpha`` each, the chances add up over the
windows: the drill's healthy retrain was once rolled back on a 50-row window at p=0.023. The
verdict is ``fail`` if any check failed, else ``inconclusive`` if any was, else ``pass``.

Before PSI and its test, neighbouring prediction buckets are merged until each side expects at
least five rows in each (:func:`pooled_buckets`): a small window compares coarser, never noisier.

Choosing ``max_psi``: the PSI of two samples from the *same* distribution is positive by noise
alone, about ``(k - 1) * (1 / n_canary + 1 / n_stable)`` for ``k`` populated buckets and ``n``
scored rows per track (more where buckets are nearly empty, since shares are floored at
``epsilon``). With the ten probability buckets and the default ``min_requests`` of 200 that is
about 0.09 at an even split and 0.05 at a 10 % canary step, so the default 0.2 sits above it; at
the local stand-in's 60 requests the noise exceeds 0.2, and the chi-square test is what
keeps noise from failing a canary (it can only make the check inconclusive). The conventional
reading is < 0.1 stable, 0.1 to 0.25 a moderate shift, > 0.25 a major shift. To set it for a
service, measure the PSI between two windows of the stable track alone and set the threshold
well above it.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict
from scipy import stats

from steps.core.settings import CanarySettings

CheckOutcome = Literal["pass", "fail", "inconclusive", "skipped"]
Outcome = Literal["pass", "fail", "inconclusive", "error"]


@dataclass(frozen=True)
class Histogram:
    """A Prometheus histogram's increase over a window: ascending upper bounds (the last is
    ``math.inf``) and the cumulative count at each bound, as ``le`` buckets are."""

    bounds: tuple[float, ...] = (math.inf,)
    cumulative: tuple[float, ...] = (0.0,)


@dataclass(frozen=True)
class TrackWindow:
    """What one track did during the window."""

    version: str
    requests: float
    """Requests to the prediction endpoints (every status)."""
    server_errors: float
    """Of those, answered with a 5xx."""
    latency: Histogram
    """Request duration in seconds."""
    predictions: Histogram
    """Predicted probabilities, one observation per scored row."""


@dataclass(frozen=True)
class Measurement:
    """Both tracks over the same window; ``stable`` is None when it served nothing then."""

    window_s: float
    canary: TrackWindow
    stable: TrackWindow | None


class Check(BaseModel):
    """One check of a verdict: its outcome, the measured value, the limit and why."""

    model_config = ConfigDict(frozen=True)

    name: str
    outcome: CheckOutcome
    value: float | None
    limit: float | None
    p_value: float | None = None
    reason: str


class Verdict(BaseModel):
    """The judgement of one window: ``fail`` if any check failed, else ``inconclusive`` if any
    was, else ``pass``; ``error`` when the window could not be measured."""

    model_config = ConfigDict(frozen=True)

    outcome: Outcome
    checks: tuple[Check, ...]
    reasons: tuple[str, ...]


def judge(
    measurement: Measurement, policy: CanarySettings, min_requests: int, windows: int = 1
) -> Verdict:
    """Judge one analysis window of the canary against the policy and the stable track.

    Args:
        measurement: both tracks over the window.
        policy: the limits, margins and ``alpha`` of the comparisons.
        min_requests: the fewest requests a track must serve to be judged (canary) or to be a
            baseline (stable).
        windows: the most windows the promotion judges (:func:`promotion_windows`); each
            comparison's test runs at :func:`comparison_level` so that ``alpha`` holds for the
            whole promotion.

    Returns:
        The verdict with the six checks of the module docstring, in that order, and as
        ``reasons`` the failed checks' reasons (fail), the inconclusive ones' (inconclusive) or
        one line summing up what passed (pass).

    Raises:
        ValueError: when ``min_requests`` is below 1, a histogram is malformed, or a track
            counts more 5xx than requests.
    """
    if min_requests < 1:
        raise ValueError(f"min_requests must be at least 1, got {min_requests}")
    level = comparison_level(policy.alpha, windows)
    canary = measurement.canary
    checks = [
        _canary_requests(canary, min_requests),
        _error_ratio(canary, policy),
        _p99_latency(canary, policy),
    ]
    baseline = _baseline(measurement.stable, min_requests)
    if isinstance(baseline, str):
        checks += [_skipped(name, baseline) for name in _RELATIVE_CHECKS]
    else:
        checks += [
            _error_ratio_vs_stable(canary, baseline, policy, level),
            _p99_vs_stable(canary, baseline, policy, level),
            _predictions_vs_stable(canary, baseline, policy, level),
        ]
    if canary.requests < min_requests:
        checks[1:] = [_too_few(check) for check in checks[1:]]
    return _verdict(tuple(checks))


def promotion_windows(steps: int, max_inconclusive: int) -> int:
    """Return the most windows a promotion of ``steps`` traffic steps judges: each step holds
    for up to ``max_inconclusive`` inconclusive windows before its deciding one."""
    return steps * (max_inconclusive + 1)


def comparison_level(alpha: float, windows: int) -> float:
    """Return the significance level of one comparison's test (Bonferroni): ``alpha`` shared
    by the three comparisons of each of ``windows`` windows, so that a canary no worse than
    stable is rolled back by chance with probability at most ``alpha`` over the promotion.

    Raises:
        ValueError: when ``windows`` is below 1.
    """
    if windows < 1:
        raise ValueError(f"windows must be at least 1, got {windows}")
    return alpha / (windows * len(_RELATIVE_CHECKS))


def error_verdict(reason: str) -> Verdict:
    """Return the verdict of a window that could not be measured: ``error``, no checks, and
    ``reason`` (what went wrong) as its only reason."""
    return Verdict(outcome="error", checks=(), reasons=(reason,))


def bucket_counts(histogram: Histogram) -> tuple[float, ...]:
    """Return the count of each bucket alone (not cumulative), in the order of the bounds.

    A negative difference between neighbouring cumulative counts (a counter reset, or
    ``increase()``'s extrapolation noise) is clipped to 0.

    Raises:
        ValueError: when the histogram is malformed (see :class:`Histogram`).
    """
    _check_shape(histogram)
    below = (0.0, *histogram.cumulative[:-1])
    return tuple(
        max(count - lower, 0.0) for count, lower in zip(histogram.cumulative, below, strict=True)
    )


def quantile(histogram: Histogram, q: float) -> float | None:
    """Return the ``q``-quantile as Prometheus' ``histogram_quantile`` computes it.

    Cumulative counts are first made monotonic (as Prometheus does); the quantile is then
    interpolated linearly inside the bucket where its rank falls, the first bucket starting at 0
    (or returning its bound when that is <= 0). A quantile in the ``+Inf`` bucket returns the
    largest finite bound.

    Returns:
        The quantile in the histogram's unit, or None when it holds no observation (or has no
        finite bound, where Prometheus returns NaN).

    Raises:
        ValueError: when ``q`` is outside [0, 1] or the histogram is malformed.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile q must be within [0, 1], got {q}")
    _check_shape(histogram)
    bounds = histogram.bounds
    cumulative = tuple(itertools.accumulate(histogram.cumulative, max))
    if len(bounds) < 2 or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    index = next((i for i, count in enumerate(cumulative[:-1]) if count >= rank), len(bounds) - 1)
    if index == len(bounds) - 1:
        return bounds[-2]
    if index == 0 and bounds[0] <= 0:
        return bounds[0]
    start, below = (bounds[index - 1], cumulative[index - 1]) if index else (0.0, 0.0)
    in_bucket = cumulative[index] - below
    if in_bucket <= 0:  # only at q = 0 over empty leading buckets, where Prometheus gives NaN
        return start
    return start + (bounds[index] - start) * (rank - below) / in_bucket


def two_proportion_p(
    errors_canary: float, n_canary: float, errors_stable: float, n_stable: float
) -> float:
    """Return the one-sided p-value that the canary's error ratio is greater than stable's.

    A pooled two-proportion z test: ``z = (r_canary - r_stable) / sqrt(r(1 - r)(1/n_c + 1/n_s))``
    with ``r`` the pooled ratio, p = P(Z >= z).

    Returns:
        The p-value; 1.0 when both ratios are 0 (or both 1): nothing to tell apart.

    Raises:
        ValueError: when a request count is not positive or errors are outside [0, requests].
    """
    for errors, requests in ((errors_canary, n_canary), (errors_stable, n_stable)):
        if requests <= 0 or not 0 <= errors <= requests:
            raise ValueError(f"expected 0 <= errors <= requests > 0, got {errors} of {requests}")
    pooled = (errors_canary + errors_stable) / (n_canary + n_stable)
    variance = pooled * (1.0 - pooled) * (1.0 / n_canary + 1.0 / n_stable)
    if variance <= 0:
        return 1.0
    z = (errors_canary / n_canary - errors_stable / n_stable) / math.sqrt(variance)
    return float(stats.norm.sf(z))


def mann_whitney_p(canary: Sequence[float], stable: Sequence[float]) -> float:
    """Return the one-sided Mann-Whitney p-value that canary values are stochastically larger.

    The inputs are per-bucket counts over the same ascending buckets: ordinal data with ties.
    ``U = sum_i a_i * (B_i + b_i / 2)``, with ``a_i`` and ``b_i`` the canary's and stable's count
    in bucket ``i`` and ``B_i`` stable's count below it, is compared with its normal
    approximation under no difference, the variance corrected for ties (no continuity
    correction).

    Returns:
        The p-value; 1.0 when a side is empty or every observation ties (variance 0).

    Raises:
        ValueError: when the lengths differ or a count is negative.
    """
    _check_counts(canary, stable)
    n_canary, n_stable = sum(canary), sum(stable)
    total = n_canary + n_stable
    if n_canary <= 0 or n_stable <= 0 or total <= 1:
        return 1.0
    u, stable_below, ties = 0.0, 0.0, 0.0
    for in_canary, in_stable in zip(canary, stable, strict=True):
        u += in_canary * (stable_below + in_stable / 2.0)
        stable_below += in_stable
        tied = in_canary + in_stable
        ties += tied**3 - tied
    variance = n_canary * n_stable / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)))
    if variance <= 0:
        return 1.0
    return float(stats.norm.sf((u - n_canary * n_stable / 2.0) / math.sqrt(variance)))


def psi(canary: Sequence[float], stable: Sequence[float], epsilon: float = 1e-4) -> float:
    """Return the population stability index of two distributions over the same buckets.

    ``PSI = sum_i (c_i - s_i) * ln(c_i / s_i)`` over the buckets' shares, each floored at
    ``epsilon`` so that a bucket empty on one side adds a large but finite term. It is 0 for
    identical shares and symmetric in its arguments.

    Raises:
        ValueError: when the lengths differ, a count is negative, a side is empty or
            ``epsilon`` is not positive.
    """
    _check_counts(canary, stable)
    n_canary, n_stable = sum(canary), sum(stable)
    if n_canary <= 0 or n_stable <= 0:
        raise ValueError("PSI needs observations on both sides")
    if epsilon <= 0:
        raise ValueError(f"epsilon must be positive, got {epsilon}")
    index = 0.0
    for in_canary, in_stable in zip(canary, stable, strict=True):
        share_canary = max(in_canary / n_canary, epsilon)
        share_stable = max(in_stable / n_stable, epsilon)
        index += (share_canary - share_stable) * math.log(share_canary / share_stable)
    return index


def homogeneity_p(canary: Sequence[float], stable: Sequence[float]) -> float:
    """Return the p-value of a chi-square test that both sides share one bucket distribution.

    The 2 x k table of counts, buckets empty on both sides dropped, is tested with k - 1
    degrees of freedom (Pearson's statistic, no continuity correction).

    Returns:
        The p-value; 1.0 when a side is empty or fewer than 2 buckets remain.

    Raises:
        ValueError: when the lengths differ or a count is negative.
    """
    _check_counts(canary, stable)
    columns = [(a, b) for a, b in zip(canary, stable, strict=True) if a > 0 or b > 0]
    n_canary, n_stable = sum(canary), sum(stable)
    if len(columns) < 2 or n_canary <= 0 or n_stable <= 0:
        return 1.0
    total = n_canary + n_stable
    statistic = 0.0
    for in_canary, in_stable in columns:
        expected_canary = n_canary * (in_canary + in_stable) / total
        expected_stable = n_stable * (in_canary + in_stable) / total
        statistic += (in_canary - expected_canary) ** 2 / expected_canary
        statistic += (in_stable - expected_stable) ** 2 / expected_stable
    return float(stats.chi2.sf(statistic, len(columns) - 1))


MIN_EXPECTED = 5.0
"""The fewest observations each side is expected to have in a bucket under no difference: the
usual condition for a chi-square test to hold, and what keeps PSI from exploding on buckets a
small window left empty by chance."""


def pooled_buckets(
    canary: Sequence[float], stable: Sequence[float], min_expected: float = MIN_EXPECTED
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Merge neighbouring buckets until each side's expected count in every merged bucket (its
    total times the pooled share of the bucket) is at least ``min_expected``.

    A bucket short of it joins the next; a short remainder at the end joins the last merged
    bucket. With few rows the comparison becomes coarser instead of noisy: at 30 canary rows a
    healthy canary's empty-by-chance buckets otherwise made PSI exceed 1 and the chi-square test
    (invalid at such expected counts) call it significant.

    Returns:
        The merged counts of both sides (a single bucket when the rows are too few to split).

    Raises:
        ValueError: when the lengths differ or a count is negative.
    """
    _check_counts(canary, stable)
    n_canary, n_stable = sum(canary), sum(stable)
    total = n_canary + n_stable
    if total <= 0:
        return (n_canary,), (n_stable,)
    merged_canary: list[float] = []
    merged_stable: list[float] = []
    group_canary = group_stable = 0.0
    for in_canary, in_stable in zip(canary, stable, strict=True):
        group_canary += in_canary
        group_stable += in_stable
        share = (group_canary + group_stable) / total
        if min(n_canary, n_stable) * share >= min_expected:
            merged_canary.append(group_canary)
            merged_stable.append(group_stable)
            group_canary = group_stable = 0.0
    if group_canary or group_stable or not merged_canary:
        if merged_canary:
            merged_canary[-1] += group_canary
            merged_stable[-1] += group_stable
        else:
            merged_canary, merged_stable = [group_canary], [group_stable]
    return tuple(merged_canary), tuple(merged_stable)


_RELATIVE_CHECKS = ("error_ratio_vs_stable", "p99_vs_stable", "predictions_vs_stable")
_DECISIVE: tuple[Outcome, ...] = ("fail", "inconclusive")
"""Check outcomes that decide the verdict, the first found wins."""


def _canary_requests(canary: TrackWindow, min_requests: int) -> Check:
    enough = canary.requests >= min_requests
    served = f"{canary.requests:,.0f} canary requests in the window"
    return Check(
        name="canary_requests",
        outcome="pass" if enough else "inconclusive",
        value=canary.requests,
        limit=min_requests,
        reason=f"{served}, at least {min_requests:,}"
        if enough
        else f"{served}, fewer than {min_requests:,}: not enough to judge",
    )


def _error_ratio(canary: TrackWindow, policy: CanarySettings) -> Check:
    return _within(
        "error_ratio",
        _ratio(canary),
        policy.max_error_ratio,
        _NO_REQUESTS,
        lambda ratio, op, limit: (
            f"canary error ratio {_pct(ratio)} {op} {_pct(limit)} "
            f"({canary.server_errors:,.0f} of {canary.requests:,.0f} requests)"
        ),
    )


def _p99_latency(canary: TrackWindow, policy: CanarySettings) -> Check:
    return _within(
        "p99_latency",
        _p99_ms(canary),
        policy.max_p99_ms,
        _NO_LATENCY,
        lambda p99, op, limit: f"canary p99 {_ms(p99)} {op} {_ms(limit)}",
    )


def _within(
    name: str,
    value: float | None,
    limit: float,
    missing: str,
    reason: Callable[[float, str, float], str],
) -> Check:
    """Pass when ``value`` <= ``limit``; unmeasured (``missing``) without a value."""
    if value is None:
        return _unmeasured(name, limit, missing)
    passed = value <= limit
    return Check(
        name=name,
        outcome="pass" if passed else "fail",
        value=value,
        limit=limit,
        reason=reason(value, "<=" if passed else ">", limit),
    )


def _error_ratio_vs_stable(
    canary: TrackWindow, stable: TrackWindow, policy: CanarySettings, level: float
) -> Check:
    name = "error_ratio_vs_stable"
    canary_ratio, stable_ratio = _ratio(canary), _ratio(stable)
    assert stable_ratio is not None  # a baseline served at least min_requests >= 1
    limit = stable_ratio + policy.error_ratio_slack
    if canary_ratio is None:
        return _unmeasured(name, limit, _NO_REQUESTS)
    margin = (
        f"stable's {_pct(stable_ratio)} + {100 * policy.error_ratio_slack:.3g} pt = {_pct(limit)}"
    )
    if canary_ratio <= limit:
        reason = f"canary error ratio {_pct(canary_ratio)} <= {margin}"
        return Check(name=name, outcome="pass", value=canary_ratio, limit=limit, reason=reason)
    p_value = two_proportion_p(
        canary.server_errors, canary.requests, stable.server_errors, stable.requests
    )
    above = f"{_pct(canary_ratio)} > {margin}"
    return _significance(
        name,
        canary_ratio,
        limit,
        p_value,
        level,
        subject="canary error ratio",
        worse="significantly higher",
        above=above,
    )


def _p99_vs_stable(
    canary: TrackWindow, stable: TrackWindow, policy: CanarySettings, level: float
) -> Check:
    name = "p99_vs_stable"
    stable_p99 = _p99_ms(stable)
    if stable_p99 is None:
        return _skipped(name, "stable recorded no latency observations: no baseline")
    limit = stable_p99 * policy.p99_ratio + policy.p99_slack_ms
    canary_p99 = _p99_ms(canary)
    if canary_p99 is None:
        return _unmeasured(name, limit, _NO_LATENCY)
    margin = (
        f"stable's {_ms(stable_p99)} x {policy.p99_ratio:g} + {_ms(policy.p99_slack_ms)} "
        f"= {_ms(limit)}"
    )
    if canary_p99 <= limit:
        reason = f"canary p99 {_ms(canary_p99)} <= {margin}"
        return Check(name=name, outcome="pass", value=canary_p99, limit=limit, reason=reason)
    p_value = mann_whitney_p(*_aligned_counts(canary.latency, stable.latency))
    above = f"{_ms(canary_p99)} > {margin}"
    return _significance(
        name,
        canary_p99,
        limit,
        p_value,
        level,
        subject="canary p99",
        worse="significantly slower",
        above=above,
    )


def _predictions_vs_stable(
    canary: TrackWindow, stable: TrackWindow, policy: CanarySettings, level: float
) -> Check:
    name = "predictions_vs_stable"
    canary_counts, stable_counts = _aligned_counts(canary.predictions, stable.predictions)
    for track, counts in (("canary", canary_counts), ("stable", stable_counts)):
        if sum(counts) <= 0:
            return _skipped(name, f"{track} scored no rows in the window: no comparison")
    canary_counts, stable_counts = pooled_buckets(canary_counts, stable_counts)
    index, limit = psi(canary_counts, stable_counts), policy.max_psi
    if index <= limit:
        reason = f"predicted probabilities stable: PSI {index:.3g} <= {limit:g}"
        return Check(name=name, outcome="pass", value=index, limit=limit, reason=reason)
    p_value = homogeneity_p(canary_counts, stable_counts)
    return _significance(
        name,
        index,
        limit,
        p_value,
        level,
        subject="predicted probabilities",
        worse="shifted",
        above=f"PSI {index:.3g} > {limit:g}",
    )


def _significance(
    name: str,
    value: float,
    limit: float,
    p_value: float,
    level: float,
    *,
    subject: str,
    worse: str,
    above: str,
) -> Check:
    """A check whose value is ``above`` its margin: fail when the test says so at ``level``."""
    if p_value < level:
        outcome: CheckOutcome = "fail"
        reason = f"{subject} {worse}: {above} (p={p_value:.2g} < {level:.2g})"
    else:
        outcome = "inconclusive"
        reason = (
            f"{subject}: {above}, above the margin but not significant "
            f"(p={p_value:.2g} >= {level:.2g})"
        )
    return Check(
        name=name, outcome=outcome, value=value, limit=limit, p_value=p_value, reason=reason
    )


def _baseline(stable: TrackWindow | None, min_requests: int) -> TrackWindow | str:
    """The stable track when it can be compared with, else why not."""
    if stable is not None and stable.requests >= min_requests:
        return stable
    served = 0.0 if stable is None else stable.requests
    return (
        f"stable served {served:,.0f} requests in the window, fewer than {min_requests:,}: "
        "no baseline"
    )


def _skipped(name: str, reason: str) -> Check:
    return Check(name=name, outcome="skipped", value=None, limit=None, reason=reason)


_NO_REQUESTS = "no canary requests in the window"
_NO_LATENCY = "no canary latency observations in the window: no p99"


def _unmeasured(name: str, limit: float, reason: str) -> Check:
    return Check(name=name, outcome="inconclusive", value=None, limit=limit, reason=reason)


def _too_few(check: Check) -> Check:
    return check.model_copy(
        update={
            "outcome": "inconclusive",
            "reason": f"too few requests to judge: {check.reason}",
        }
    )


def _verdict(checks: tuple[Check, ...]) -> Verdict:
    for outcome in _DECISIVE:
        reasons = tuple(check.reason for check in checks if check.outcome == outcome)
        if reasons:
            return Verdict(outcome=outcome, checks=checks, reasons=reasons)
    passed = [check.reason for check in checks if check.outcome == "pass"]
    skipped = [
        f"{check.name} skipped ({check.reason})" for check in checks if check.outcome == "skipped"
    ]
    head = (
        f"{len(passed)} of {len(checks)} checks passed"
        if skipped
        else f"all {len(checks)} checks passed"
    )
    return Verdict(
        outcome="pass", checks=checks, reasons=(f"{head}: " + "; ".join(passed + skipped),)
    )


def _ratio(track: TrackWindow) -> float | None:
    if track.server_errors > track.requests:
        raise ValueError(
            f"{track.version} counts {track.server_errors} server errors in "
            f"{track.requests} requests: expected at most as many errors as requests"
        )
    return track.server_errors / track.requests if track.requests > 0 else None


def _p99_ms(track: TrackWindow) -> float | None:
    p99_s = quantile(track.latency, 0.99)
    return None if p99_s is None else 1000.0 * p99_s


def _aligned_counts(
    canary: Histogram, stable: Histogram
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-bucket counts of both histograms over the bounds they share: a version that changed
    its buckets is still compared, on the coarser common ones (``+Inf`` is always shared)."""
    _check_shape(canary)
    _check_shape(stable)
    shared = sorted(set(canary.bounds) & set(stable.bounds))
    return _counts_at(canary, shared), _counts_at(stable, shared)


def _counts_at(histogram: Histogram, bounds: list[float]) -> tuple[float, ...]:
    at = dict(zip(histogram.bounds, histogram.cumulative, strict=True))
    return bucket_counts(Histogram(tuple(bounds), tuple(at[bound] for bound in bounds)))


def _check_shape(histogram: Histogram) -> None:
    bounds, cumulative = histogram.bounds, histogram.cumulative
    if not bounds or len(bounds) != len(cumulative):
        raise ValueError(
            f"a histogram needs one cumulative count per bound, got {len(bounds)} bounds and "
            f"{len(cumulative)} counts"
        )
    if bounds[-1] != math.inf or any(low >= high for low, high in itertools.pairwise(bounds)):
        raise ValueError(f"expected strictly ascending bounds ending at +Inf, got {bounds}")


def _check_counts(canary: Sequence[float], stable: Sequence[float]) -> None:
    if len(canary) != len(stable):
        raise ValueError(
            f"expected counts over the same buckets, got {len(canary)} and {len(stable)}"
        )
    if any(count < 0 for count in (*canary, *stable)):
        raise ValueError("bucket counts must not be negative")


def _pct(ratio: float) -> str:
    return f"{100 * ratio:.3g}%"


def _ms(milliseconds: float) -> str:
    return f"{milliseconds:,.1f}".rstrip("0").rstrip(".") + " ms"

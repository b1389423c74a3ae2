"""The canary judge is a pure function: its statistics against independent implementations,
and every check's outcome on hand-built windows, without Prometheus."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportions_ztest

from steps.canary.judge import (
    Check,
    Histogram,
    Measurement,
    TrackWindow,
    Verdict,
    bucket_counts,
    comparison_level,
    error_verdict,
    homogeneity_p,
    judge,
    mann_whitney_p,
    pooled_buckets,
    promotion_windows,
    psi,
    quantile,
    two_proportion_p,
)
from steps.core.settings import CanarySettings

LATENCY_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, math.inf)
"""The service's request-duration buckets (serving/service.py)."""
PREDICTION_BOUNDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, math.inf)
POLICY = CanarySettings()
MIN_REQUESTS = 200

FAST = (600, 395, 5)
"""Per 1000 requests: p99 = 5 + 5 x 390/395 = 9.94 ms."""
FAST_P99_MS = 5 + 5 * 390 / 395
SLOWER = (300, 300, 375, 25)
"""Per 1000 requests: p99 = 25 + 25 x 15/25 = 40 ms, +30 ms on FAST and within the 50 ms SLO."""
CHURN_SCORES = (300, 200, 150, 100, 80, 60, 40, 30, 25, 15)
"""Per 1000 rows, one share per probability decile: most customers unlikely to churn."""


def histogram(bounds: Sequence[float], counts: Sequence[float]) -> Histogram:
    """A histogram from per-bucket counts (the rest of the buckets empty)."""
    padded = [*counts, *[0.0] * (len(bounds) - len(counts))]
    return Histogram(bounds=tuple(bounds), cumulative=tuple(itertools.accumulate(padded)))


def scaled(shares: Sequence[float], total: float) -> list[float]:
    return [total * share / sum(shares) for share in shares]


def track(
    version: str = "2",
    requests: float = 1000,
    errors: float = 0,
    latency: Sequence[float] = FAST,
    scores: Sequence[float] = CHURN_SCORES,
) -> TrackWindow:
    """A track that served ``requests`` with latencies and scores spread as the shares given."""
    return TrackWindow(
        version=version,
        requests=requests,
        server_errors=errors,
        latency=histogram(LATENCY_BOUNDS_S, scaled(latency, requests) if requests else []),
        predictions=histogram(PREDICTION_BOUNDS, scaled(scores, requests) if requests else []),
    )


def stable_track(requests: float = 9000, errors: float = 9) -> TrackWindow:
    return track("1", requests=requests, errors=errors)


def judged(
    canary: TrackWindow,
    stable: TrackWindow | None,
    policy: CanarySettings = POLICY,
    min_requests: int = MIN_REQUESTS,
    windows: int = 1,
) -> Verdict:
    measurement = Measurement(window_s=300.0, canary=canary, stable=stable)
    return judge(measurement, policy, min_requests, windows)


def check(verdict: Verdict, name: str) -> Check:
    return next(check for check in verdict.checks if check.name == name)


def outcomes(verdict: Verdict) -> dict[str, str]:
    return {check.name: check.outcome for check in verdict.checks}


# --- statistics ----------------------------------------------------------------------------

SMALL_BOUNDS = (0.1, 0.2, 0.4, math.inf)


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.5, 0.1 + 0.1 * 10 / 20),  # rank 20 in (0.1, 0.2]: 10 of its 20
        (0.25, 0.1),  # rank 10 is the top of the first bucket
        (0.1, 0.1 * 4 / 10),  # the first bucket starts at 0
        (0.9, 0.2 + 0.2 * 6 / 10),  # rank 36 in (0.2, 0.4]: 6 of its 10
        (1.0, 0.4),
    ],
)
def test_quantile_interpolates_inside_the_bucket_as_prometheus(q: float, expected: float) -> None:
    # Given 10, 20 and 10 observations in (0, 0.1], (0.1, 0.2] and (0.2, 0.4]
    latency = Histogram(SMALL_BOUNDS, (10, 30, 40, 40))
    # Then
    assert quantile(latency, q) == pytest.approx(expected)


def test_a_quantile_in_the_inf_bucket_is_the_largest_finite_bound() -> None:
    # Given 10 of 50 observations above the last finite bound (0.4)
    latency = Histogram(SMALL_BOUNDS, (10, 30, 40, 50))
    # When / then: the rank 45 is past 40, so Prometheus answers 0.4
    assert quantile(latency, 0.9) == 0.4
    assert quantile(latency, 0.8) == pytest.approx(0.4)  # rank 40: top of (0.2, 0.4]


@pytest.mark.parametrize(
    "latency",
    [
        Histogram(SMALL_BOUNDS, (0, 0, 0, 0)),
        Histogram(),  # only +Inf: no finite bound to interpolate (NaN in Prometheus)
        Histogram((math.inf,), (12.0,)),
    ],
)
def test_quantile_of_an_empty_histogram_is_none(latency: Histogram) -> None:
    assert quantile(latency, 0.99) is None


def test_quantile_with_a_first_bound_at_or_below_zero_returns_that_bound() -> None:
    latency = Histogram((-1.0, 1.0, math.inf), (5, 10, 10))
    assert quantile(latency, 0.2) == -1.0
    assert quantile(latency, 0.6) == pytest.approx(-0.6)  # rank 6 in (-1, 1]: 1 of its 5


def test_quantile_makes_cumulative_counts_monotonic_first() -> None:
    # Given a dip from 10 to 8 (a counter reset seen in one bucket): Prometheus reads it as 10
    latency = Histogram((1.0, 2.0, 3.0, math.inf), (10, 8, 20, 20))
    # Then rank 15 falls 5 into the 10 observations of (2, 3], not 7 into 12
    assert quantile(latency, 0.75) == pytest.approx(2.5)


@pytest.mark.parametrize("q", [-0.01, 1.01])
def test_quantile_outside_zero_one_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="within"):
        quantile(Histogram(SMALL_BOUNDS, (1, 2, 3, 4)), q)


@pytest.mark.parametrize(
    "malformed",
    [
        Histogram((0.1, 0.2), (1, 2)),  # no +Inf bucket
        Histogram((0.2, 0.1, math.inf), (1, 2, 3)),  # bounds descending
        Histogram((0.1, math.inf), (1, 2, 3)),  # one count too many
    ],
)
def test_a_malformed_histogram_is_refused(malformed: Histogram) -> None:
    with pytest.raises(ValueError, match="bound"):
        bucket_counts(malformed)


def test_bucket_counts_are_the_differences_of_the_cumulative_counts() -> None:
    assert bucket_counts(Histogram(SMALL_BOUNDS, (10, 30, 40, 55))) == (10, 20, 10, 15)


def test_bucket_counts_clip_negative_differences_to_zero() -> None:
    # Given extrapolation noise: a cumulative count below the previous one
    counts = bucket_counts(Histogram((1.0, 2.0, 3.0, math.inf), (10, 8, 20, 19.5)))
    # Then the dips count as empty buckets, the rest as measured
    assert counts == (10, 0, 12, 0)


@pytest.mark.parametrize(
    ("errors_canary", "n_canary", "errors_stable", "n_stable"),
    [(50, 1000, 10, 1000), (4, 200, 10, 1000), (3, 250, 40, 9000), (1, 300, 9, 2700)],
)
def test_two_proportion_p_agrees_with_statsmodels(
    errors_canary: int, n_canary: int, errors_stable: int, n_stable: int
) -> None:
    _, expected = proportions_ztest(
        [errors_canary, errors_stable], [n_canary, n_stable], alternative="larger"
    )
    assert two_proportion_p(errors_canary, n_canary, errors_stable, n_stable) == pytest.approx(
        expected, rel=1e-9
    )


def test_two_proportion_p_is_one_when_neither_track_erred() -> None:
    assert two_proportion_p(0, 500, 0, 5000) == 1.0


def test_two_proportion_p_is_above_half_when_the_canary_errs_less() -> None:
    assert two_proportion_p(1, 1000, 30, 1000) > 0.99


@pytest.mark.parametrize(("errors", "requests"), [(5, 0), (-1, 10), (11, 10)])
def test_two_proportion_p_refuses_impossible_counts(errors: float, requests: float) -> None:
    with pytest.raises(ValueError, match="errors <= requests"):
        two_proportion_p(errors, requests, 1, 100)


def expanded(counts: Sequence[float]) -> np.ndarray:
    """Raw samples from per-bucket counts: the bucket index, repeated by its count."""
    return np.repeat(np.arange(len(counts)), np.asarray(counts, dtype=int))


@pytest.mark.parametrize(
    ("canary", "stable"),
    [
        ((3, 5, 0, 7, 2), (6, 4, 3, 2, 0)),  # canary slower
        ((6, 4, 3, 2, 0), (3, 5, 0, 7, 2)),  # canary faster: p near 1
        ((300, 300, 375, 25, 0), (600, 395, 5, 0, 0)),
        ((120, 70, 8, 2, 0), (600, 395, 5, 0, 0)),
        ((1, 0, 0, 0, 40), (0, 0, 30, 0, 2)),  # heavy ties
    ],
)
def test_mann_whitney_p_agrees_with_scipy_on_the_expanded_samples(
    canary: Sequence[float], stable: Sequence[float]
) -> None:
    expected = stats.mannwhitneyu(
        expanded(canary),
        expanded(stable),
        alternative="greater",
        method="asymptotic",
        use_continuity=False,
    ).pvalue
    assert mann_whitney_p(canary, stable) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(
    ("canary", "stable"),
    [((0, 0, 0), (5, 6, 7)), ((5, 6, 7), (0, 0, 0)), ((0, 9, 0), (0, 4, 0))],
)
def test_mann_whitney_p_is_one_without_a_side_or_without_variance(
    canary: Sequence[float], stable: Sequence[float]
) -> None:
    assert mann_whitney_p(canary, stable) == 1.0


def test_mann_whitney_p_refuses_counts_over_different_buckets() -> None:
    with pytest.raises(ValueError, match="same buckets"):
        mann_whitney_p((1, 2, 3), (1, 2))


def test_psi_of_identical_distributions_is_zero_whatever_the_sizes() -> None:
    assert psi((30, 20, 10, 0), (300, 200, 100, 0)) == pytest.approx(0.0, abs=1e-15)


def test_psi_of_mirrored_shares_is_ln_3() -> None:
    # (0.25 - 0.75) ln(0.25 / 0.75) + (0.75 - 0.25) ln(0.75 / 0.25) = ln 3
    assert psi((1, 3), (3, 1)) == pytest.approx(math.log(3))
    assert psi((3, 1), (1, 3)) == pytest.approx(math.log(3))


def test_psi_floors_an_empty_share_at_epsilon() -> None:
    # (1e-4 - 0.5) ln(1e-4 / 0.5) + (1 - 0.5) ln(1 / 0.5)
    expected = 0.4999 * math.log(5000) + 0.5 * math.log(2)
    assert psi((0, 4), (2, 2)) == pytest.approx(expected)
    assert psi((0, 4), (2, 2), epsilon=1e-2) == pytest.approx(
        0.49 * math.log(50) + 0.5 * math.log(2)
    )


def test_psi_needs_observations_on_both_sides() -> None:
    with pytest.raises(ValueError, match="both sides"):
        psi((0, 0), (1, 2))


def test_homogeneity_p_agrees_with_scipy_and_drops_empty_buckets() -> None:
    canary, stable = (15, 25, 0, 30, 40), (30, 20, 0, 25, 10)
    table = np.array([[15, 25, 30, 40], [30, 20, 25, 10]])
    expected = stats.chi2_contingency(table, correction=False).pvalue
    assert homogeneity_p(canary, stable) == pytest.approx(expected, rel=1e-9)


def test_homogeneity_p_of_proportional_counts_is_one() -> None:
    assert homogeneity_p((10, 20, 30), (100, 200, 300)) == pytest.approx(1.0)


def test_homogeneity_p_is_one_with_fewer_than_two_buckets_left() -> None:
    assert homogeneity_p((0, 7, 0), (0, 70, 0)) == 1.0


# --- the verdict ---------------------------------------------------------------------------


def test_a_healthy_canary_passes_every_check_with_the_numbers() -> None:
    # Given a canary at 1,000 requests with 2 errors, like a 9,000-request stable with 9
    verdict = judged(track(errors=2), stable_track())
    # Then
    assert verdict.outcome == "pass"
    assert set(outcomes(verdict).values()) == {"pass"}
    assert [c.name for c in verdict.checks] == [
        "canary_requests",
        "error_ratio",
        "p99_latency",
        "error_ratio_vs_stable",
        "p99_vs_stable",
        "predictions_vs_stable",
    ]
    assert check(verdict, "error_ratio").value == pytest.approx(0.002)
    assert check(verdict, "p99_latency").value == pytest.approx(FAST_P99_MS)
    assert check(verdict, "error_ratio_vs_stable").limit == pytest.approx(0.001 + 0.005)
    assert check(verdict, "p99_vs_stable").limit == pytest.approx(FAST_P99_MS * 1.2 + 5)
    assert check(verdict, "predictions_vs_stable").value == pytest.approx(0.0, abs=1e-12)
    assert verdict.reasons[0].startswith("all 6 checks passed: 1,000 canary requests")
    assert "canary error ratio 0.2% <= 1% (2 of 1,000 requests)" in verdict.reasons[0]
    assert "canary p99 9.9 ms <= 50 ms" in verdict.reasons[0]
    assert "stable's 0.1% + 0.5 pt = 0.6%" in verdict.reasons[0]


def test_passing_checks_run_no_test() -> None:
    verdict = judged(track(errors=2), stable_track())
    assert all(check.p_value is None for check in verdict.checks)


def test_five_percent_server_errors_fail_both_error_checks() -> None:
    # Given 50 of 1,000 canary requests answered 5xx, stable at 0.1 %
    verdict = judged(track(errors=50), stable_track())
    # Then
    assert verdict.outcome == "fail"
    errors = check(verdict, "error_ratio")
    assert (errors.outcome, errors.value, errors.limit) == ("fail", 0.05, 0.01)
    assert errors.reason == "canary error ratio 5% > 1% (50 of 1,000 requests)"
    relative = check(verdict, "error_ratio_vs_stable")
    assert relative.outcome == "fail"
    assert relative.p_value is not None and relative.p_value < 1e-10
    assert "significantly higher" in relative.reason
    assert verdict.reasons == (errors.reason, relative.reason)
    assert check(verdict, "p99_latency").outcome == "pass"


@pytest.mark.parametrize(("errors", "expected"), [(10, "pass"), (11, "fail")])
def test_the_error_ratio_limit_is_inclusive(errors: int, expected: str) -> None:
    verdict = judged(track(errors=errors), None)
    assert check(verdict, "error_ratio").outcome == expected


def test_a_canary_30_ms_slower_fails_against_stable_but_meets_the_slo() -> None:
    # Given the canary's p99 at 40 ms against stable's 9.9 ms
    verdict = judged(track(latency=SLOWER), stable_track())
    # Then it is within the absolute 50 ms...
    p99 = check(verdict, "p99_latency")
    assert p99.outcome == "pass"
    assert p99.value == pytest.approx(40.0)
    # ...but far above stable's 9.9 ms x 1.2 + 5 ms, significantly
    relative = check(verdict, "p99_vs_stable")
    assert relative.outcome == "fail"
    assert relative.value == pytest.approx(40.0)
    assert relative.limit == pytest.approx(FAST_P99_MS * 1.2 + 5)
    assert relative.p_value is not None and relative.p_value < 1e-10
    assert relative.reason.startswith("canary p99 significantly slower: 40 ms > stable's 9.9 ms")
    assert verdict.outcome == "fail"
    assert verdict.reasons == (relative.reason,)


@pytest.mark.parametrize(("late", "expected"), [(10, "pass"), (11, "fail")])
def test_the_p99_limit_is_inclusive(late: int, expected: str) -> None:
    # Given 990 requests in (25, 50] ms: the p99 is exactly 50 ms, and 1 more late is over it
    verdict = judged(track(latency=(0, 0, 0, 1000 - late, late)), None)
    assert check(verdict, "p99_latency").outcome == expected


def test_a_p99_above_the_slo_fails() -> None:
    verdict = judged(track(latency=(0, 0, 0, 100, 900)), None)
    p99 = check(verdict, "p99_latency")
    assert p99.outcome == "fail"
    assert p99.reason == f"canary p99 {p99.value:.1f} ms > 50 ms"
    assert p99.value == pytest.approx(50 + 25 * 890 / 900)


def test_shifted_predictions_fail_the_model_aware_check() -> None:
    # Given a canary that scores most customers as likely to churn
    verdict = judged(track(scores=CHURN_SCORES[::-1]), stable_track())
    # Then
    shifted = check(verdict, "predictions_vs_stable")
    assert shifted.outcome == "fail"
    assert shifted.value == pytest.approx(
        psi(scaled(CHURN_SCORES[::-1], 1000), scaled(CHURN_SCORES, 9000))
    )
    assert shifted.value is not None and shifted.value > 1.0
    assert shifted.limit == 0.2
    assert shifted.p_value is not None and shifted.p_value < 1e-10
    assert shifted.reason.startswith(
        f"predicted probabilities shifted: PSI {shifted.value:.3g} > 0.2"
    )
    assert verdict.outcome == "fail"
    assert outcomes(verdict)["error_ratio"] == "pass"


def test_too_few_canary_requests_make_every_check_inconclusive() -> None:
    # Given 50 canary requests, 10 of them 5xx and slow: every number would fail
    verdict = judged(track(requests=50, errors=10, latency=(0, 0, 0, 0, 0, 0, 1)), stable_track())
    # Then nothing passes or fails: the verdict waits for data
    assert verdict.outcome == "inconclusive"
    assert set(outcomes(verdict).values()) == {"inconclusive"}
    assert verdict.reasons[0] == (
        "50 canary requests in the window, fewer than 200: not enough to judge"
    )
    assert all(reason.startswith("too few requests to judge: ") for reason in verdict.reasons[1:])
    assert len(verdict.reasons) == 6
    # ...and still shows what it measured
    assert check(verdict, "error_ratio").value == pytest.approx(0.2)
    assert "canary error ratio 20% > 1%" in check(verdict, "error_ratio").reason
    assert check(verdict, "p99_latency").value == pytest.approx(100 + 150 * 49.5 / 50)


def test_too_few_requests_and_no_stable_are_inconclusive_too() -> None:
    verdict = judged(track(requests=0), None)
    assert verdict.outcome == "inconclusive"
    assert set(outcomes(verdict).values()) == {"inconclusive"}
    assert check(verdict, "error_ratio").value is None
    assert check(verdict, "p99_vs_stable").reason == (
        "too few requests to judge: stable served 0 requests in the window, fewer than 200: "
        "no baseline"
    )


def test_an_error_ratio_above_the_margin_but_not_significant_is_inconclusive() -> None:
    # Given 4 of 200 canary requests failing (2 %) vs 10 of 1,000 on stable (1 %, margin 1.5 %)
    policy = CanarySettings(max_error_ratio=0.05)
    verdict = judged(track(errors=4, requests=200), stable_track(1000, 10), policy)
    # Then the difference is within noise (p ~ 0.11): no verdict on it yet
    relative = check(verdict, "error_ratio_vs_stable")
    assert relative.outcome == "inconclusive"
    assert relative.p_value == pytest.approx(two_proportion_p(4, 200, 10, 1000))
    assert relative.p_value == pytest.approx(0.1146, abs=1e-4)
    assert "above the margin but not significant (p=0.11 >= 0.017)" in relative.reason
    assert verdict.outcome == "inconclusive"
    assert verdict.reasons == (relative.reason,)


def test_alpha_is_shared_by_every_test_the_promotion_can_run() -> None:
    # Given 4 steps holding up to 3 inconclusive windows each: 16 windows of 3 tests
    windows = promotion_windows(steps=4, max_inconclusive=3)
    assert windows == 16
    assert comparison_level(0.05, windows) == pytest.approx(0.05 / 48)
    # And 6 of 200 canary requests failing vs 10 of 1,000 on stable: p ~ 0.012
    canary, stable = track(errors=6, requests=200), stable_track(1000, 10)
    policy = CanarySettings(max_error_ratio=0.05)
    alone = check(judged(canary, stable, policy, windows=1), "error_ratio_vs_stable")
    shared = check(judged(canary, stable, policy, windows=windows), "error_ratio_vs_stable")
    # Then one window alone fails it (p < 0.05 / 3), the promotion's share holds it
    assert alone.p_value == shared.p_value == pytest.approx(two_proportion_p(6, 200, 10, 1000))
    assert alone.outcome == "fail"
    assert "(p=0.012 < 0.017)" in alone.reason
    assert shared.outcome == "inconclusive"
    assert "(p=0.012 >= 0.001)" in shared.reason


def test_fewer_than_one_window_is_refused() -> None:
    with pytest.raises(ValueError, match="windows must be at least 1, got 0"):
        comparison_level(0.05, 0)


def test_a_p99_above_the_margin_but_not_significant_is_inconclusive() -> None:
    # Given a canary whose p99 (25 ms) sits above stable's margin because of 2 slow requests
    verdict = judged(track(requests=200, latency=(120, 70, 8, 2)), stable_track(1000))
    relative = check(verdict, "p99_vs_stable")
    assert relative.outcome == "inconclusive"
    assert relative.value == pytest.approx(25.0)
    assert relative.p_value == pytest.approx(
        mann_whitney_p((120, 70, 8, 2), (600, 395, 5, 0)), rel=1e-9
    )
    assert relative.p_value is not None and relative.p_value > 0.05
    assert verdict.outcome == "inconclusive"


def test_a_psi_above_the_threshold_but_not_significant_is_inconclusive() -> None:
    # Given a small difference over 200 rows each, judged against a strict max_psi of 0.01
    canary_scores = (70, 40, 30, 20, 15, 10, 6, 4, 3, 2)
    stable_scores = (60, 40, 30, 20, 16, 12, 8, 6, 5, 3)
    policy = CanarySettings(max_psi=0.01)
    verdict = judged(
        track(requests=200, scores=canary_scores),
        track("1", requests=200, scores=stable_scores),
        policy,
    )
    predictions = check(verdict, "predictions_vs_stable")
    assert predictions.outcome == "inconclusive"
    pooled = pooled_buckets(canary_scores, stable_scores)
    assert predictions.value == pytest.approx(psi(*pooled))
    assert predictions.p_value == pytest.approx(homogeneity_p(*pooled))
    assert "above the margin but not significant" in predictions.reason


def test_pooled_buckets_merge_until_each_side_expects_five() -> None:
    canary = (14, 8, 4, 2, 1, 0, 0, 1, 0, 1)
    stable = (200, 120, 60, 30, 20, 10, 5, 3, 1, 1)
    merged_canary, merged_stable = pooled_buckets(canary, stable)
    assert sum(merged_canary) == sum(canary) and sum(merged_stable) == sum(stable)
    total = sum(canary) + sum(stable)
    for in_canary, in_stable in zip(merged_canary, merged_stable, strict=True):
        assert sum(canary) * (in_canary + in_stable) / total >= 5  # the smaller side's expected
    assert len(merged_canary) < len(canary)
    # enough rows everywhere: nothing is merged
    assert pooled_buckets((50, 50), (60, 40)) == ((50, 50), (60, 40))
    # too few rows to split at all: one bucket
    assert pooled_buckets((1, 1), (1, 1)) == ((2,), (2,))


def test_a_healthy_canary_with_few_rows_is_not_failed_by_empty_buckets() -> None:
    # Given 31 canary rows from the stable's distribution, two buckets empty by chance (the
    # suite's drill once rolled back a healthy canary this way: PSI 1.16, chi-square p=0.004)
    canary_scores = (14, 8, 4, 2, 1, 0, 0, 1, 0, 1)
    stable_scores = (200, 120, 60, 30, 20, 10, 5, 3, 1, 1)
    unpooled = psi(canary_scores, stable_scores)
    verdict = judged(
        track(requests=31, scores=canary_scores),
        track("1", requests=450, scores=stable_scores),
        CanarySettings(),
        min_requests=30,
    )
    predictions = check(verdict, "predictions_vs_stable")
    assert unpooled > 0.2  # bucket by bucket it would have looked shifted
    assert predictions.outcome == "pass", predictions.reason


def test_without_stable_the_relative_checks_are_skipped_and_the_canary_can_pass() -> None:
    verdict = judged(track(errors=2), None)
    assert outcomes(verdict) == {
        "canary_requests": "pass",
        "error_ratio": "pass",
        "p99_latency": "pass",
        "error_ratio_vs_stable": "skipped",
        "p99_vs_stable": "skipped",
        "predictions_vs_stable": "skipped",
    }
    assert verdict.outcome == "pass"
    assert verdict.reasons[0].startswith("3 of 6 checks passed: ")
    assert (
        "predictions_vs_stable skipped (stable served 0 requests in the window, fewer than 200: "
        "no baseline)"
    ) in verdict.reasons[0]


def test_a_stable_with_too_few_requests_is_no_baseline() -> None:
    verdict = judged(track(), stable_track(requests=150, errors=0))
    skipped = check(verdict, "error_ratio_vs_stable")
    assert (skipped.outcome, skipped.value, skipped.limit) == ("skipped", None, None)
    assert skipped.reason == "stable served 150 requests in the window, fewer than 200: no baseline"


def test_predictions_are_skipped_when_a_track_scored_no_rows() -> None:
    silent = TrackWindow("1", 9000, 9, histogram(LATENCY_BOUNDS_S, scaled(FAST, 9000)), Histogram())
    verdict = judged(track(), silent)
    skipped = check(verdict, "predictions_vs_stable")
    assert skipped.outcome == "skipped"
    assert skipped.reason == "stable scored no rows in the window: no comparison"
    assert verdict.outcome == "pass"


def test_a_canary_without_latency_observations_is_inconclusive() -> None:
    blind = TrackWindow(
        "2", 1000, 0, Histogram(), histogram(PREDICTION_BOUNDS, scaled(CHURN_SCORES, 1000))
    )
    verdict = judged(blind, stable_track())
    assert outcomes(verdict)["p99_latency"] == "inconclusive"
    assert outcomes(verdict)["p99_vs_stable"] == "inconclusive"
    assert verdict.outcome == "inconclusive"


def test_latency_buckets_that_differ_between_versions_are_compared_on_the_shared_bounds() -> None:
    # Given a canary version that dropped the 75 ms bucket, 30 ms slower than stable
    coarse = tuple(bound for bound in LATENCY_BOUNDS_S if bound != 0.075)
    canary = TrackWindow(
        "2",
        1000,
        0,
        histogram(coarse, (0, 0, 0, 400, 600)),
        histogram(PREDICTION_BOUNDS, scaled(CHURN_SCORES, 1000)),
    )
    verdict = judged(canary, stable_track(1000, 1))
    # Then the test runs on the coarser buckets both have
    relative = check(verdict, "p99_vs_stable")
    assert relative.outcome == "fail"
    assert relative.p_value == pytest.approx(
        mann_whitney_p((0, 0, 0, 400, 600, 0), (600, 395, 5, 0, 0, 0)), rel=1e-9
    )


def test_min_requests_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="min_requests"):
        judged(track(), None, min_requests=0)


def test_more_errors_than_requests_is_refused() -> None:
    with pytest.raises(ValueError, match="at most as many errors as requests"):
        judged(track(requests=300, errors=301), None)


def test_error_verdict_carries_the_reason_and_no_checks() -> None:
    verdict = error_verdict("Prometheus at http://localhost:9090 did not answer")
    assert verdict.outcome == "error"
    assert verdict.checks == ()
    assert verdict.reasons == ("Prometheus at http://localhost:9090 did not answer",)


def random_histogram(rng: np.random.Generator, bounds: Sequence[float], total: float) -> Histogram:
    counts = rng.multinomial(int(total), rng.dirichlet(np.ones(len(bounds))))
    return histogram(bounds, [float(count) for count in counts])


def random_track(rng: np.random.Generator, version: str, requests: int) -> TrackWindow:
    return TrackWindow(
        version=version,
        requests=float(requests),
        server_errors=float(rng.integers(0, requests + 1)),
        latency=random_histogram(rng, LATENCY_BOUNDS_S, requests),
        predictions=random_histogram(rng, PREDICTION_BOUNDS, requests * rng.uniform(0.5, 3)),
    )


@pytest.mark.parametrize("seed", range(25))
def test_a_verdict_is_never_pass_nor_fail_below_min_requests(seed: int) -> None:
    # Given any canary window short of min_requests, against any stable or none
    rng = np.random.default_rng(seed)
    min_requests = int(rng.integers(1, 1000))
    canary = random_track(rng, "2", int(rng.integers(0, min_requests)))
    stable = None if rng.random() < 0.3 else random_track(rng, "1", int(rng.integers(0, 10_000)))
    policy = CanarySettings(
        max_error_ratio=float(rng.uniform(0, 0.2)),
        max_p99_ms=float(rng.uniform(1, 500)),
        max_psi=float(rng.uniform(0.01, 1)),
    )
    # When
    verdict = judged(canary, stable, policy, min_requests)
    # Then
    assert verdict.outcome == "inconclusive"
    assert set(outcomes(verdict).values()) == {"inconclusive"}

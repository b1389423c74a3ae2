"""The analysis' reading side: Prometheus' HTTP API -> a :class:`~steps.canary.judge.Measurement`.

Three instant queries per check, each over the analysis window and grouped by ``track`` and
``model_version`` (the scrape's target labels, so a track restarted with another version never
mixes the two): the prediction requests by status code, the request-duration buckets and the
predicted-probability buckets (PromQL in :mod:`steps.platform.slo`). The judge
(:mod:`steps.canary.judge`) decides on the numbers; nothing here decides.

A Prometheus that cannot be reached, answers an error or something that is not its API raises
:class:`AnalysisError`: the promotion counts it as an ``error`` outcome (retried with backoff,
then rolled back), never as "no data".
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any, Protocol

import httpx

from steps.canary.judge import Histogram, Measurement, TrackWindow, quantile
from steps.canary.record import Point, TrackSummary
from steps.platform import slo

HTTP_TIMEOUT_S = 5.0


class AnalysisError(Exception):
    """Prometheus could not be queried (unreachable, an error answer, a malformed answer)."""


class MetricsSource(Protocol):
    """Where the analysis reads metrics: Prometheus' HTTP API (or anything answering alike)."""

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate an instant query; return the result vector.

        Raises:
            AnalysisError: when the query cannot be answered.
        """
        ...

    def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """Evaluate a range query; return the result matrix.

        Raises:
            AnalysisError: when the query cannot be answered.
        """
        ...


class PrometheusAPI:
    """Prometheus' HTTP API (``/api/v1/query``, ``/api/v1/query_range``) at ``base_url``."""

    def __init__(self, base_url: str, timeout_s: float = HTTP_TIMEOUT_S) -> None:
        """Bind to ``base_url`` (e.g. ``http://prometheus:9090``); nothing is sent yet."""
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate an instant query (see :class:`MetricsSource`)."""
        return self._get("/api/v1/query", {"query": promql})

    def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        """Evaluate a range query (see :class:`MetricsSource`)."""
        params = {"query": promql, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": step_s}
        return self._get("/api/v1/query_range", params)

    def _get(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        url = f"{self.base_url}{path}"
        try:
            response = httpx.get(url, params=params, timeout=self.timeout_s)
            body = response.json()
        except httpx.HTTPError as err:
            raise AnalysisError(f"Prometheus at {self.base_url} not reachable: {err}") from err
        except ValueError as err:
            raise AnalysisError(
                f"Prometheus at {self.base_url} answered {response.status_code} with no JSON "
                f"(is it Prometheus' HTTP API?): {response.text[:200]!r}"
            ) from err
        if response.status_code != 200 or body.get("status") != "success":
            error = body.get("error", body) if isinstance(body, dict) else body
            raise AnalysisError(
                f"Prometheus at {self.base_url} refused {params['query']!r} "
                f"({response.status_code}): {error}"
            )
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def window(seconds: float) -> str:
    """A PromQL range of at least ``seconds`` (whole seconds, rounded up)."""
    return f"{max(1, math.ceil(seconds))}s"


def measure(
    source: MetricsSource, canary_version: str, stable_version: str | None, window_s: float
) -> Measurement:
    """Read both tracks over the last ``window_s`` seconds.

    A track with no series in the window measured zero requests (the judge calls that
    inconclusive, never a pass).

    Raises:
        AnalysisError: when a query fails or an answer is malformed.
    """
    span = window(window_s)
    try:
        requests = _by_track(source.query(slo.window_requests(span)), "http_response_code")
        latency = _by_track(source.query(slo.window_buckets("latency", span)), "le")
        predictions = _by_track(source.query(slo.window_buckets("predictions", span)), "le")
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise AnalysisError(f"Prometheus answered a malformed vector: {err!r}") from err

    def track(name: str, version: str) -> TrackWindow:
        codes = requests.get((name, version), {})
        return TrackWindow(
            version=version,
            requests=sum(codes.values()),
            server_errors=sum(count for code, count in codes.items() if code.startswith("5")),
            latency=_histogram(latency.get((name, version), {})),
            predictions=_histogram(predictions.get((name, version), {})),
        )

    stable = track("stable", stable_version) if stable_version is not None else None
    return Measurement(window_s=window_s, canary=track("canary", canary_version), stable=stable)


def summarize(measurement: Measurement) -> dict[str, TrackSummary]:
    """Each track's headline numbers over the window, as the analysis record keeps them."""
    tracks = {"stable": measurement.stable, "canary": measurement.canary}
    summaries = {}
    for name, seen in tracks.items():
        if seen is None:
            continue
        p99 = quantile(seen.latency, 0.99)
        total = seen.predictions.cumulative[-1] if seen.predictions.cumulative else 0.0
        summaries[name] = TrackSummary(
            version=seen.version,
            requests=round(seen.requests, 1),
            request_rate=round(seen.requests / measurement.window_s, 3),
            error_ratio=seen.server_errors / seen.requests if seen.requests else None,
            p99_ms=round(p99 * 1000, 3) if p99 is not None else None,
            mean_probability=_mean_bucket(seen.predictions) if total else None,
        )
    return summaries


def series(
    source: MetricsSource, start: float, end: float, window_s: float
) -> dict[str, dict[str, list[Point]]]:
    """Each plotted metric per track over ``[start, end]`` (range queries, one point every
    quarter window), for the analysis report.

    Raises:
        AnalysisError: when a query fails.
    """
    step_s = max(1.0, window_s / 4)
    plotted: dict[str, dict[str, list[Point]]] = {}
    for metric, promql in slo.track_series(window(window_s)).items():
        tracks: dict[str, list[Point]] = {}
        for item in source.query_range(promql, start, end, step_s):
            points = [(float(t), float(v)) for t, v in item["values"] if math.isfinite(float(v))]
            tracks[item["metric"].get("track", "?")] = points
        plotted[metric] = tracks
    return plotted


def _by_track(vector: list[dict[str, Any]], label: str) -> dict[tuple[str, str], dict[str, float]]:
    """Group an instant vector by (track, model_version), then by ``label``'s value."""
    grouped: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
    for item in vector:
        metric = item["metric"]
        value = float(item["value"][1])
        key = (str(metric.get("track", "")), str(metric.get("model_version", "")))
        grouped[key][str(metric.get(label, ""))] = value if math.isfinite(value) else 0.0
    return grouped


def _histogram(buckets: dict[str, float]) -> Histogram:
    if not buckets:
        return Histogram()
    ordered = sorted((float(le), count) for le, count in buckets.items())
    if ordered[-1][0] != math.inf:
        ordered.append((math.inf, ordered[-1][1]))
    return Histogram(
        bounds=tuple(le for le, _ in ordered), cumulative=tuple(count for _, count in ordered)
    )


def _mean_bucket(histogram: Histogram) -> float:
    """The mean of a probability histogram from its bucket midpoints (the record's summary)."""
    total, weighted, lower = 0.0, 0.0, 0.0
    previous = 0.0
    for bound, cumulative in zip(histogram.bounds, histogram.cumulative, strict=True):
        count = max(0.0, cumulative - previous)
        upper = bound if math.isfinite(bound) else 1.0
        weighted += count * (lower + upper) / 2
        total += count
        lower, previous = upper, cumulative
    return round(weighted / total, 4) if total else 0.0

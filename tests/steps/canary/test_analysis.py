"""Reading Prometheus: instant vectors -> per-track windows; every failure is an AnalysisError.

The vectors below have the shape Prometheus' HTTP API answers (``metric`` labels and a
``[time, "value"]`` pair); a real Prometheus answers them in tests/scripts/test_canary_drill.py.
"""

from __future__ import annotations

import http.server
import math
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from steps.canary.analysis import AnalysisError, PrometheusAPI, measure, summarize, window
from steps.platform import slo
from tests.fixtures.common import free_port


def _sample(value: float, **labels: str) -> dict[str, Any]:
    return {"metric": labels, "value": [1796000000.0, repr(value)]}


class ScriptedSource:
    """Answers each of the analysis' three queries with a fixed vector; records the queries."""

    def __init__(self, requests: list[Any], latency: list[Any], predictions: list[Any]) -> None:
        self.answers = {"requests": requests, "latency": latency, "predictions": predictions}
        self.queries: list[str] = []

    def query(self, promql: str) -> list[dict[str, Any]]:
        self.queries.append(promql)
        if "loopline_prediction_probability" in promql:
            return self.answers["predictions"]
        if "duration_seconds_bucket" in promql:
            return self.answers["latency"]
        return self.answers["requests"]

    def query_range(
        self, promql: str, start: float, end: float, step_s: float
    ) -> list[dict[str, Any]]:
        raise AssertionError("not used")


def test_measure_groups_by_track_and_version_and_counts_5xx_only() -> None:
    requests = [
        _sample(95.0, track="canary", model_version="2", http_response_code="200"),
        _sample(3.0, track="canary", model_version="2", http_response_code="400"),
        _sample(2.0, track="canary", model_version="2", http_response_code="503"),
        _sample(900.0, track="stable", model_version="1", http_response_code="200"),
        # the previous canary version's series in the same window is not this canary's
        _sample(50.0, track="canary", model_version="9", http_response_code="500"),
    ]
    latency = [
        _sample(90.0, track="canary", model_version="2", le="0.01"),
        _sample(100.0, track="canary", model_version="2", le="+Inf"),
        _sample(900.0, track="stable", model_version="1", le="+Inf"),
    ]
    predictions = [_sample(100.0, track="canary", model_version="2", le="1.0")]
    source = ScriptedSource(requests, latency, predictions)

    measured = measure(source, "2", "1", 12.0)

    assert (measured.canary.requests, measured.canary.server_errors) == (100.0, 2.0)
    assert measured.canary.latency.bounds == (0.01, math.inf)
    assert measured.canary.latency.cumulative == (90.0, 100.0)
    assert measured.canary.predictions.bounds == (1.0, math.inf)  # +Inf added when absent
    assert measured.stable is not None and measured.stable.requests == 900.0
    assert measured.stable.predictions.cumulative == (0.0,)  # no series: empty
    assert all("[12s]" in promql for promql in source.queries)
    assert source.queries[0] == slo.window_requests("12s")


def test_no_series_is_zero_requests_and_no_stable_is_none() -> None:
    measured = measure(ScriptedSource([], [], []), "2", None, 7.5)
    assert measured.canary.requests == 0.0 and measured.stable is None
    assert window(7.5) == "8s"


def test_a_malformed_vector_is_an_analysis_error() -> None:
    broken = [{"metric": {"track": "canary"}, "value": [0, "not-a-number"]}]
    with pytest.raises(AnalysisError, match="malformed"):
        measure(ScriptedSource(broken, [], []), "2", "1", 10.0)


def test_summarize_gives_the_records_numbers() -> None:
    requests = [
        _sample(98.0, track="canary", model_version="2", http_response_code="200"),
        _sample(2.0, track="canary", model_version="2", http_response_code="500"),
    ]
    latency = [
        _sample(0.0, track="canary", model_version="2", le="0.01"),
        _sample(100.0, track="canary", model_version="2", le="0.05"),
        _sample(100.0, track="canary", model_version="2", le="+Inf"),
    ]
    predictions = [
        _sample(50.0, track="canary", model_version="2", le="0.1"),
        _sample(100.0, track="canary", model_version="2", le="0.2"),
    ]
    summary = summarize(measure(ScriptedSource(requests, latency, predictions), "2", None, 10.0))
    canary = summary["canary"]
    assert (canary.requests, canary.request_rate, canary.error_ratio) == (100.0, 10.0, 0.02)
    assert canary.p99_ms == pytest.approx(49.6)  # Prometheus' interpolation: 10 + 0.99 x 40
    assert canary.mean_probability == pytest.approx(0.1)  # bucket midpoints 0.05 and 0.15
    assert "stable" not in summary


@pytest.fixture
def not_prometheus() -> Iterator[str]:
    """An HTTP server that answers every GET with an HTML page (a proxy's login, say)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>sign in</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_an_unreachable_prometheus_is_an_analysis_error_naming_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(AnalysisError, match=f"Prometheus at {url} not reachable"):
        PrometheusAPI(url, timeout_s=2).query("up")


def test_an_answer_that_is_not_prometheus_is_an_analysis_error(not_prometheus: str) -> None:
    with pytest.raises(AnalysisError, match="no JSON"):
        PrometheusAPI(not_prometheus).query("up")

"""The serving SLOs in PromQL, defined once: recording rules, alerts, the dashboard's queries.

Every expression here reads what the model servers expose on ``/metrics`` (BentoML 1.4's
``bentoml_service_request_total`` and ``bentoml_service_request_duration_seconds`` and the
service's own ``loopline_batch_requests`` histogram, ``serving/service.py``) plus two target labels
the scrape adds to every series: ``track`` (``stable`` or ``canary``) and ``model_version``. On a
cluster the PodMonitor in ``k8s/serving/base/`` derives them from the pod labels; the local stand-in
(``loopline stack``) sets them in its scrape configuration.

Three consumers share these definitions, so they can never disagree:

- ``make render`` writes :func:`prometheus_rule` to ``k8s/serving/base/prometheus-rule.yaml``
  (Prometheus Operator) and ``make render-check`` fails when the committed copy differs;
- the local stand-in writes :func:`rules_file` to a file its Prometheus loads (``rule_files``);
- the canary promotion queries the expressions themselves (:func:`error_ratio`,
  :func:`latency_quantile`, :func:`request_rate`) with its own window and :class:`SloPolicy`.

The Grafana dashboard (``k8s/serving/base/grafana-dashboard.json``) queries the recorded names;
:func:`dashboard_queries` lists its queries so a test can evaluate them against a real Prometheus.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

TRACK_SELECTOR = 'track=~"stable|canary"'
"""Only series scraped from a Loopline track (the scrape sets ``track``)."""
REQUESTS_TOTAL = "bentoml_service_request_total"
REQUEST_DURATION_BUCKET = "bentoml_service_request_duration_seconds_bucket"
BATCH_REQUESTS = "loopline_batch_requests"
PREDICTIONS = "loopline_prediction_probability"
"""The service's histogram of predicted probabilities (one observation per scored row)."""
PREDICT_ENDPOINTS = 'endpoint=~"/predict|/predict_batch"'
"""The prediction endpoints: what the canary analysis counts (not /metadata, not probes)."""
SERVER_ERROR_CODES = 'http_response_code=~"5.."'
"""BentoML counts 4xx and 5xx as separate codes; a client's bad request is not a server error."""
RECORD_WINDOW = "1m"
"""Four samples at the cluster's 15 s scrape, sixty at the local stand-in's 1 s."""
RULE_GROUP = "loopline-serving"
PROMETHEUS_RULE_NAME = "loopline-slo"
SERVING_NAMESPACE = "loopline-serving"
DASHBOARD_PATH = (
    Path(__file__).resolve().parents[2] / "k8s" / "serving" / "base" / "grafana-dashboard.json"
)

REQUEST_RATE = f"track:loopline_requests:rate{RECORD_WINDOW}"
ERROR_RATIO = f"track:loopline_server_errors:ratio_rate{RECORD_WINDOW}"
LATENCY_QUANTILES = {0.5: "p50", 0.95: "p95", 0.99: "p99"}
ENDPOINT_REQUEST_RATE = f"track_endpoint:loopline_requests:rate{RECORD_WINDOW}"
ENDPOINT_ERROR_RATIO = f"track_endpoint:loopline_server_errors:ratio_rate{RECORD_WINDOW}"
ENDPOINT_LATENCY_P99 = f"track_endpoint:loopline_request_duration_seconds:p99_rate{RECORD_WINDOW}"
BATCH_BUCKET_RATE = f"track_le:loopline_batch_requests_bucket:rate{RECORD_WINDOW}"
BATCH_MEAN = f"track:loopline_batch_requests:mean_rate{RECORD_WINDOW}"
REPLICAS = "track_model_version:loopline_replicas:count"
CANARY_SHARE = f"route:loopline_canary_traffic_share:ratio_rate{RECORD_WINDOW}"


def latency_record(quantile: float) -> str:
    """Return the recorded name of the per-track latency ``quantile`` (0.5, 0.95 or 0.99).

    Raises:
        KeyError: for a quantile that is not recorded.
    """
    return (
        f"track:loopline_request_duration_seconds:{LATENCY_QUANTILES[quantile]}_rate{RECORD_WINDOW}"
    )


@dataclass(frozen=True)
class SloPolicy:
    """The serving SLO: what the alerts fire on and what a canary must meet to be promoted.

    Attributes:
        max_error_ratio: server errors (5xx) over all requests; 0.01 is 1 %.
        max_p99_ms: the 99th percentile request latency; the bucket boundaries of
            ``serving/service.py`` include 50 ms so the default is resolved exactly.
        min_request_rate_rps: below this rate a track is not judged (too few requests for a
            ratio or a p99 to mean anything), so an idle service pages nobody.
        alert_for: how long a breach lasts before the alert fires.
    """

    max_error_ratio: float = 0.01
    max_p99_ms: float = 50.0
    min_request_rate_rps: float = 1.0
    alert_for: str = "5m"


def _by(labels: str) -> str:
    return f"sum by ({labels})"


def request_rate(window: str = RECORD_WINDOW, by: str = "track") -> str:
    """Return the PromQL of the request rate (req/s) per ``by`` labels over ``window``."""
    return f"{_by(by)} (rate({REQUESTS_TOTAL}{{{TRACK_SELECTOR}}}[{window}]))"


def error_ratio(window: str = RECORD_WINDOW, by: str = "track") -> str:
    """Return the PromQL of the server-error ratio (5xx / all, 0..1) per ``by`` labels.

    A track that has served no 5xx yet has no such series, and a ratio over a missing series
    returns nothing: ``or <all> * 0`` makes it 0 instead. A track with no requests at all stays
    absent (0/0), which :func:`alerts` and the promotion treat as "not enough traffic".
    """
    errors = (
        f"{_by(by)} (rate({REQUESTS_TOTAL}{{{TRACK_SELECTOR},{SERVER_ERROR_CODES}}}[{window}]))"
    )
    total = request_rate(window, by)
    return f"({errors} or {total} * 0) / {total}"


def latency_quantile(quantile: float, window: str = RECORD_WINDOW, by: str = "track") -> str:
    """Return the PromQL of a request-latency quantile in seconds per ``by`` labels."""
    buckets = f"rate({REQUEST_DURATION_BUCKET}{{{TRACK_SELECTOR}}}[{window}])"
    return f"histogram_quantile({quantile}, {_by(by + ', le')} ({buckets}))"


def window_requests(window: str) -> str:
    """Return the PromQL of the prediction requests per track, version and status code over
    ``window`` (counts, not rates): the canary analysis' error ratios and request counts."""
    selector = f"{TRACK_SELECTOR},{PREDICT_ENDPOINTS}"
    return (
        f"sum by (track, model_version, http_response_code) "
        f"(increase({REQUESTS_TOTAL}{{{selector}}}[{window}]))"
    )


def window_buckets(histogram: str, window: str) -> str:
    """Return the PromQL of a histogram's bucket counts per track and version over ``window``.

    ``histogram`` is ``latency`` (request duration, prediction endpoints) or ``predictions``
    (predicted probabilities).

    Raises:
        KeyError: for another histogram name.
    """
    metric, selector = {
        "latency": (REQUEST_DURATION_BUCKET, f"{TRACK_SELECTOR},{PREDICT_ENDPOINTS}"),
        "predictions": (f"{PREDICTIONS}_bucket", TRACK_SELECTOR),
    }[histogram]
    return f"sum by (track, model_version, le) (increase({metric}{{{selector}}}[{window}]))"


def track_series(window: str) -> dict[str, str]:
    """Return the PromQL per track of each metric the canary analysis report plots over time
    (``request_rate``, ``error_ratio``, ``p99_ms``, ``mean_probability``), over ``window``."""
    selector = f"{TRACK_SELECTOR},{PREDICT_ENDPOINTS}"
    requests = f"sum by (track) (rate({REQUESTS_TOTAL}{{{selector}}}[{window}]))"
    errors = f"sum by (track) (rate({REQUESTS_TOTAL}{{{selector},{SERVER_ERROR_CODES}}}[{window}]))"
    buckets = f"sum by (track, le) (rate({REQUEST_DURATION_BUCKET}{{{selector}}}[{window}]))"
    predictions = f"rate({PREDICTIONS}_{{part}}{{{{{TRACK_SELECTOR}}}}}[{window}])"
    return {
        "request_rate": requests,
        "error_ratio": f"({errors} or {requests} * 0) / {requests}",
        "p99_ms": f"histogram_quantile(0.99, {buckets}) * 1000",
        "mean_probability": f"sum by (track) ({predictions.format(part='sum')}) / "
        f"sum by (track) ({predictions.format(part='count')})",
    }


def recording_rules() -> list[dict[str, str]]:
    """Return the recording rules (``record``/``expr``), in evaluation order."""
    window = RECORD_WINDOW

    def batches(suffix: str) -> str:
        return f"rate({BATCH_REQUESTS}_{suffix}{{{TRACK_SELECTOR}}}[{window}])"

    rules = [
        {"record": REQUEST_RATE, "expr": request_rate()},
        {"record": ERROR_RATIO, "expr": error_ratio()},
        *(
            {"record": latency_record(quantile), "expr": latency_quantile(quantile)}
            for quantile in LATENCY_QUANTILES
        ),
        {"record": ENDPOINT_REQUEST_RATE, "expr": request_rate(by="track, endpoint")},
        {"record": ENDPOINT_ERROR_RATIO, "expr": error_ratio(by="track, endpoint")},
        {"record": ENDPOINT_LATENCY_P99, "expr": latency_quantile(0.99, by="track, endpoint")},
        {
            "record": BATCH_BUCKET_RATE,
            "expr": f"sum by (track, le) ({batches('bucket')})",
        },
        {
            "record": BATCH_MEAN,
            "expr": f"sum by (track) ({batches('sum')}) / sum by (track) ({batches('count')})",
        },
        # `up` carries every target label, one series per scraped pod: this counts the pods of
        # each track Prometheus reaches and names the model version each one serves.
        {
            "record": REPLICAS,
            "expr": f"count by (track, model_version) (up{{{TRACK_SELECTOR}}} == 1)",
        },
        # The share the canary actually receives: what the route's weight achieved, the same on
        # every Gateway implementation and on the local HAProxy.
        {
            "record": CANARY_SHARE,
            "expr": f'(sum(rate({REQUESTS_TOTAL}{{track="canary"}}[{window}])) or vector(0)) / '
            f"sum(rate({REQUESTS_TOTAL}{{{TRACK_SELECTOR}}}[{window}]))",
        },
    ]
    return rules


def alerts(policy: SloPolicy | None = None) -> list[dict[str, Any]]:
    """Return the SLO alerts: a breach on a track that also has at least the minimum traffic.

    Each expression is ``<breach> and on (track) <rate> >= <minimum>``: with too little traffic
    the right-hand side is empty, so the alert cannot fire however bad one request was.
    """
    slo = policy or SloPolicy()
    enough_traffic = f"on (track) {REQUEST_RATE} >= {slo.min_request_rate_rps:g}"
    p99_s = slo.max_p99_ms / 1000
    return [
        {
            "alert": "LooplineErrorRatioHigh",
            "expr": f"{ERROR_RATIO} > {slo.max_error_ratio:g} and {enough_traffic}",
            "for": slo.alert_for,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Loopline {{ $labels.track }}: server errors above "
                f"{slo.max_error_ratio:.0%} of requests",
                "description": "{{ $labels.track }} answers {{ $value | humanizePercentage }} "
                f"of requests with a 5xx (SLO: <= {slo.max_error_ratio:.0%}) at >= "
                f"{slo.min_request_rate_rps:g} req/s.",
            },
        },
        {
            "alert": "LooplineLatencyP99High",
            "expr": f"{latency_record(0.99)} > {p99_s:g} and {enough_traffic}",
            "for": slo.alert_for,
            "labels": {"severity": "page"},
            "annotations": {
                "summary": "Loopline {{ $labels.track }}: p99 latency above "
                f"{slo.max_p99_ms:g} ms",
                "description": "{{ $labels.track }} p99 is {{ $value | humanizeDuration }} "
                f"(SLO: <= {slo.max_p99_ms:g} ms) at >= {slo.min_request_rate_rps:g} req/s.",
            },
        },
    ]


def rules_file(policy: SloPolicy | None = None) -> dict[str, Any]:
    """Return a plain Prometheus rules file (``{"groups": [...]}``) with every rule.

    The local stand-in dumps it as YAML into the file its Prometheus loads through
    ``rule_files``; :func:`prometheus_rule` wraps the same groups for the Prometheus Operator.
    """
    return {
        "groups": [
            {
                "name": RULE_GROUP,
                "rules": [*recording_rules(), *alerts(policy)],
            }
        ]
    }


def prometheus_rule(policy: SloPolicy | None = None) -> dict[str, Any]:
    """Return the Prometheus Operator ``PrometheusRule`` holding :func:`rules_file`'s groups.

    Its ``prometheus: loopline`` label is what a Prometheus resource's ``ruleSelector`` matches
    (see k8s/README.md).
    """
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": PROMETHEUS_RULE_NAME,
            "labels": {"app.kubernetes.io/name": "loopline", "prometheus": "loopline"},
        },
        "spec": rules_file(policy),
    }


def dashboard_queries(path: Path = DASHBOARD_PATH) -> list[str]:
    """Return every PromQL query of the Grafana dashboard at ``path``, in panel order.

    Grafana's ``$__rate_interval`` and ``$__interval`` become :data:`RECORD_WINDOW` so the
    queries run as they are against a plain Prometheus.

    Raises:
        FileNotFoundError: when the dashboard is missing.
        ValueError: when it is not JSON.
    """
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    queries: list[str] = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                for variable in ("$__rate_interval", "$__interval"):
                    expr = expr.replace(variable, RECORD_WINDOW)
                queries.append(expr)
    return queries

"""Tests of steps/platform/slo.py and what is rendered from it: rules, alerts, the dashboard.

``promtool`` (Debian's ``prometheus`` package) checks the rules file and runs rule unit tests on
synthetic series, so the expressions are evaluated by Prometheus itself, not read as text.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import yaml

from pipelines.render import MANIFEST_HEADER, MANIFESTS, render_manifests
from scripts.kustomize_build import build
from steps.platform import slo
from tests.fixtures.common import require_tool

REPO = Path(__file__).resolve().parents[2]
RULE_FILE = REPO / "k8s" / "serving" / "base" / "prometheus-rule.yaml"
RECORD_NAME = re.compile(r"\b[a-z_]+:[a-z0-9_]+:[a-z0-9_]+\b")


def _write_rules(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(slo.rules_file(), sort_keys=False))
    return path


def test_the_committed_prometheus_rule_is_the_codes_rendering() -> None:
    text = RULE_FILE.read_text()

    assert "serving/base/prometheus-rule.yaml" in MANIFESTS
    assert text == render_manifests()["serving/base/prometheus-rule.yaml"]
    assert text.startswith(MANIFEST_HEADER)
    assert yaml.safe_load(text) == slo.prometheus_rule()
    assert yaml.safe_load(text)["spec"] == slo.rules_file()


def test_the_built_base_ships_the_rule_in_the_serving_namespace() -> None:
    built = {(d["kind"], d["metadata"]["name"]): d for d in build(RULE_FILE.parent)}

    rule = built[("PrometheusRule", slo.PROMETHEUS_RULE_NAME)]
    assert rule["metadata"]["namespace"] == slo.SERVING_NAMESPACE
    assert rule["spec"] == slo.rules_file()


def test_promtool_accepts_the_rules_file(tmp_path: Path) -> None:
    promtool = require_tool("promtool")
    path = _write_rules(tmp_path)
    rule_count = len(slo.recording_rules()) + len(slo.alerts())

    done = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {rule_count} rules found" in done.stdout + done.stderr


def _series(name: str, values: str, **labels: str) -> dict[str, str]:
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    return {"series": f"{name}{{{rendered}}}", "values": values}


def _counter(per_s: float, *, scrapes: int = 60, step_s: int = 15) -> str:
    return f"0+{per_s * step_s:g}x{scrapes}"


def _unit_tests(rules: Path) -> dict[str, Any]:
    """Synthetic traffic over 15 minutes, scraped every 15 s.

    First group: the canary answers 9.5 req/s with 200 and 0.5 req/s with 500 (5 % errors),
    every request between 50 and 100 ms; stable answers 20 req/s, all 200 under 5 ms, and has
    no 5xx series at all. Second group: an idle canary, 0.2 req/s, half of them errors, all slow.
    """
    total = "bentoml_service_request_total"
    bucket = "bentoml_service_request_duration_seconds_bucket"
    canary = {"track": "canary", "endpoint": "/predict"}
    stable = {"track": "stable", "endpoint": "/predict"}
    busy_series = [
        _series(total, _counter(9.5), http_response_code="200", **canary),
        _series(total, _counter(0.5), http_response_code="500", **canary),
        _series(total, _counter(20), http_response_code="200", **stable),
        *(_series(bucket, _counter(0), le=le, **canary) for le in ("0.005", "0.05")),
        *(_series(bucket, _counter(10), le=le, **canary) for le in ("0.1", "+Inf")),
        *(
            _series(bucket, _counter(20), le=le, **stable)
            for le in ("0.005", "0.05", "0.1", "+Inf")
        ),
        _series("up", "1x60", track="stable", model_version="3"),
        _series("up", "1x60", track="stable", model_version="3", instance="b"),
        _series("up", "1x60", track="canary", model_version="4"),
        _series("loopline_batch_requests_sum", _counter(10), track="canary"),
        _series("loopline_batch_requests_count", _counter(4), track="canary"),
    ]
    idle_series = [
        _series(total, _counter(0.1), http_response_code="200", **canary),
        _series(total, _counter(0.1), http_response_code="500", **canary),
        *(_series(bucket, _counter(0), le=le, **canary) for le in ("0.005", "0.05", "0.1")),
        _series(bucket, _counter(0.2), le="+Inf", **canary),
    ]
    at = "10m"

    def sample(record: str, value: float, **labels: str) -> dict[str, Any]:
        rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        return {"labels": f"{record}{{{rendered}}}", "value": value}

    return {
        "rule_files": [str(rules)],
        "evaluation_interval": "15s",
        "tests": [
            {
                "interval": "15s",
                "input_series": busy_series,
                "promql_expr_test": [
                    {
                        "expr": slo.REQUEST_RATE,
                        "eval_time": at,
                        "exp_samples": [
                            sample(slo.REQUEST_RATE, 10, track="canary"),
                            sample(slo.REQUEST_RATE, 20, track="stable"),
                        ],
                    },
                    {
                        # stable has no 5xx series at all: 0, not absent.
                        "expr": slo.ERROR_RATIO,
                        "eval_time": at,
                        "exp_samples": [
                            sample(slo.ERROR_RATIO, 0.05, track="canary"),
                            sample(slo.ERROR_RATIO, 0, track="stable"),
                        ],
                    },
                    {
                        "expr": f"round({slo.latency_record(0.99)}, 0.0001)",
                        "eval_time": at,
                        "exp_samples": [
                            {"labels": '{track="canary"}', "value": 0.0995},
                            {"labels": '{track="stable"}', "value": 0.005},
                        ],
                    },
                    {
                        "expr": slo.REPLICAS,
                        "eval_time": at,
                        "exp_samples": [
                            sample(slo.REPLICAS, 2, track="stable", model_version="3"),
                            sample(slo.REPLICAS, 1, track="canary", model_version="4"),
                        ],
                    },
                    {
                        "expr": slo.BATCH_MEAN,
                        "eval_time": at,
                        "exp_samples": [sample(slo.BATCH_MEAN, 2.5, track="canary")],
                    },
                    {
                        "expr": f"round({slo.CANARY_SHARE}, 0.001)",
                        "eval_time": at,
                        "exp_samples": [{"labels": "{}", "value": 0.333}],
                    },
                ],
                "alert_rule_test": [
                    {
                        "eval_time": at,
                        "alertname": alert,
                        "exp_alerts": [
                            {
                                "exp_labels": {"severity": "page", "track": "canary"},
                                "exp_annotations": annotations,
                            }
                        ],
                    }
                    for alert, annotations in _expected_annotations().items()
                ],
            },
            {
                "interval": "15s",
                "input_series": idle_series,
                "alert_rule_test": [
                    {"eval_time": at, "alertname": alert, "exp_alerts": []}
                    for alert in _expected_annotations()
                ],
            },
        ],
    }


def _expected_annotations() -> dict[str, dict[str, str]]:
    return {
        "LooplineErrorRatioHigh": {
            "summary": "Loopline canary: server errors above 1% of requests",
            "description": "canary answers 5% of requests with a 5xx (SLO: <= 1%) at >= 1 req/s.",
        },
        "LooplineLatencyP99High": {
            "summary": "Loopline canary: p99 latency above 50 ms",
            "description": "canary p99 is 99.5ms (SLO: <= 50 ms) at >= 1 req/s.",
        },
    }


def test_prometheus_evaluates_the_records_and_alerts_only_with_enough_traffic(
    tmp_path: Path,
) -> None:
    promtool = require_tool("promtool")
    rules = _write_rules(tmp_path)
    tests = tmp_path / "tests.yaml"
    tests.write_text(yaml.safe_dump(_unit_tests(rules), sort_keys=False))

    done = subprocess.run(
        [promtool, "test", "rules", str(tests)], capture_output=True, text=True, timeout=60
    )

    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr


def test_every_alert_requires_the_minimum_traffic_from_the_policy() -> None:
    policy = slo.SloPolicy(max_error_ratio=0.02, max_p99_ms=80, min_request_rate_rps=5)

    alerts = {alert["alert"]: alert for alert in slo.alerts(policy)}

    guard = f"and on (track) {slo.REQUEST_RATE} >= 5"
    assert alerts["LooplineErrorRatioHigh"]["expr"] == f"{slo.ERROR_RATIO} > 0.02 {guard}"
    assert alerts["LooplineLatencyP99High"]["expr"] == f"{slo.latency_record(0.99)} > 0.08 {guard}"
    assert {alert["for"] for alert in alerts.values()} == {"5m"}


def test_the_default_policy_is_the_canary_slo() -> None:
    policy = slo.SloPolicy()

    assert (policy.max_error_ratio, policy.max_p99_ms, policy.min_request_rate_rps) == (
        0.01,
        50.0,
        1.0,
    )


def test_the_judges_expressions_take_their_own_window() -> None:
    ratio = slo.error_ratio("5m")

    assert ratio.count("[5m]") == 3
    assert 'http_response_code=~"5.."' in ratio
    assert " or " in ratio  # a track without 5xx series gets 0, not nothing
    assert slo.latency_quantile(0.99, "2m").startswith(
        "histogram_quantile(0.99, sum by (track, le)"
    )


def test_rules_file_is_a_plain_prometheus_rules_file() -> None:
    rules_file = slo.rules_file()

    (group,) = rules_file["groups"]
    assert set(rules_file) == {"groups"}
    assert group["name"] == slo.RULE_GROUP
    records = [rule["record"] for rule in group["rules"] if "record" in rule]
    assert len(records) == len(set(records)) == 12
    assert all(
        set(rule) <= {"record", "alert", "expr", "for", "labels", "annotations"}
        for rule in group["rules"]
    )


def test_the_dashboard_queries_recorded_names_only() -> None:
    recorded = {rule["record"] for rule in slo.recording_rules()}

    queries = slo.dashboard_queries()

    used = {name for query in queries for name in RECORD_NAME.findall(query)}
    assert len(queries) == 12
    assert used <= recorded
    assert used == recorded
    assert not any("$__" in query for query in queries)


def test_dashboard_queries_replace_grafanas_interval_variables(tmp_path: Path) -> None:
    dashboard = tmp_path / "dashboard.json"
    dashboard.write_text(
        '{"panels": [{"targets": [{"expr": "rate(x[$__rate_interval])"}, {"refId": "B"}]},'
        ' {"type": "row"}]}'
    )

    assert slo.dashboard_queries(dashboard) == [f"rate(x[{slo.RECORD_WINDOW}])"]

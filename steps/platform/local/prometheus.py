"""Prometheus for the local stack: its generated configuration, reload and queries.

It scrapes each serving track every second with ``track``, ``model_name`` and ``model_version``
target labels (what the cluster's PodMonitor adds), and HAProxy's exporter, and loads the same
recording rules as the cluster's PrometheusRule (``steps.platform.slo.rules_file()``).
"""

from __future__ import annotations

from typing import Any

import httpx
import yaml

from steps.core.errors import StackError
from steps.core.settings import StackSettings
from steps.platform.base import TRACKS
from steps.platform.local import processes
from steps.platform.local.haproxy import track_port
from steps.platform.local.state import StackPaths, StackState

SERVING_JOB = "loopline"
ROUTER_JOB = "haproxy"
HTTP_TIMEOUT_S = 10.0


def config(settings: StackSettings, state: StackState, paths: StackPaths) -> dict[str, Any]:
    """Return the Prometheus configuration for ``state`` (only tracks that serve are scraped)."""
    targets = []
    for track in TRACKS:
        release = state.on(track)
        if release is None:
            continue
        labels = {
            "track": track,
            "model_name": release.model_name,
            "model_version": release.version,
        }
        targets.append(
            {"targets": [f"{settings.host}:{track_port(settings, track)}"], "labels": labels}
        )
    router = f"{settings.host}:{settings.router_metrics_port}"
    return {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(paths.rules_file)],
        "scrape_configs": [
            {"job_name": SERVING_JOB, "static_configs": targets},
            {"job_name": ROUTER_JOB, "static_configs": [{"targets": [router]}]},
        ],
    }


def write_files(
    settings: StackSettings, state: StackState, paths: StackPaths, rules: dict[str, Any]
) -> None:
    """Write ``prometheus.yml`` and ``rules.yml`` (byte-stable: sorted keys)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.rules_file.write_text(yaml.safe_dump(rules, sort_keys=True), encoding="utf-8")
    text = yaml.safe_dump(config(settings, state, paths), sort_keys=True)
    paths.prometheus_config.write_text(text, encoding="utf-8")


def base_url(settings: StackSettings) -> str:
    """Prometheus' URL."""
    return f"http://{settings.host}:{settings.prometheus_port}"


def is_ready(settings: StackSettings) -> bool:
    """True when Prometheus answers ``/-/ready`` with 200."""
    return processes.answers_ok(f"{base_url(settings)}/-/ready")


def reload(settings: StackSettings) -> None:
    """Make Prometheus re-read its configuration (``POST /-/reload``).

    Raises:
        StackError: when Prometheus cannot be reached or rejects the new configuration.
    """
    try:
        response = httpx.post(f"{base_url(settings)}/-/reload", timeout=HTTP_TIMEOUT_S)
    except httpx.TransportError as err:
        raise StackError(f"prometheus: reload failed, not reachable: {err}") from err
    if response.status_code != 200:
        raise StackError(f"prometheus: reload refused ({response.status_code}): {response.text}")


def query(settings: StackSettings, promql: str) -> list[dict[str, Any]]:
    """Evaluate an instant PromQL query; return its result vector.

    Raises:
        StackError: when Prometheus cannot be reached or refuses the query (with its error).
    """
    try:
        response = httpx.get(
            f"{base_url(settings)}/api/v1/query", params={"query": promql}, timeout=HTTP_TIMEOUT_S
        )
    except httpx.TransportError as err:
        raise StackError(f"prometheus: query failed, not reachable: {err}") from err
    body = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise StackError(f"prometheus: query {promql!r} failed: {body.get('error', body)}")
    result: list[dict[str, Any]] = body["data"]["result"]
    return result

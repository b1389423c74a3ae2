"""The local stand-in end to end, with real parts: two built bentos served by ``bentoml serve``
behind HAProxy, Prometheus scraping them, Locust sending traffic; then ``stack down``.

Two versions of the churn model are trained, gated, registered and built into a temporary state
(about 40 s); every part listens on a free loopback port.
"""

from __future__ import annotations

import collections
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from steps.core.errors import StackError
from steps.core.settings import Settings, StackSettings
from steps.platform import slo
from steps.platform.base import Release, Weights
from steps.platform.local import LocalPlatform, haproxy, processes
from tests.fixtures.common import free_port, require_tool
from tests.fixtures.training import small_settings

pytestmark = pytest.mark.integration

REQUESTS_PER_STEP = 2_000
TOLERANCE_POINTS = 3.0


@pytest.fixture(scope="module")
def releases(
    tmp_path_factory: pytest.TempPathFactory, churn_parquet: Path
) -> Iterator[tuple[Settings, Release, Release]]:
    """Settings of a state with versions 1 and 2 registered and built, and their releases."""
    from steps import build, evaluate, register, train

    root = tmp_path_factory.mktemp("stack")
    built = []
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        for depth in (4, 3):
            settings = small_settings(root / "state", churn_parquet, max_depth=depth)
            run_id = train.run(settings, pipeline_run=f"stack-{depth}").run_id
            assert evaluate.run(settings, run_id)[0].decision == "promote"
            version = register.run(settings, run_id).model_version
            result = build.run(settings, version=version, platform="linux/amd64")
            built.append(
                Release(
                    model_name=settings.model_name,
                    version=version,
                    artifact=result.archive_uri,
                    bento_tag=result.bento_tag,
                )
            )
    yield settings, built[0], built[1]


def _stack_settings(settings: Settings, traffic_rps: float) -> Settings:
    ports = {
        name: free_port()
        for name in (
            "router_port",
            "router_metrics_port",
            "prometheus_port",
            "stable_port",
            "canary_port",
        )
    }
    return settings.model_copy(
        update={"stack": StackSettings(**ports, traffic_rps=traffic_rps, start_timeout_s=90)}
    )


@pytest.fixture
def platform(releases: tuple[Settings, Release, Release]) -> Iterator[LocalPlatform]:
    """An empty stack on free ports, no Locust traffic (the split is measured alone)."""
    require_tool("haproxy")
    require_tool("prometheus")
    local = LocalPlatform(_stack_settings(releases[0], traffic_rps=0.0))
    try:
        yield local
    finally:
        local.down()


def _split(endpoint: str, rows: list[dict[str, object]]) -> collections.Counter[str]:
    counts: collections.Counter[str] = collections.Counter()
    with httpx.Client(base_url=endpoint, timeout=30) as client:
        for index in range(REQUESTS_PER_STEP):
            response = client.post("/predict", json=rows[index % len(rows)])
            response.raise_for_status()
            counts[response.json()["model_version"]] += 1
    return counts


def _served_by_server(local: LocalPlatform) -> dict[str, int]:
    """HAProxy's cumulative sessions per server of the tracks backend (``show stat``: stot)."""
    answer = haproxy.send(local.paths.admin_socket, "show stat")
    fields = [line.split(",") for line in answer.splitlines() if line.startswith("tracks,")]
    return {row[1]: int(row[7]) for row in fields if row[1] in ("stable", "canary")}


def _group_pids(local: LocalPlatform) -> list[int]:
    pids = []
    for part in ("stable", "canary", "router", "prometheus"):
        running = processes.read_pid_file(local.paths.pid_file(part))
        assert running is not None, f"{part} is not running"
        pids += processes.group_members(running.pid)
    return pids


def test_the_route_splits_traffic_as_weighted_prometheus_sees_both_tracks_and_down_stops_all(
    platform: LocalPlatform, releases: tuple[Settings, Release, Release]
) -> None:
    from scripts.loadtest import row_pool

    _, stable, canary = releases
    # Given an empty stack (router and Prometheus only), then v1 on stable and v2 on canary,
    started = time.monotonic()
    assert set(platform.up()) == {"router", "prometheus"}
    platform.roll_out("stable", stable, timeout_s=90)
    platform.roll_out("canary", canary, timeout_s=90)
    timings = platform.up()  # keeps what runs as the state asks
    print(f"\nstack start to both tracks ready: {time.monotonic() - started:.1f} s {timings}")
    assert timings == {"stable": 0.0, "canary": 0.0, "router": 0.0, "prometheus": 0.0}
    served = platform.served()
    assert (served.stable, served.canary) == (stable, canary)

    # when the canary weight moves 10 -> 30 -> 50 -> 100, the route follows within 3 points.
    rows = row_pool(seed=3, rows=100)
    # HAProxy's own per-server counters and the model_version of each answer both measure it.
    print("canary %  routed  stable  canary  routed canary %  answered canary %")
    for percent in (10, 30, 50, 100):
        platform.set_weights(Weights.canary_at(percent))
        assert platform.weights() == Weights.canary_at(percent)
        before = _served_by_server(platform)
        counts = _split(platform.endpoint(), rows)
        after = _served_by_server(platform)
        routed = {track: after[track] - before[track] for track in after}
        total = sum(routed.values())
        observed = 100 * routed["canary"] / total
        answered = 100 * counts[canary.version] / REQUESTS_PER_STEP
        print(f"{percent:>8}  {total:>6}  {routed['stable']:>6}  {routed['canary']:>6}  "
              f"{observed:>15.1f}  {answered:>17.1f}")  # fmt: skip
        assert total >= REQUESTS_PER_STEP
        assert abs(observed - percent) <= TOLERANCE_POINTS, routed
        assert abs(answered - percent) <= TOLERANCE_POINTS, counts
    assert platform.served().weights == Weights.canary_at(100)

    # Prometheus, scraping each second, returns a request rate per track with its version.
    deadline = time.monotonic() + 30
    rates: dict[str, float] = {}
    while time.monotonic() < deadline and len(rates) < 2:
        found = platform.query(slo.REQUEST_RATE)
        rates = {r["metric"]["track"]: float(r["value"][1]) for r in found}
        time.sleep(1)
    assert rates.keys() == {"stable", "canary"} and min(rates.values()) > 0, rates
    versions = platform.query('count by (track, model_version) (up{job="loopline"} == 1)')
    assert {(r["metric"]["track"], r["metric"]["model_version"]) for r in versions} == {
        ("stable", stable.version),
        ("canary", canary.version),
    }
    # Every query of the Grafana dashboard returns data from this Prometheus.
    queries = slo.dashboard_queries()
    empty = list(queries)
    while time.monotonic() < deadline + 30 and empty:
        empty = [query for query in queries if not platform.query(query)]
        time.sleep(1)
    assert len(queries) >= 10 and empty == [], empty
    for row in platform.status():
        print(f"{row.part:<10} RSS {row.rss_mb:>6.1f} MB  {row.serves}")

    # And stack down leaves no process of any part, nor any child of theirs.
    pids = _group_pids(platform)
    assert len(pids) >= 4
    # A track is one process, BentoML's worker itself (serving.launch), as in a pod.
    track = processes.read_pid_file(platform.paths.pid_file("stable"))
    assert track is not None
    assert b"serving.launch" in Path(f"/proc/{track.pid}/cmdline").read_bytes()
    assert processes.group_members(track.pid) == [track.pid]
    assert set(platform.down()) == {"stable", "canary", "router", "prometheus"}
    assert [pid for pid in pids if processes.is_alive(pid)] == []
    assert all(row.up is False for row in platform.status())


def test_a_part_that_cannot_start_is_named_with_its_log(
    releases: tuple[Settings, Release, Release],
) -> None:
    require_tool("haproxy")
    local = LocalPlatform(_stack_settings(releases[0], traffic_rps=0.0))
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", local.stack.router_port))
        taken.listen()
        try:
            with pytest.raises(StackError, match=r"(?s)router exited before it was ready.*bind"):
                local.up()
        finally:
            local.down()
    assert processes.read_pid_file(local.paths.pid_file("router")) is None

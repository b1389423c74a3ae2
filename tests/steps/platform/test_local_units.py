"""The local stack's pure parts: HAProxy configuration and runtime commands, Prometheus'
configuration, the Locust file, and ``state.json``."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import DeployError, StackError
from steps.core.settings import Settings, StackSettings
from steps.platform.base import Release, Weights
from steps.platform.local import haproxy, prometheus, traffic
from steps.platform.local.state import StackPaths, StackState, load_state, save_state
from steps.platform.local.tracks import Bento, read_bento, serve_command

STACK = StackSettings(
    router_port=18080, router_metrics_port=18404, stable_port=13001, canary_port=13002
)
V1 = Release(model_name="churn", version="1", artifact="file:///a/v1.bento", bento_tag="loopline:a")
V2 = Release(model_name="churn", version="2", artifact="s3://b/v2.bento")


def test_the_haproxy_config_weights_both_tracks_and_exports_metrics_on_its_own_port() -> None:
    state = StackState(stable=V1, canary=V2, weights=Weights.canary_at(30))
    text = haproxy.config(STACK, state, Path("/s/haproxy.sock"))
    lines = [line.strip() for line in text.splitlines()]
    assert "stats socket /s/haproxy.sock mode 600 level admin" in lines
    assert "bind 127.0.0.1:18080" in lines and "bind 127.0.0.1:18404" in lines
    assert "http-request use-service prometheus-exporter if { path /metrics }" in lines
    backend = lines[lines.index("backend tracks") + 1 :]
    assert backend[:3] == [
        "balance roundrobin",
        "server stable 127.0.0.1:13001 weight 70",
        "server canary 127.0.0.1:13002 weight 30",
    ]


def test_a_track_serving_nothing_starts_in_maintenance() -> None:
    text = haproxy.config(STACK, StackState(stable=V1), Path("/s/h.sock"))
    assert "    server stable 127.0.0.1:13001 weight 100\n" in text
    assert "    server canary 127.0.0.1:13002 weight 0 disabled\n" in text


def test_runtime_commands_set_percent_weights_and_maintenance() -> None:
    assert haproxy.weight_commands(Weights.canary_at(10)) == [
        "set server tracks/stable weight 90",
        "set server tracks/canary weight 10",
    ]
    assert haproxy.state_command("canary", serving=False) == "set server tracks/canary state maint"
    assert haproxy.state_command("stable", serving=True) == "set server tracks/stable state ready"


def test_an_unreachable_admin_socket_is_named(tmp_path: Path) -> None:
    with pytest.raises(StackError, match=r"router: HAProxy's admin socket .*nothing\.sock"):
        haproxy.send(tmp_path / "nothing.sock", "show info")


def test_prometheus_scrapes_serving_tracks_with_track_and_version_labels() -> None:
    paths = StackPaths(Path("/s"))
    config = prometheus.config(STACK, StackState(stable=V1), paths)
    assert config["global"] == {"scrape_interval": "1s", "evaluation_interval": "1s"}
    assert config["rule_files"] == ["/s/rules.yml"]
    serving, router = config["scrape_configs"]
    assert serving["static_configs"] == [
        {
            "targets": ["127.0.0.1:13001"],
            "labels": {"track": "stable", "model_name": "churn", "model_version": "1"},
        }
    ]
    assert router["static_configs"] == [{"targets": ["127.0.0.1:18404"]}]


@pytest.mark.parametrize(
    ("rps", "users", "per_user"), [(50.0, 10, 5.0), (3.0, 1, 3.0), (12.0, 3, 4.0)]
)
def test_locust_runs_the_project_user_at_the_stack_rate(
    rps: float, users: int, per_user: float
) -> None:
    text = traffic.locustfile(rps)
    assert "class SteadyUser(project.ServiceUser):" in text
    assert f"wait_time = constant_throughput({per_user!r})" in text
    argv = traffic.command(STACK.model_copy(update={"traffic_rps": rps}), Path("/s/l.py"))
    assert argv[argv.index("-u") + 1] == str(users)
    assert argv[argv.index("--host") + 1] == "http://127.0.0.1:18080"
    assert argv[-1] == "SteadyUser"


def test_state_json_round_trips_and_an_absent_file_is_an_empty_stack(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path / "stack")
    assert load_state(paths) == StackState(weights=Weights(stable=100, canary=0))
    state = StackState(stable=V1, canary=V2, weights=Weights.canary_at(30))
    save_state(paths, state)
    assert load_state(paths) == state
    assert load_state(paths).served().on("canary") == V2


def test_a_broken_state_file_is_named(tmp_path: Path) -> None:
    paths = StackPaths(tmp_path)
    paths.state_file.write_text('{"weights": {"stable": 60, "canary": 60}}')
    with pytest.raises(StackError, match=r"state\.json is not a valid stack state"):
        load_state(paths)


def test_a_file_that_is_not_a_bento_is_refused(tmp_path: Path) -> None:
    archive = tmp_path / "x.bento"
    archive.write_bytes(b"not a tar")
    with pytest.raises(DeployError, match=r"x\.bento is not a bento archive"):
        read_bento(archive)


ERROR_RATIO = "LOOPLINE_SERVING__FAULT_ERROR_RATIO"
DELAY_MS = "LOOPLINE_SERVING__FAULT_DELAY_MS"


@pytest.mark.parametrize(
    ("error_ratio", "delay_ms", "canary_faults"),
    [
        (0.25, 150.0, {ERROR_RATIO: "0.25", DELAY_MS: "150.0"}),
        (0.0, 150.0, {DELAY_MS: "150.0"}),
        (1.0, 0.0, {ERROR_RATIO: "1.0"}),
        (0.0, 0.0, {}),
    ],
    ids=["both", "delay-only", "errors-only", "none"],
)
def test_only_the_canary_server_gets_the_stacks_drill_faults(
    tmp_path: Path, error_ratio: float, delay_ms: float, canary_faults: dict[str, str]
) -> None:
    stack = StackSettings(
        **STACK.model_dump(exclude={"canary_fault_error_ratio", "canary_fault_delay_ms"}),
        canary_fault_error_ratio=error_ratio,
        canary_fault_delay_ms=delay_ms,
    )
    settings = Settings(stack=stack)
    bento = Bento(tag="loopline:a", envs={"BENTOML_CONFIG_OPTIONS": "x=1"})
    canary_argv, canary = serve_command(settings, StackPaths(tmp_path), "canary", bento)
    stable_argv, stable = serve_command(settings, StackPaths(tmp_path), "stable", bento)
    faults = {
        key: value for key, value in canary.items() if key.startswith("LOOPLINE_SERVING__FAULT")
    }
    assert faults == canary_faults
    # each track has its own BentoML home (its own Prometheus multiprocess directory) ...
    homes = {Path(canary.pop("BENTOML_HOME")), Path(stable.pop("BENTOML_HOME"))}
    assert homes == {tmp_path / "bentoml-canary", tmp_path / "bentoml-stable"}
    for home in homes:  # ... sharing the stack's bentos and models
        assert (home / "bentos").resolve() == (tmp_path / "bentoml" / "bentos").resolve()
        assert (home / "models").resolve() == (tmp_path / "bentoml" / "models").resolve()
    assert {key: value for key, value in canary.items() if key not in faults} == stable
    assert canary_argv[canary_argv.index("--port") + 1] == "13002"
    assert stable_argv[stable_argv.index("--port") + 1] == "13001"

"""The local stack's lifecycle (up, status, down) and :class:`LocalPlatform`, its deployer and
router.

``up`` starts every part that is not running as the desired state asks (a part whose command
changed is restarted), applies the weights over HAProxy's admin socket and reloads Prometheus'
configuration; ``down`` stops them all. Parts: a BentoML worker per track (``serving.launch``)
serving a release, HAProxy (the route), Prometheus and Locust (when ``stack.traffic_rps`` > 0).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from steps.core.errors import DeployError, StackError
from steps.core.settings import Settings
from steps.platform.base import TRACKS, Release, Served, Track, Weights
from steps.platform.local import haproxy, processes, prometheus, registry, tracks, traffic
from steps.platform.local.state import PARTS, StackPaths, StackState, load_state, save_state

RulesSource = Callable[[], dict[str, Any]]


def slo_rules() -> dict[str, Any]:
    """The recording rules of the cluster's PrometheusRule (``steps.platform.slo``)."""
    import importlib

    # Imported by name when called: steps/platform/slo.py owns the PromQL (written separately).
    slo = importlib.import_module("steps.platform.slo")
    rules: dict[str, Any] = slo.rules_file()
    return rules


@dataclass(frozen=True)
class PartStatus:
    """One part as ``loopline stack status`` shows it."""

    part: str
    pid: int | None
    port: int | None
    up: bool
    rss_mb: float
    serves: str


def _fingerprint(*values: object) -> str:
    return hashlib.sha256(repr(values).encode()).hexdigest()[:16]


def _serves(state: StackState, track: Track) -> str:
    release = state.on(track)
    weight = getattr(state.weights, track)
    served = f"{release.model_name} v{release.version}" if release else "nothing"
    return f"{served}, weight {weight} %"


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


class LocalPlatform:
    """The local stand-in for a cluster: :class:`~steps.platform.base.Deployer` and
    :class:`~steps.platform.base.Router` over the processes under ``<state_dir>/stack/``."""

    def __init__(self, settings: Settings, rules: RulesSource = slo_rules) -> None:
        self.settings = settings
        self.stack = settings.stack
        self.paths = StackPaths(settings.state_path / "stack")
        self._rules = rules

    # Deployer

    def served(self) -> Served:
        """What each track serves (the desired state in ``state.json``) and the split."""
        return load_state(self.paths).served()

    def roll_out(self, track: Track, release: Release, timeout_s: float) -> None:
        """Serve ``release`` on ``track``: import its bento, (re)start the server, wait ready.

        ``state.json`` and Prometheus' targets change only once the server is ready; the route's
        weights are not touched.

        Raises:
            DeployError: naming the failing condition (import, exit, or not ready in time).
        """
        state = load_state(self.paths)
        try:
            self._start_track(track, release, timeout_s, restart=True)
        except StackError as err:
            raise DeployError(
                f"rollout of {release.model_name} v{release.version} on {track} failed: {err}\n"
                f"state.json still names the previous release; `loopline stack up` restores it"
            ) from err
        state = state.with_release(track, release)
        save_state(self.paths, state)
        if processes.read_pid_file(self.paths.pid_file("router")):
            haproxy.send(self.paths.admin_socket, haproxy.state_command(track, serving=True))
        self._configure_prometheus(state)

    def track_url(self, track: Track) -> str:
        """``http://host:port`` of ``track``'s server."""
        return tracks.url(self.settings, track)

    def retire(self, track: Track) -> None:
        """Stop ``track``'s server and record that it serves nothing (HAProxy: maintenance).

        The route's weights are not touched; Prometheus stops scraping the track.
        """
        state = load_state(self.paths).with_release(track, None)
        save_state(self.paths, state)
        if processes.read_pid_file(self.paths.pid_file("router")):
            haproxy.send(self.paths.admin_socket, haproxy.state_command(track, serving=False))
        processes.stop(track, self.paths.pid_file(track))
        self._configure_prometheus(state)

    # Router

    def weights(self) -> Weights:
        """The live split, read from HAProxy's admin socket."""
        live = haproxy.server_weights(self.paths.admin_socket)
        total = live["stable"] + live["canary"]
        if total != 100:
            raise StackError(f"router: HAProxy's weights {live} do not add up to 100 percent")
        return Weights(stable=live["stable"], canary=live["canary"])

    def set_weights(self, weights: Weights) -> None:
        """Apply ``weights`` live over the admin socket, then record them in ``state.json``."""
        for command in haproxy.weight_commands(weights):
            haproxy.send(self.paths.admin_socket, command)
        save_state(self.paths, load_state(self.paths).model_copy(update={"weights": weights}))

    def endpoint(self) -> str:
        """The route: ``http://host:router_port``."""
        return f"http://{self.stack.host}:{self.stack.router_port}"

    # Metrics

    def query(self, promql: str) -> list[dict[str, Any]]:
        """Evaluate ``promql`` on the stack's Prometheus; return the result vector.

        Raises:
            StackError: when Prometheus cannot be reached or refuses the query.
        """
        return prometheus.query(self.stack, promql)

    # Lifecycle

    def up(self) -> dict[str, float]:
        """Start every part the desired state needs; return the seconds each start took.

        Parts already running with the same command are kept.

        Raises:
            StackError: naming the part that failed to start, with the tail of its log.
        """
        self.paths.root.mkdir(parents=True, exist_ok=True)
        state = load_state(self.paths)
        timings: dict[str, float] = {}
        for track in TRACKS:
            release = state.on(track)
            if release is None:
                processes.stop(track, self.paths.pid_file(track))
            else:
                timings[track] = self._start_track(track, release, self.stack.start_timeout_s)
        timings["router"] = self._start_router(state)
        timings["prometheus"] = self._start_prometheus(state)
        if self.stack.traffic_rps > 0 and (state.stable or state.canary):
            timings["traffic"] = self._start_traffic()
        else:
            processes.stop("traffic", self.paths.pid_file("traffic"))
        return timings

    def down(self) -> list[str]:
        """Stop every part (SIGTERM, SIGKILL after a deadline) and the project's image registry;
        return those that were running.

        Raises:
            StackError: when a process survives SIGKILL.
        """
        stopped = [
            part for part in reversed(PARTS) if processes.stop(part, self.paths.pid_file(part))
        ]
        return stopped + ([registry.PART] if registry.stop(self.settings) else [])

    def status(self) -> list[PartStatus]:
        """Each part: pid, port, up or down, resident memory and what it serves."""
        state = load_state(self.paths)
        ports: dict[str, int | None] = {
            "stable": self.stack.stable_port,
            "canary": self.stack.canary_port,
            "router": self.stack.router_port,
            "prometheus": self.stack.prometheus_port,
            "traffic": None,
        }
        rows = []
        for part in PARTS:
            running = processes.read_pid_file(self.paths.pid_file(part))
            members = processes.group_members(running.pid) if running else []
            track = next((t for t in TRACKS if t == part), None)
            serves = _serves(state, track) if track else ""
            if part == "traffic":
                serves = f"{self.stack.traffic_rps:g} req/s"
            rows.append(
                PartStatus(
                    part=part,
                    pid=running.pid if running else None,
                    port=ports[part],
                    up=running is not None,
                    rss_mb=round(processes.rss_bytes(members) / 2**20, 1),
                    serves=serves,
                )
            )
        return rows

    # Parts

    def _start_track(
        self, track: Track, release: Release, timeout_s: float, *, restart: bool = False
    ) -> float:
        bento = tracks.fetch_bento(self.settings, self.paths, release)
        argv, own_env = tracks.serve_command(self.settings, self.paths, track, bento)
        base_url = tracks.url(self.settings, track)
        return self._ensure(
            track, argv, lambda: tracks.is_ready(base_url), timeout_s, env=own_env, restart=restart
        )

    def _start_router(self, state: StackState) -> float:
        text = haproxy.config(self.stack, state, self.paths.admin_socket)
        self.paths.haproxy_config.write_text(text, encoding="utf-8")
        argv = ["haproxy", "-db", "-f", str(self.paths.haproxy_config)]
        if not processes.read_pid_file(self.paths.pid_file("router")):
            self.paths.admin_socket.unlink(missing_ok=True)  # left by a killed HAProxy
        seconds = self._ensure(
            "router",
            argv,
            lambda: (
                haproxy.answers(self.paths.admin_socket)
                and _port_open(self.stack.host, self.stack.router_port)
            ),
            self.stack.start_timeout_s,
        )
        # A kept HAProxy may hold other runtime weights than the desired state: apply it.
        for command in haproxy.weight_commands(state.weights):
            haproxy.send(self.paths.admin_socket, command)
        for track in TRACKS:
            serving = state.on(track) is not None
            haproxy.send(self.paths.admin_socket, haproxy.state_command(track, serving))
        return seconds

    def _start_prometheus(self, state: StackState) -> float:
        argv = [
            "prometheus",
            f"--config.file={self.paths.prometheus_config}",
            f"--storage.tsdb.path={self.paths.prometheus_data}",
            f"--web.listen-address={self.stack.host}:{self.stack.prometheus_port}",
            "--web.enable-lifecycle",
        ]
        running = processes.read_pid_file(self.paths.pid_file("prometheus"))
        self._configure_prometheus(state, reload=False)
        seconds = self._ensure(
            "prometheus", argv, lambda: prometheus.is_ready(self.stack), self.stack.start_timeout_s
        )
        if running and running.fingerprint == _fingerprint(argv, None):
            prometheus.reload(self.stack)
        return seconds

    def _configure_prometheus(self, state: StackState, *, reload: bool = True) -> None:
        prometheus.write_files(self.stack, state, self.paths, self._rules())
        if reload and processes.read_pid_file(self.paths.pid_file("prometheus")):
            prometheus.reload(self.stack)

    def _start_traffic(self) -> float:
        self.paths.locustfile.write_text(traffic.locustfile(self.stack.traffic_rps), "utf-8")
        log = self.paths.log_file("traffic")
        offset = log.stat().st_size if log.exists() else 0

        def spawned() -> bool:
            with log.open("rb") as handle:
                handle.seek(offset)
                return b"All users spawned" in handle.read()

        argv = traffic.command(self.stack, self.paths.locustfile)
        return self._ensure("traffic", argv, spawned, self.stack.start_timeout_s, cwd_repo=True)

    def _ensure(
        self,
        part: str,
        argv: list[str],
        ready: Callable[[], bool],
        timeout_s: float,
        *,
        env: dict[str, str] | None = None,
        restart: bool = False,
        cwd_repo: bool = False,
    ) -> float:
        """Start ``part`` unless it runs with the same command; wait until ``ready``.

        ``env``: the variables set on top of this process' environment (and fingerprinted).
        """
        pid_file = self.paths.pid_file(part)
        fingerprint = _fingerprint(argv, env)
        running = processes.read_pid_file(pid_file)
        if running and running.fingerprint == fingerprint and not restart:
            return 0.0
        processes.stop(part, pid_file)
        started = time.monotonic()
        pid = processes.start(
            argv,
            pid_file=pid_file,
            log_file=self.paths.log_file(part),
            fingerprint=fingerprint,
            env=tracks.environment(env) if env is not None else None,
            cwd=traffic.REPO if cwd_repo else self.paths.root,
        )
        try:
            processes.wait_until(part, pid, ready, timeout_s, self.paths.log_file(part))
        except StackError:
            processes.stop(part, pid_file)
            raise
        return round(time.monotonic() - started, 2)

"""The local stack's desired state and file layout, under ``<state_dir>/stack/``.

``state.json`` holds what a cluster would keep in its API server: the release on each track and
the route's weights. Processes are disposable; ``loopline stack up`` starts them to match it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from steps.core.errors import StackError
from steps.platform.base import Release, Served, Track, Weights

PARTS = ("stable", "canary", "router", "prometheus", "traffic")
"""Every process of the stack, in start order."""


class StackState(BaseModel):
    """The desired state: what each track serves and the route's split."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    stable: Release | None = None
    canary: Release | None = None
    weights: Weights = Weights(stable=100, canary=0)

    def on(self, track: Track) -> Release | None:
        """The release on ``track``, None when it serves nothing."""
        return self.stable if track == "stable" else self.canary

    def with_release(self, track: Track, release: Release | None) -> StackState:
        """A copy with ``release`` on ``track``."""
        return self.model_copy(update={track: release})

    def served(self) -> Served:
        """The state as the platform interface reports it."""
        return Served(stable=self.stable, canary=self.canary, weights=self.weights)


@dataclass(frozen=True)
class StackPaths:
    """Where the stack keeps its files: one directory, one pid file and log per part."""

    root: Path

    @property
    def state_file(self) -> Path:
        """The desired state, ``state.json``."""
        return self.root / "state.json"

    @property
    def admin_socket(self) -> Path:
        """HAProxy's runtime API (admin level, mode 600)."""
        return self.root / "haproxy.sock"

    @property
    def haproxy_config(self) -> Path:
        """The generated HAProxy configuration."""
        return self.root / "haproxy.cfg"

    @property
    def prometheus_config(self) -> Path:
        """The generated Prometheus configuration."""
        return self.root / "prometheus.yml"

    @property
    def rules_file(self) -> Path:
        """The recording rules Prometheus loads (the same as the PrometheusRule's)."""
        return self.root / "rules.yml"

    @property
    def prometheus_data(self) -> Path:
        """Prometheus' TSDB."""
        return self.root / "prometheus-data"

    @property
    def bentoml_home(self) -> Path:
        """The stack's own BentoML store, into which track archives are imported."""
        return self.root / "bentoml"

    def track_home(self, track: str) -> Path:
        """``track``'s own BentoML home: the shared store's bentos and models (symlinked) and
        its own Prometheus multiprocess directory, which BentoML keeps under the home and
        empties when a server starts (a shared one would mix, then drop, the other track's
        metrics)."""
        return self.root / f"bentoml-{track}"

    @property
    def locustfile(self) -> Path:
        """The generated Locust file (the project's user at a constant rate)."""
        return self.root / "locustfile.py"

    def pid_file(self, part: str) -> Path:
        """The pid file of ``part``."""
        return self.root / f"{part}.pid"

    def log_file(self, part: str) -> Path:
        """The log (stdout and stderr) of ``part``."""
        return self.root / f"{part}.log"


def load_state(paths: StackPaths) -> StackState:
    """Read ``state.json``; a stack that never ran serves nothing, stable at 100 %.

    Raises:
        StackError: when the file exists but is not a valid state (naming the file).
    """
    if not paths.state_file.is_file():
        return StackState()
    try:
        return StackState.model_validate_json(paths.state_file.read_text(encoding="utf-8"))
    except ValidationError as err:
        raise StackError(
            f"{paths.state_file} is not a valid stack state ({err.error_count()} errors: "
            f"{err.errors()[0]['msg']}); fix it or delete it to start empty"
        ) from err


def save_state(paths: StackPaths, state: StackState) -> None:
    """Write ``state.json`` atomically (a reader never sees half a file)."""
    paths.root.mkdir(parents=True, exist_ok=True)
    scratch = paths.state_file.with_suffix(".json.tmp")
    scratch.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n", "utf-8")
    scratch.replace(paths.state_file)

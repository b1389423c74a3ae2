"""The small interface every serving platform implements: a deployer and a traffic router.

Two tracks serve a model: ``stable`` and ``canary``. A :class:`Deployer` puts a release (a
registered model version and the artifact that serves it) on a track and reports what each track
serves; a :class:`Router` splits the route's traffic between the tracks. The deploy step and the
canary promotion talk only to these two protocols; ``steps/platform/kubernetes.py`` (Deployments
and a Gateway API HTTPRoute, through the official client) and ``steps/platform/local/`` (the
local stand-in: ``bentoml serve`` per track behind HAProxy) implement them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict, model_validator

Track = Literal["stable", "canary"]
TRACKS: tuple[Track, ...] = ("stable", "canary")


class Release(BaseModel):
    """What runs on a track: a registered model version and the artifact serving it."""

    model_config = ConfigDict(frozen=True)

    model_name: str
    version: str
    artifact: str
    """An image reference on a cluster; a bento archive URI on the local stand-in."""
    bento_tag: str = ""


class Weights(BaseModel):
    """The route's traffic split in percent; the two shares add up to 100."""

    model_config = ConfigDict(frozen=True)

    stable: int
    canary: int

    @model_validator(mode="after")
    def _adds_up(self) -> Weights:
        if min(self.stable, self.canary) < 0 or self.stable + self.canary != 100:
            raise ValueError(f"weights must be >= 0 and add up to 100, got {self}")
        return self

    @classmethod
    def canary_at(cls, percent: int) -> Weights:
        """The split that sends ``percent`` of the traffic to the canary."""
        return cls(stable=100 - percent, canary=percent)


@dataclass(frozen=True)
class Served:
    """What each track serves now, and the route's split."""

    stable: Release | None
    canary: Release | None
    weights: Weights

    def on(self, track: Track) -> Release | None:
        """The release on ``track``, None when the track serves nothing."""
        return self.stable if track == "stable" else self.canary


class Deployer(Protocol):
    """Puts releases on tracks and reports what they serve."""

    def served(self) -> Served:
        """What each track serves now and the route's split."""
        ...

    def roll_out(self, track: Track, release: Release, timeout_s: float) -> None:
        """Serve ``release`` on ``track`` and wait until it is ready.

        Raises:
            steps.core.errors.DeployError: naming the failing condition when the rollout is not
                ready within ``timeout_s``; the route is left untouched.
        """
        ...

    def track_url(self, track: Track) -> str:
        """The base URL that reaches ``track`` directly, not through the route."""
        ...

    def retire(self, track: Track) -> None:
        """Stop serving on ``track`` (scaled to zero): :meth:`served` then reports nothing there.

        The route is not touched: set its weights away from the track first. Idempotent.

        Raises:
            steps.core.errors.DeployError: when the platform refuses the change.
        """
        ...


class Router(Protocol):
    """Splits the route's traffic between the tracks."""

    def weights(self) -> Weights:
        """The current split."""
        ...

    def set_weights(self, weights: Weights) -> None:
        """Apply ``weights`` to the route (live: no restart, no dropped request)."""
        ...

    def endpoint(self) -> str:
        """The URL clients call: the route."""
        ...

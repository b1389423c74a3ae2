"""The serving platform a setting names: the one place that picks it (``LOOPLINE_PLATFORM``)."""

from __future__ import annotations

from typing import Protocol

from steps.core.settings import Settings
from steps.platform.base import Deployer, Router


class Platform(Deployer, Router, Protocol):
    """A serving platform: puts releases on tracks and splits the route between them."""


def platform_for(settings: Settings, *, start: bool = True) -> Platform:
    """Return the platform ``settings.platform`` names (``LOOPLINE_PLATFORM``).

    The local stand-in's processes are disposable, its state is not: unless ``start`` is False
    (reading only), every part the saved state asks for is brought up (or kept), as a cluster's
    controllers would, before it is changed.

    Raises:
        ConfigError: on kubernetes with no cluster configuration.
        StackError: when a local part fails to start.
    """
    if settings.platform == "kubernetes":
        from steps.platform.kubernetes import KubernetesPlatform

        return KubernetesPlatform(settings)
    from steps.platform.local import LocalPlatform

    stack = LocalPlatform(settings)
    if start:
        stack.up()
    local: Platform = stack
    return local

"""The benchmark's one error type: a message saying what failed and how to fix it."""

from __future__ import annotations

from steps.core.errors import LooplineError


class BenchError(LooplineError):
    """A benchmark part is missing or a server misbehaved (did not start, answered wrongly)."""

"""Drive wrk with ``bench.lua`` and read its one-line JSON summary.

wrk is the one load generator for every server: one thread (the machine has two cores and the
server needs them more), a fixed number of keep-alive connections, request bodies cycling
through a pool of rows. ``bench.lua`` prints ``BENCH_JSON {...}`` from its ``done()`` hook;
:func:`parse_wrk_output` turns that line into a :class:`WrkResult`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from pydantic import BaseModel, ConfigDict, ValidationError

from scripts.bench.errors import BenchError

LUA_SCRIPT = Path(__file__).with_name("bench.lua")
MARKER = "BENCH_JSON "
TIMEOUT_S = 5
INSTALL_HINT = "install it with `apt-get install -y wrk` (Debian/Ubuntu), then run again"


class WrkError(BenchError):
    """wrk is missing, failed, or printed no summary line."""


class WrkErrors(BaseModel):
    """wrk's error counters: socket errors, non-2xx/3xx answers (``status``) and timeouts."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    connect: int
    read: int
    write: int
    status: int
    timeout: int


class WrkLatency(BaseModel):
    """Latency percentiles of every completed request, in microseconds."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    p50: int
    p90: int
    p99: int
    max: int
    mean: float


class WrkResult(BaseModel):
    """One wrk run as printed by ``bench.lua``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    requests: int
    duration_us: int
    errors: WrkErrors
    latency_us: WrkLatency

    @property
    def ok_requests(self) -> int:
        """Completed requests answered 2xx/3xx."""
        return max(self.requests - self.errors.status, 0)

    @property
    def ok_rps(self) -> float:
        """Successful requests per second."""
        return self.ok_requests / (self.duration_us / 1e6) if self.duration_us else 0.0

    @property
    def error_share(self) -> float:
        """Failed requests (bad status, socket errors, timeouts) over all attempted."""
        e = self.errors
        failed = e.status + e.connect + e.read + e.write + e.timeout
        attempted = self.requests + e.connect + e.timeout
        return failed / attempted if attempted else 1.0


def parse_wrk_output(text: str) -> WrkResult:
    """Read the ``BENCH_JSON`` line that ``bench.lua`` prints at the end of a wrk run.

    Returns:
        The run's counts and latency percentiles.

    Raises:
        WrkError: if no such line is present or it does not hold the expected fields.
    """
    lines = [line for line in text.splitlines() if line.startswith(MARKER)]
    if len(lines) != 1:
        raise WrkError(
            f"expected one line starting with {MARKER.strip()!r} in wrk's output, found "
            f"{len(lines)}; output was:\n{text[-2000:]}"
        )
    try:
        return WrkResult.model_validate(json.loads(lines[0].removeprefix(MARKER)))
    except (ValueError, ValidationError) as err:
        raise WrkError(f"wrk's summary line is not the expected JSON: {lines[0]!r}: {err}") from err


def wrk_binary() -> str:
    """Return the path of the ``wrk`` executable.

    Raises:
        WrkError: if wrk is not on PATH, saying how to install it.
    """
    path = shutil.which("wrk")
    if path is None:
        raise WrkError(f"wrk is not installed: {INSTALL_HINT}")
    return path


def wrk_command(
    url: str,
    path: str,
    bodies: Path,
    *,
    connections: int,
    duration_s: float,
    rate: float = 0.0,
) -> list[str]:
    """Return the wrk argv for one load run (``rate`` > 0 paces requests to ``rate`` per second).

    Returns:
        The argument vector, wrk first.
    """
    return [
        wrk_binary(),
        "--threads",
        "1",
        "--connections",
        str(connections),
        "--duration",
        f"{max(round(duration_s), 1)}s",
        "--timeout",
        f"{TIMEOUT_S}s",
        "--script",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies),
        path,
        f"{rate:g}",
    ]


def run_wrk(
    url: str,
    path: str,
    bodies: Path,
    *,
    connections: int,
    duration_s: float,
    rate: float = 0.0,
) -> WrkResult:
    """Run wrk against ``url`` + ``path`` and return its summary.

    Returns:
        The parsed summary.

    Raises:
        WrkError: if wrk fails or prints no summary.
    """
    argv = wrk_command(url, path, bodies, connections=connections, duration_s=duration_s, rate=rate)
    done = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration_s + 60, check=False
    )
    if done.returncode != 0:
        raise WrkError(f"wrk exited {done.returncode}: {done.stderr.strip() or done.stdout}")
    return parse_wrk_output(done.stdout)

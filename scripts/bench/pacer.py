"""The benchmark's second client: an open-loop, paced HTTP/1.1 client that counts from the plan.

wrk (with ``bench.lua``) times each request from the moment it is sent. A user's request is late
from the moment it should have been sent, so this client schedules request ``i`` at
``start + i / rate`` and counts its latency from that instant: time spent waiting for a free
connection, or behind a stalled server, is in the figure (no coordinated omission, as in
Gil Tene's wrk2). It is also a different client implementation (asyncio streams, one write per
request, its own response parser) from wrk's, so a server that talks well to one client only
shows up as a difference between the two.

Pure standard library; run from the project environment by :mod:`scripts.bench_serving`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from scripts.bench.errors import BenchError

CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 5.0
MAX_HEADER_BYTES = 65536


@dataclass(frozen=True)
class PacedRun:
    """What one paced run saw."""

    target_rps: float
    connections: int
    duration_s: float
    sent: int
    ok: int
    errors: int
    statuses: dict[int, int]
    latencies_ms: np.ndarray  # of the successful requests, from their planned send time

    @property
    def achieved_rps(self) -> float:
        """Successful requests per second of the run."""
        return self.ok / self.duration_s if self.duration_s else 0.0

    def percentile_ms(self, q: float) -> float:
        """The ``q``-th percentile of the successful requests' latency (0 when there are none)."""
        if not len(self.latencies_ms):
            return 0.0
        return float(np.percentile(self.latencies_ms, q))


class _Connection:
    """One keep-alive connection: one request at a time, written in one ``write``."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    async def request(self, message: bytes) -> int:
        self.writer.write(message)
        status_line = await self.reader.readuntil(b"\r\n")
        headers = await self.reader.readuntil(b"\r\n\r\n")
        if len(headers) > MAX_HEADER_BYTES:
            raise BenchError("response headers over 64 KiB")
        length = 0
        for line in headers.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        await self.reader.readexactly(length)
        return int(status_line.split(b" ", 2)[1])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()


async def _connect(host: str, port: int) -> _Connection:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT_S)
    return _Connection(reader, writer)


def _request(host: str, port: int, path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


async def paced_run(
    host: str,
    port: int,
    path: str,
    bodies: Sequence[bytes],
    *,
    rate: float,
    duration_s: float,
    connections: int,
) -> PacedRun:
    """Send ``rate`` requests per second for ``duration_s`` over ``connections`` connections.

    Returns:
        The run; a request that failed (status other than 200, a broken or timed-out
        connection) counts as an error, and its connection is replaced.
    """
    free: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        free.put_nowait(await _connect(host, port))
    messages = [_request(host, port, path, body) for body in bodies]  # built before the clock
    total = int(rate * duration_s)
    latencies = np.zeros(total, dtype=np.float64)
    done = np.zeros(total, dtype=bool)
    statuses: dict[int, int] = {}
    errors = 0

    async def one(index: int, planned: float) -> None:
        nonlocal errors
        connection = await free.get()
        try:
            status = await asyncio.wait_for(
                connection.request(messages[index % len(messages)]), REQUEST_TIMEOUT_S
            )
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            errors += 1
            await connection.close()
            free.put_nowait(await _connect(host, port))
            return
        free.put_nowait(connection)
        statuses[status] = statuses.get(status, 0) + 1
        if status == 200:
            latencies[index] = (time.perf_counter() - planned) * 1000
            done[index] = True
        else:
            errors += 1

    start = time.perf_counter()
    tasks: list[asyncio.Task[None]] = []
    for index in range(total):
        planned = start + index / rate
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(index, planned)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    while not free.empty():
        await free.get_nowait().close()
    return PacedRun(
        target_rps=rate,
        connections=connections,
        duration_s=elapsed,
        sent=total,
        ok=int(done.sum()),
        errors=errors,
        statuses=dict(sorted(statuses.items())),
        latencies_ms=latencies[done],
    )

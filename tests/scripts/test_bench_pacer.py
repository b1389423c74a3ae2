"""Tests for scripts/bench/pacer.py against a real asyncio HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio

from scripts.bench.pacer import PacedRun, paced_run


async def _serve_then_pace(stall_first_s: float, status: int, **pace: float) -> PacedRun:
    """Pace requests at a keep-alive server that stalls its first answer ``stall_first_s``."""
    answered = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal answered
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length")
            )
            await reader.readexactly(length)
            if answered == 0:
                await asyncio.sleep(stall_first_s)
            answered += 1
            body = b'{"ok":true}'
            writer.write(
                b"HTTP/1.1 %d X\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
            )
        writer.close()
        await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        return await paced_run(
            "127.0.0.1",
            port,
            "/predict",
            [b'{"a": 1}'],
            rate=pace["rate"],
            duration_s=pace["duration_s"],
            connections=int(pace["connections"]),
        )


def test_latency_counts_from_the_planned_send_so_a_stall_delays_every_request_behind_it() -> None:
    # One connection, 50 req/s for 1 s, the first answer 300 ms late: requests planned at
    # 20, 40, ... ms wait for the connection, and their latency includes that wait.
    run = asyncio.run(_serve_then_pace(0.3, 200, rate=50, duration_s=1.0, connections=1))

    assert (run.sent, run.ok, run.errors) == (50, 50, 0)
    assert run.latencies_ms[0] >= 300
    assert run.latencies_ms[5] >= 300 - 5 * 20  # planned at 100 ms, sent after 300 ms
    assert run.percentile_ms(50) < 50  # the backlog clears; later requests are on time
    assert run.statuses == {200: 50}


def test_a_status_other_than_200_is_an_error_and_not_a_latency() -> None:
    run = asyncio.run(_serve_then_pace(0.0, 503, rate=100, duration_s=0.2, connections=2))

    assert (run.sent, run.ok, run.errors) == (20, 0, 20)
    assert run.statuses == {503: 20}
    assert len(run.latencies_ms) == 0 and run.percentile_ms(99) == 0.0

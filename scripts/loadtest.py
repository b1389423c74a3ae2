"""``make loadtest``: serve the champion locally, drive it with Locust headless, print the numbers.

Starts the service on a free loopback port (the same launcher as ``make serve``), waits for
``/readyz``, runs ``locust --headless`` with :mod:`scripts.locustfile` for a bounded time, stops
the server (which flushes the inference log) and prints req/s and p50/p95/p99 per endpoint.
The numbers also go to ``reports/loadtest.json``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
from pydantic import BaseModel
from rich.table import Table

from scripts.bench.servers import free_port
from steps.core.cli_support import console, new_app, reports_errors
from steps.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
LOCUSTFILE = REPO / "scripts" / "locustfile.py"
READY_TIMEOUT_S = 120.0
POOL_ROWS = 2_000
ID_COLUMNS = ("customer_id", "event_timestamp", "churned")


class EndpointStats(BaseModel):
    """Locust's numbers for one endpoint (or ``Aggregated``)."""

    name: str
    requests: int
    failures: int
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float


def parse_stats(stats_csv: str) -> list[EndpointStats]:
    """Parse Locust's ``<prefix>_stats.csv``.

    Raises:
        ConfigError: when a needed column is missing (an incompatible Locust version).
    """
    rows = list(csv.DictReader(io.StringIO(stats_csv)))
    needed = ("Name", "Request Count", "Failure Count", "Requests/s", "50%", "95%", "99%")
    missing = [c for c in needed if rows and c not in rows[0]]
    if missing or not rows:
        raise ConfigError(f"locust stats CSV lacks columns {missing or list(needed)}")
    return [
        EndpointStats(
            name=row["Name"],
            requests=int(row["Request Count"]),
            failures=int(row["Failure Count"]),
            requests_per_s=float(row["Requests/s"]),
            p50_ms=float(row["50%"]),
            p95_ms=float(row["95%"]),
            p99_ms=float(row["99%"]),
        )
        for row in rows
    ]


def row_pool(seed: int, rows: int = POOL_ROWS) -> list[dict[str, Any]]:
    """Return request bodies (feature dicts, NaN as missing) from the project's generator.

    Kept out of the locustfile: importing Locust monkey-patches the process (gevent).
    """
    from steps.ml.synthetic import churn_frame

    frame = churn_frame(rows, seed=seed).drop(columns=list(ID_COLUMNS))
    return [
        {str(k): None if isinstance(v, float) and math.isnan(v) else v for k, v in row.items()}
        for row in frame.to_dict(orient="records")
    ]


def wait_ready(url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise ConfigError(f"the service exited with {server.returncode} before it was ready")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise ConfigError(f"the service was not ready within {READY_TIMEOUT_S:.0f} s")


app = new_app("Load-test the locally served champion with Locust (headless).")


@app.command()
@reports_errors
def main(
    users: Annotated[int, typer.Option(min=1, help="concurrent Locust users")] = 32,
    spawn_rate: Annotated[float, typer.Option(min=0.1, help="users started per second")] = 16,
    duration_s: Annotated[int, typer.Option(min=5, max=3600, help="load duration")] = 30,
    workers: Annotated[int, typer.Option(min=1, max=16, help="service workers")] = 2,
    out: Annotated[Path, typer.Option(help="JSON report")] = REPO / "reports" / "loadtest.json",
) -> None:
    """Serve the champion, run Locust for DURATION_S seconds, print and save the numbers."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "scripts.serve", "--port", str(port), "--workers", str(workers)],
        cwd=REPO,
    )
    try:
        wait_ready(url, server)
        with tempfile.TemporaryDirectory() as scratch:
            prefix = Path(scratch) / "locust"
            subprocess.run(
                [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
                 "--host", url, "-u", str(users), "-r", str(spawn_rate),
                 "-t", f"{duration_s}s", "--csv", str(prefix), "--only-summary",
                 "--loglevel", "WARNING", "--exit-code-on-error", "0"],
                cwd=REPO, check=True, timeout=duration_s + 120,
            )  # fmt: skip
            stats = parse_stats(Path(f"{prefix}_stats.csv").read_text())
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    table = Table("endpoint", "requests", "failures", "req/s", "p50 ms", "p95 ms", "p99 ms")
    for row in stats:
        table.add_row(
            row.name, str(row.requests), str(row.failures), f"{row.requests_per_s:.1f}",
            f"{row.p50_ms:.0f}", f"{row.p95_ms:.0f}", f"{row.p99_ms:.0f}",
        )  # fmt: skip
    console.print(table)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps([row.model_dump() for row in stats], indent=2) + "\n")
    console.print(f"{users} users for {duration_s} s against {workers} worker(s); saved {out}")


if __name__ == "__main__":
    app()

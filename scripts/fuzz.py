"""``make fuzz``: schemathesis against the locally served model; exit 1 on any 5xx.

Serves a model on a free loopback port with the same launcher as ``make serve`` (the champion
by default, or ``--model-dir`` / ``--model-tag``), waits for ``/readyz``, then runs schemathesis
4 (``st run``) from the served OpenAPI document in both modes, positive (schema-valid requests)
and negative (schema-violating ones), ``--max-examples`` per operation, with a fixed seed.
Prints the requests by status class (read from schemathesis' HAR report) and exits 1 when any
answer was a 5xx or schemathesis found a response that breaks the document (status, content
type or body schema).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import typer

from scripts.bench.servers import free_port
from scripts.loadtest import wait_ready
from steps.core.cli_support import console, new_app, reports_errors

REPO = Path(__file__).resolve().parents[1]
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
RUN_TIMEOUT_S = 600


@dataclass(frozen=True)
class FuzzResult:
    """What one schemathesis run sent and got."""

    statuses: Counter[str]  # "2xx", "4xx", "5xx", ...; "none" for no response
    schemathesis_exit: int
    output: str

    @property
    def requests(self) -> int:
        """Requests sent."""
        return sum(self.statuses.values())

    @property
    def server_errors(self) -> int:
        """Responses with a 5xx status."""
        return self.statuses["5xx"]


def status_classes(har: dict[str, object]) -> Counter[str]:
    """Count a HAR log's responses by status class (``"2xx"``, ...; ``"none"`` if none came)."""
    entries = har["log"]["entries"]  # type: ignore[index]
    return Counter(
        f"{status // 100}xx" if status else "none"
        for status in (int(entry["response"]["status"]) for entry in entries)
    )


def fuzz(base_url: str, *, max_examples: int, seed: int, workdir: Path) -> FuzzResult:
    """Run schemathesis (positive and negative modes) against the service at ``base_url``.

    Returns:
        The status classes of every request sent, schemathesis' exit code and its output.

    Raises:
        subprocess.TimeoutExpired: if the run takes over ``RUN_TIMEOUT_S``.
    """
    har_path = workdir / "fuzz.har"
    done = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", f"{base_url}/docs.json",
         "--mode", "all", "--max-examples", str(max_examples), "--seed", str(seed),
         "--checks", ",".join(CHECKS), "--no-shrink", "--workers", "1",
         "--report", "har", "--report-har-path", str(har_path)],
        cwd=workdir, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False,
    )  # fmt: skip
    statuses = status_classes(json.loads(har_path.read_text(encoding="utf-8")))
    return FuzzResult(statuses, done.returncode, done.stdout + done.stderr)


app = new_app("Fuzz the locally served model with schemathesis; exit 1 on any 5xx.")


@app.command()
@reports_errors
def main(
    model_dir: Annotated[
        Path | None, typer.Option(help="model directory [default: the registry's champion]")
    ] = None,
    model_tag: Annotated[str | None, typer.Option(help="BentoML model tag")] = None,
    max_examples: Annotated[
        int, typer.Option(min=1, max=10_000, help="test cases per operation and phase")
    ] = 100,
    seed: Annotated[int, typer.Option(help="schemathesis seed (reproducible runs)")] = 1,
) -> None:
    """Serve the model, fuzz it, print requests by status class; exit 1 on any 5xx."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "scripts.serve", "--port", str(port)]
    argv += ["--model-dir", str(model_dir)] if model_dir else []
    argv += ["--model-tag", model_tag] if model_tag else []
    server = subprocess.Popen(argv, cwd=REPO)
    try:
        wait_ready(url, server)
        with tempfile.TemporaryDirectory() as scratch:
            result = fuzz(url, max_examples=max_examples, seed=seed, workdir=Path(scratch))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=60)
    by_class = ", ".join(f"{name} {count}" for name, count in sorted(result.statuses.items()))
    console.print(f"{result.requests} requests: {by_class}")
    if result.server_errors or result.schemathesis_exit:
        console.print(result.output)
        console.print(
            f"[red]{result.server_errors} responses 5xx; schemathesis exit "
            f"{result.schemathesis_exit}[/red]"
        )
        raise typer.Exit(1)


if __name__ == "__main__":
    app()

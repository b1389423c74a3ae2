"""``loopline stack up|status|down``: the local serving stand-in's lifecycle.

``up`` starts the parts the desired state in ``<state_dir>/stack/state.json`` asks for (keeping
those already running as asked), ``status`` shows each part, ``down`` stops them all.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

import typer
from rich.table import Table

from steps.core.cli_support import console, new_app, reports_errors
from steps.core.settings import load_settings
from steps.platform.local import LocalPlatform, PartStatus
from steps.platform.local import prometheus as local_prometheus

stack_app = new_app(
    "The local serving stack: two bentoml tracks behind HAProxy, Prometheus, Locust."
)


def _table(rows: list[PartStatus]) -> Table:
    table = Table("part", "pid", "port", "state", "RSS MB", "serves")
    for row in rows:
        table.add_row(
            row.part,
            str(row.pid or ""),
            str(row.port or ""),
            "[green]up[/]" if row.up else "[red]down[/]",
            f"{row.rss_mb:.0f}" if row.up else "",
            row.serves,
        )
    return table


def _urls(platform: LocalPlatform) -> str:
    return (
        f"route {platform.endpoint()}  prometheus {local_prometheus.base_url(platform.stack)}  "
        f"state {platform.paths.state_file}"
    )


@stack_app.command("up")
@reports_errors
def up_command() -> None:
    """Start (or restore) every part as state.json asks; keep running parts that match."""
    platform = LocalPlatform(load_settings())
    timings = platform.up()
    console.print(_table(platform.status()))
    started = ", ".join(f"{part} {seconds:.1f} s" for part, seconds in timings.items())
    console.print(f"started: {started} (0.0 s: already running)")
    console.print(_urls(platform))


@stack_app.command("status")
@reports_errors
def status_command(
    as_json: Annotated[bool, typer.Option("--json", help="print JSON on stdout")] = False,
) -> None:
    """Show each part (pid, port, up/down, memory), the version on each track and the weights."""
    platform = LocalPlatform(load_settings())
    rows = platform.status()
    if as_json:
        served = platform.served()
        document = {
            "parts": [dataclasses.asdict(row) for row in rows],
            "weights": served.weights.model_dump(),
            "tracks": {
                "stable": served.stable.model_dump() if served.stable else None,
                "canary": served.canary.model_dump() if served.canary else None,
            },
            "endpoint": platform.endpoint(),
            "prometheus": local_prometheus.base_url(platform.stack),
        }
        typer.echo(json.dumps(document, indent=2))
        return
    console.print(_table(rows))
    console.print(_urls(platform))


@stack_app.command("down")
@reports_errors
def down_command() -> None:
    """Stop every part (SIGTERM, then SIGKILL after a deadline); the desired state stays."""
    stopped = LocalPlatform(load_settings()).down()
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")

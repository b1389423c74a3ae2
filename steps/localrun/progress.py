"""Live progress of a local run: a rich table on a terminal, one plain line per change elsewhere."""

from __future__ import annotations

import threading
from types import TracebackType

from rich.console import Console
from rich.live import Live
from rich.table import Table
from rich.text import Text

from steps.localrun.record import NodeRecord, now

PHASE_STYLES = {
    "Running": "yellow",
    "Succeeded": "green",
    "Failed": "bold red",
    "Error": "bold red",
    "Skipped": "dim",
    "Omitted": "dim",
}


class ProgressDisplay:
    """Receives node updates from the executor's threads and shows them.

    Use as a context manager around the run; pass :meth:`update` as the progress callback.
    """

    def __init__(self, console: Console, *, live: bool | None = None) -> None:
        self.console = console
        self.live_mode = console.is_terminal if live is None else live
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str], tuple[str, NodeRecord]] = {}
        self.last_phase: dict[tuple[str, str], str] = {}
        self.top_run: str | None = None
        self._live: Live | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live_mode:
            self._live = Live(get_renderable=self.table, console=self.console, refresh_per_second=4)
            self._live.__enter__()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._live is not None:
            self._live.__exit__(kind, error, trace)

    def label(self, run: str, node: NodeRecord) -> str:
        """The node's name on screen: child runs' nodes carry their run's name."""
        if self.top_run is None:
            self.top_run = run
        return node.display_name if run == self.top_run else f"{run}/{node.display_name}"

    def update(self, run: str, node: NodeRecord) -> None:
        """Record a node's new state; in plain mode print a line when its phase changed."""
        with self.lock:
            key = (run, node.name)
            label = self.label(run, node)
            self.rows[key] = (label, node)
            state = f"{node.phase}\0{node.message}"
            if self.live_mode or self.last_phase.get(key) == state:
                return
            self.last_phase[key] = state
            duration = f"{node.duration_s:.1f}s" if node.duration_s is not None else ""
            suffix = f"  {node.message}" if node.message else ""
            self.console.print(
                f"{label:<32} {node.phase:<10} {duration:>8}{suffix}", highlight=False, markup=False
            )

    def table(self) -> Table:
        """The live table: one row per node, running durations ticking."""
        table = Table(box=None, show_header=True, header_style="bold")
        table.add_column("node")
        table.add_column("phase")
        table.add_column("duration", justify="right")
        table.add_column("message", overflow="fold")
        with self.lock:
            rows = list(self.rows.values())
        for label, node in rows:
            if node.duration_s is not None:
                duration = f"{node.duration_s:.1f}s"
            elif node.started is not None:
                duration = f"{(now() - node.started).total_seconds():.1f}s"
            else:
                duration = ""
            style = PHASE_STYLES.get(node.phase, "")
            message = node.message  # while Running: the last attempt's failure and next try
            table.add_row(Text(label), Text(node.phase, style=style), duration, Text(message))
        return table

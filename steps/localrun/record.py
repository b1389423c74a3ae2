"""The run record: what a local run did, written to ``<state_dir>/runs/<name>/record.json``."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

NodeType = Literal["Pod", "DAG", "Resource", "Skipped"]
FAILED_PHASES = frozenset({"Failed", "Error"})


def now() -> datetime:
    """The current time in UTC (records use timezone-aware times)."""
    return datetime.now(UTC)


class NodeOutputs(BaseModel):
    """A node's outputs: parameters, artifact URIs and the captured standard output."""

    model_config = ConfigDict(extra="forbid")

    parameters: dict[str, str] = Field(default_factory=dict)
    artifacts: dict[str, str] = Field(default_factory=dict)
    result: str | None = None


class NodeRecord(BaseModel):
    """One node of the run (a DAG task, the entry template, a child trigger)."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    display_name: str
    template: str
    type: NodeType
    phase: str = "Pending"
    started: datetime | None = None
    finished: datetime | None = None
    duration_s: float | None = None
    exit_code: int | None = None
    attempts: int = 0
    outputs: NodeOutputs = Field(default_factory=NodeOutputs)
    log: str | None = None
    message: str = ""
    child: str | None = None

    def start(self) -> None:
        """Mark the node running now."""
        self.started = now()
        self.phase = "Running"

    def finish(self, phase: str, message: str = "") -> None:
        """Mark the node finished with ``phase`` now."""
        self.finished = now()
        if self.started is not None:
            self.duration_s = round((self.finished - self.started).total_seconds(), 3)
        self.message = message or self.message
        self.phase = phase


class ChildRun(BaseModel):
    """A workflow a resource node created, run to completion beside its parent."""

    model_config = ConfigDict(extra="forbid")

    node: str
    name: str
    phase: str
    record: str


class RunRecord(BaseModel):
    """The whole run: identity, parameters, phase and every node."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    name: str
    uid: str
    namespace: str
    file: str
    kind: str
    entrypoint: str
    run_dir: str
    phase: str = "Running"
    message: str = ""
    started: datetime = Field(default_factory=now)
    finished: datetime | None = None
    duration_s: float | None = None
    parameters: dict[str, str] = Field(default_factory=dict)
    retries: int = 0
    """How many times ``loopline runs retry`` ran it again."""
    nodes: list[NodeRecord] = Field(default_factory=list)
    children: list[ChildRun] = Field(default_factory=list)

    def failed_nodes(self) -> list[NodeRecord]:
        """The Pod and Resource nodes that ended Failed or Error, in the order they started."""
        return [n for n in self.nodes if n.phase in FAILED_PHASES and n.type != "DAG"]

    def node(self, display_name: str) -> NodeRecord:
        """Return the node with that display name (a task name, ``dag.task`` when nested).

        Raises:
            KeyError: when the run has no such node.
        """
        for node in self.nodes:
            if node.display_name == display_name:
                return node
        raise KeyError(display_name)


def write_record(record: RunRecord, path: Path) -> None:
    """Write the record as JSON (atomically: a reader never sees half a file)."""
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(record.model_dump_json(indent=2), encoding="utf-8")
    temporary.replace(path)


def read_record(path: Path) -> RunRecord:
    """Read a record written by :func:`write_record`."""
    return RunRecord.model_validate_json(path.read_text(encoding="utf-8"))


def log_tail(node: NodeRecord, lines: int = 20) -> list[str]:
    """Return the last ``lines`` lines of a node's log (empty when it has none)."""
    if node.log is None or not Path(node.log).is_file():
        return []
    text = Path(node.log).read_text(encoding="utf-8", errors="replace")
    return text.splitlines()[-lines:]

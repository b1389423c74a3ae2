"""The runs of this state directory: ``<state_dir>/runs/<name>/record.json``, one per run.

What ``loopline runs`` lists, shows, retries and deletes. A run's nodes keep their logs in
``nodes/<node>/log.txt`` of its directory. Child runs (started by a resource node) are runs of
their own and are listed too.
"""

from __future__ import annotations

import difflib
import shutil
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from steps.core.errors import WorkflowError
from steps.localrun.record import NodeRecord, RunRecord, now, read_record

RECORD = "record.json"


def all_runs(runs_root: Path) -> list[RunRecord]:
    """Every readable run under ``runs_root``, newest first (a directory without a readable
    record, such as one being created, is left out)."""
    found = []
    for record in runs_root.glob(f"*/{RECORD}"):
        try:
            found.append(read_record(record))
        except (OSError, ValueError, ValidationError):
            continue
    return sorted(found, key=lambda run: (run.started, run.name), reverse=True)


def find_run(runs_root: Path, name: str) -> RunRecord:
    """Return the run named ``name``.

    Raises:
        WorkflowError: naming the runs there are (the closest first) when there is none.
    """
    path = runs_root / name / RECORD
    if name and "/" not in name and path.is_file():
        try:
            return read_record(path)
        except (OSError, ValueError, ValidationError) as err:
            raise WorkflowError(f"{path}: not a readable run record: {err}") from err
    names = [run.name for run in all_runs(runs_root)]
    if not names:
        raise WorkflowError(f"no run named {name!r}: no run yet under {runs_root} (make demo)")
    close = difflib.get_close_matches(name, names, n=3)
    shown = ", ".join(close or names[:10])
    return_hint = "closest" if close else "newest"
    raise WorkflowError(f"no run named {name!r} under {runs_root}; {return_hint}: {shown}")


def find_node(run: RunRecord, node: str) -> NodeRecord:
    """Return ``run``'s node ``node`` (its display name: the task, ``dag.task`` when nested).

    Raises:
        WorkflowError: naming the nodes the run has when it has no such node.
    """
    try:
        return run.node(node)
    except KeyError:
        nodes = ", ".join(n.display_name for n in run.nodes if n.type != "DAG")
        raise WorkflowError(f"run {run.name!r} has no node {node!r}; its nodes: {nodes}") from None


def older_than(text: str) -> timedelta:
    """Parse an age such as ``30m``, ``12h`` or ``7d``.

    Raises:
        WorkflowError: for anything else, naming the expected form.
    """
    units = {"m": "minutes", "h": "hours", "d": "days"}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit():
        raise WorkflowError(f"--older-than {text!r}: expected a number and m, h or d (e.g. 7d)")
    return timedelta(**{units[unit]: int(number)})


def delete_runs(runs_root: Path, names: list[str], age: timedelta | None) -> list[str]:
    """Delete the runs named (each must exist) or, with ``age``, the finished runs that ended
    longer ago; a run still Running is never deleted. Return the names deleted.

    Raises:
        WorkflowError: for an unknown name, a running run named, or neither names nor an age.
    """
    if not names and age is None:
        raise WorkflowError("name the runs to delete, or give --older-than AGE (e.g. 7d)")
    chosen = [find_run(runs_root, name) for name in names]
    if age is not None:
        cutoff: datetime = now() - age
        chosen += [
            run for run in all_runs(runs_root)
            if run.finished is not None and run.finished < cutoff and run not in chosen
        ]  # fmt: skip
    running = [run.name for run in chosen if run.phase == "Running" and run.finished is None]
    if running:
        raise WorkflowError(f"runs still Running are never deleted: {', '.join(running)}")
    for run in chosen:
        shutil.rmtree(runs_root / run.name)
    return [run.name for run in chosen]

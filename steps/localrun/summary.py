"""What a finished run decided, task by task: the closing lines of ``loopline run``.

Generic on purpose: the runner knows nothing about models. Each task (every node but the DAGs)
gets one line with its phase, followed by what explains it:

- a task that ran and succeeded: its output parameters, one ``name=value`` per line (the values
  a step wrote to decide what comes next, such as a gate's decision and reasons);
- a skipped or omitted task: why (its ``when`` or ``depends``);
- a failed task: its exit code, the number of attempts, its message and the last lines of its log.

Values are shown on one line and shortened to :data:`MAX_VALUE_CHARS` characters.
"""

from __future__ import annotations

from rich.text import Text

from steps.localrun.progress import PHASE_STYLES
from steps.localrun.record import FAILED_PHASES, NodeRecord, RunRecord, log_tail

MAX_VALUE_CHARS = 160
LOG_TAIL_LINES = 20
_INDENT = "  "


def shorten(value: str, limit: int = MAX_VALUE_CHARS) -> str:
    """Return ``value`` on one line, cut to ``limit`` characters with the full length noted."""
    flat = " ".join(value.split())
    if len(flat) <= limit:
        return flat
    note = f"... ({len(flat)} chars)"
    return flat[: max(limit - len(note), 1)] + note


def summary_lines(record: RunRecord, *, log_lines: int = LOG_TAIL_LINES) -> list[Text]:
    """Return the run's task-by-task summary: a heading, then one block per task.

    Returns:
        Lines ready to print; empty when the run has no task nodes.
    """
    tasks = [node for node in record.nodes if node.type != "DAG"]
    if not tasks:
        return []
    width = max(len(node.display_name) for node in tasks)
    lines = [Text("what the run decided:", style="bold")]
    for node in tasks:
        details = _details(node)
        head, rest = (details[0], details[1:]) if details else ("", [])
        lines.append(
            Text.assemble(
                f"{_INDENT}{node.display_name:<{width}}  ",
                (f"{node.phase:<9}", PHASE_STYLES.get(node.phase, "")),
                f"  {head}".rstrip(),
            )
        )
        indent = " " * (len(_INDENT) + width + 2 + 9 + 2)
        lines.extend(Text(f"{indent}{detail}") for detail in rest)
        if node.phase in FAILED_PHASES and node.type == "Pod":
            tail = log_tail(node, log_lines)
            if tail:
                count = f"{len(tail)} line{'s' if len(tail) != 1 else ''}"
                lines.append(Text(f"{indent}last {count} of {node.log}:"))
                lines.extend(Text(f"{indent}{_INDENT}{line}") for line in tail)
    return lines


def _details(node: NodeRecord) -> list[str]:
    if node.phase in FAILED_PHASES:
        return [_failure(node)]
    details = [shorten(node.message)] if node.message else []
    details += [f"{name}={shorten(value)}" for name, value in node.outputs.parameters.items()]
    return details


def _failure(node: NodeRecord) -> str:
    """``exit code 2, 1 attempt: not retried: ...``: what failed, how often, and why."""
    facts: list[str] = []
    message = node.message
    if node.exit_code is not None:
        facts.append(f"exit code {node.exit_code}")
        message = message.removeprefix(f"exit code {node.exit_code}").lstrip("; ")
    if node.attempts:
        facts.append(f"{node.attempts} attempt{'s' if node.attempts != 1 else ''}")
    text = ", ".join(facts)
    if message:
        text = f"{text}: {message}" if text else message
    return shorten(text, 2 * MAX_VALUE_CHARS)

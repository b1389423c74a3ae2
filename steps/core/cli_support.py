"""What every Loopline command line shares: error reporting and the console.

Nothing a command prints or logs carries a credential: the shared :data:`console` redacts every
string it prints, and :func:`reports_errors` redacts error messages, log records and the
traceback of an unexpected error (:mod:`steps.core.redact`).
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import sys
import traceback
import warnings
from collections.abc import Callable
from types import TracebackType
from typing import Annotated, Any, ParamSpec, TypeVar

import typer
import yaml
from rich.console import Console
from rich.table import Table

from steps.core.errors import LooplineError
from steps.core.redact import redact

P = ParamSpec("P")
R = TypeVar("R")


class RedactingConsole(Console):
    """A rich console that prints strings with their credentials redacted (renderables such as
    tables are printed as they are: build them from redacted values)."""

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Print like :meth:`rich.console.Console.print`, each string through :func:`redact`."""
        super().print(*(redact(o) if isinstance(o, str) else o for o in objects), **kwargs)


console = RedactingConsole(stderr=True, highlight=False, soft_wrap=True)

# MLflow's INFO chatter and per-file download bars drown the step's own progress lines.
_QUIET_LOGGERS = ("mlflow", "alembic", "botocore", "urllib3")
# Warnings these emit on every model log (pickling our own installed class, pip version) are
# about choices made deliberately here, see steps/pyfunc.py.
_SILENT_LOGGERS = ("mlflow.pyfunc", "mlflow.utils.environment")


def quiet_libraries() -> None:
    """Keep third-party logging at WARNING and turn off MLflow's download progress bars."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in _SILENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")


def redact_output() -> None:
    """Redact credentials from every log record created from now on and from the traceback of
    an uncaught exception, in this process (a library's message may quote a URI with its
    password: MLflow's failed-request errors do). Calling it again changes nothing."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "redacts", False):
        logging.setLogRecordFactory(_redacting_factory(factory))
    sys.excepthook = _redacting_excepthook


def _redacting_factory(
    create: Callable[..., logging.LogRecord],
) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = create(*args, **kwargs)
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return record  # a malformed call: logging's handler reports it as it always does
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return record

    factory.redacts = True  # type: ignore[attr-defined]
    return factory


def _redacting_excepthook(
    kind: type[BaseException], value: BaseException, trace: TracebackType | None
) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, value, trace))))


def new_app(help_text: str, *, completion: bool = False) -> typer.Typer:
    """Return a Typer app configured the Loopline way (no pretty tracebacks, -h for help);
    ``completion`` adds ``--install-completion`` and ``--show-completion`` (the top command)."""
    return typer.Typer(
        help=help_text,
        add_completion=completion,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a CLI command: quiet third-party logs, redact credentials from what it prints and
    logs, and turn a :class:`LooplineError` into a one-paragraph message and its exit code (1 a
    service failed, 2 bad input, 3 a gate said no; see :mod:`steps.core.errors`). Anything else
    is a bug: it keeps its (redacted) traceback and exits 1.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        quiet_libraries()
        redact_output()
        try:
            return func(*args, **kwargs)
        except LooplineError as err:
            console.print(f"[bold red]error:[/] {redact(str(err))}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from err

    return wrapper


class Output(enum.StrEnum):
    """What a read command prints: a table for people, JSON or YAML for scripts."""

    table = "table"
    json = "json"
    yaml = "yaml"


UNBOUNDED_WIDTH = 10_000
OutputOption = Annotated[
    Output, typer.Option("-o", "--output", help="table for people; json or yaml for scripts")
]


def emit(rows: list[dict[str, Any]], output: Output, title: str | None = None) -> None:
    """Print ``rows`` (dicts with the same keys) as ``output``: JSON and YAML unwrapped on
    stdout, a table that folds long cells rather than cutting them."""
    if output is Output.json:
        sys.stdout.write(json.dumps(rows, indent=2, default=str) + "\n")
        return
    if output is Output.yaml:
        sys.stdout.write(yaml.safe_dump(json.loads(json.dumps(rows, default=str)), sort_keys=False))
        return
    table = Table(title=title, title_justify="left")
    for key in rows[0] if rows else []:
        table.add_column(key.replace("_", " "), overflow="fold")
    for row in rows:
        table.add_row(*("" if value is None else str(value) for value in row.values()))
    # A terminal folds long cells to its width; a pipe or a file gets every line whole.
    (console if console.is_terminal else Console(width=UNBOUNDED_WIDTH)).print(table)

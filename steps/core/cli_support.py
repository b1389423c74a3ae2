"""What every Loopline command line shares: error reporting and the console."""

from __future__ import annotations

import functools
import logging
import os
import warnings
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from steps.core.errors import LooplineError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True, highlight=False, soft_wrap=True)

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


def new_app(help_text: str) -> typer.Typer:
    """Return a Typer app configured the Loopline way (no pretty tracebacks, -h for help)."""
    return typer.Typer(
        help=help_text,
        add_completion=False,
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )


def reports_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Run a CLI command: quiet third-party logs, and turn a :class:`LooplineError` into a
    one-paragraph message and its exit code (1 a service failed, 2 bad input, 3 a gate said no;
    see :mod:`steps.core.errors`). Anything else is a bug: it keeps its traceback and exits 1.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        quiet_libraries()
        try:
            return func(*args, **kwargs)
        except LooplineError as err:
            console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from err

    return wrapper

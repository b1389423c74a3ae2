"""What every Loopline command line shares: error reporting and the console."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

import typer
from rich.console import Console

from steps.errors import LooplineError

P = ParamSpec("P")
R = TypeVar("R")

console = Console(stderr=True, highlight=False)


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
    """Turn a :class:`LooplineError` into a one-paragraph message and its exit code.

    Anything else is a bug and keeps its traceback.
    """

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except LooplineError as err:
            console.print(f"[bold red]error:[/] {err}", soft_wrap=True)
            raise typer.Exit(err.exit_code) from err

    return wrapper

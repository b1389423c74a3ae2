"""The ``loopline`` command itself: its version and shell completion, and the demo's next step."""

from __future__ import annotations

from importlib.metadata import version

from typer.testing import CliRunner

from steps import demo
from steps.cli import app
from steps.core.settings import Settings


def test_version_prints_the_package_version() -> None:
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"loopline {version('loopline')}\n"


def test_completion_is_offered_for_the_common_shells() -> None:
    # Typer writes the script for the shell it detects from the process tree (none in CI).
    result = CliRunner().invoke(app, ["--help"])
    assert "--install-completion" in result.output and "--show-completion" in result.output


def test_the_demo_says_what_to_do_next_from_how_far_the_run_got() -> None:
    settings = Settings()
    promoted = {"evaluate": {"decision": "promote"}, "promote": {"outcome": "promoted"}}
    assert "`make serve` serves the champion" in demo._next_step(promoted, settings)
    rejected = {"evaluate": {"decision": "reject"}}
    assert "the gate kept the champion" in demo._next_step(rejected, settings)
    rolled = {"evaluate": {"decision": "promote"}, "promote": {"outcome": "rolled_back"}}
    assert "rolled back" in demo._next_step(rolled, settings)
    stopped = {"evaluate": {"decision": "promote"}}
    assert "loopline model promote churn VERSION" in demo._next_step(stopped, settings)
    assert "loopline runs show" in demo._next_step({}, settings)

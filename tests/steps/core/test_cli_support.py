"""What every command shares prints and logs no credential: error messages, console lines, log
records and the traceback of an unexpected error."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
import typer
from typer.testing import CliRunner

from steps.core.cli_support import RedactingConsole, new_app, redact_output, reports_errors
from steps.core.errors import ServiceError

PASSWORD = "hunter2-pw"


@pytest.fixture
def record_factory() -> Iterator[None]:
    """Restore logging's record factory after a test installs the redacting one."""
    saved = logging.getLogRecordFactory()
    saved_hook = sys.excepthook
    yield
    logging.setLogRecordFactory(saved)
    sys.excepthook = saved_hook


def _app(error: Exception) -> typer.Typer:
    app = new_app("test")

    @app.command()
    @reports_errors
    def fail() -> None:
        raise error

    @app.command()
    def other() -> None:  # a second command keeps Typer from collapsing to one
        pass

    return app


def test_an_error_message_is_printed_without_credentials(record_factory: None) -> None:
    error = ServiceError(f"cannot reach https://alice:{PASSWORD}@mlflow:5000/api/2.0?token=t1")
    result = CliRunner().invoke(_app(error), ["fail"])
    assert result.exit_code == 1
    assert "https://alice:***@mlflow:5000/api/2.0?token=***" in result.output
    assert PASSWORD not in result.output
    assert "t1" not in result.output


def test_the_console_redacts_every_string_it_prints() -> None:
    out = io.StringIO()
    console = RedactingConsole(file=out, highlight=False, soft_wrap=True)
    console.print(f"archive s3://b/k?X-Amz-Signature={PASSWORD}", "and", 3)
    assert out.getvalue() == "archive s3://b/k?X-Amz-Signature=*** and 3\n"


def test_log_records_are_redacted_once_output_is_protected(
    record_factory: None, caplog: pytest.LogCaptureFixture
) -> None:
    redact_output()
    redact_output()  # twice: still one redacting layer
    with caplog.at_level(logging.WARNING, logger="loopline.test"):
        logging.getLogger("loopline.test").warning(
            "retrying %s (attempt %d)", f"http://u:{PASSWORD}@h/", 2
        )
    assert caplog.records[-1].getMessage() == "retrying http://u:***@h/ (attempt 2)"
    assert PASSWORD not in caplog.text


def test_an_unexpected_error_keeps_its_traceback_without_credentials() -> None:
    code = (
        "from steps.core.cli_support import redact_output\n"
        "redact_output()\n"
        f"raise RuntimeError('request to https://u:{PASSWORD}@h/ failed')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert "RuntimeError: request to https://u:***@h/ failed" in done.stderr
    assert PASSWORD not in done.stderr

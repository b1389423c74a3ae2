"""The tracking URI's credentials never reach a message: the MLflow UI command, the error of a
store that cannot be reached, and what a ``loopline`` command prints."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from steps.cli import app
from steps.core.errors import RegistryError, ServiceError
from steps.core.settings import load_settings
from steps.io import tracking
from tests.fixtures.common import free_port

PASSWORD = "hunter2-pw"


@pytest.fixture
def unreachable_server(loopline_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A tracking URI with credentials, on a loopback port nothing listens on; MLflow gives up
    at once. Logging's record factory and the excepthook are restored afterwards."""
    uri = f"http://alice:{PASSWORD}@127.0.0.1:{free_port()}"
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    saved, saved_hook = logging.getLogRecordFactory(), sys.excepthook
    yield uri
    logging.setLogRecordFactory(saved)
    sys.excepthook = saved_hook


def test_ui_command_shows_the_server_without_its_password(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", f"https://alice:{PASSWORD}@mlflow.example/")
    settings = load_settings()
    assert tracking.ui_command(settings) == "open https://alice:***@mlflow.example/"
    assert tracking.shown_tracking_uri(settings) == "https://alice:***@mlflow.example/"


def test_ui_command_of_the_embedded_store_names_the_make_target(loopline_env: Path) -> None:
    assert tracking.ui_command(load_settings()).startswith("make mlflow-ui")


def test_an_unreachable_store_is_named_without_its_password(unreachable_server: str) -> None:
    with pytest.raises(ServiceError) as caught:
        tracking.connect(load_settings())
    message = str(caught.value)
    assert "cannot use MLflow tracking store 'http://alice:***@127.0.0.1:" in message
    assert PASSWORD not in message


def test_a_loopline_command_prints_the_store_without_its_password(
    unreachable_server: str,
) -> None:
    result = CliRunner().invoke(app, ["model", "show", "churn"])
    assert result.exit_code == 1, result.output
    assert "http://alice:***@127.0.0.1:" in result.output
    assert PASSWORD not in result.output


def test_mlflow_error_redacts_mlflow_s_own_message() -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos.databricks_pb2 import RESOURCE_DOES_NOT_EXIST

    err = MlflowException(
        f"API request to https://bob:{PASSWORD}@h/api failed", error_code=RESOURCE_DOES_NOT_EXIST
    )
    classified = tracking.mlflow_error(err, "cannot read model churn")
    assert isinstance(classified, RegistryError)
    assert str(classified) == "cannot read model churn: API request to https://bob:***@h/api failed"

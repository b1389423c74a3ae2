"""The exit-code contract: 1 a service failed (retried), 2 bad input, 3 a gate said no,
4 a canary was rolled back."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from steps.core import errors
from steps.core.cli_support import reports_errors
from steps.core.errors import (
    NOT_RETRIED_EXIT_CODES,
    BuildError,
    CanaryRolledBack,
    ConfigError,
    DataError,
    DeployConflict,
    DeployError,
    GateRejected,
    LooplineError,
    PromotionLocked,
    RegistryError,
    ServabilityError,
    ServiceError,
    StackError,
    StoreError,
    WorkflowError,
)
from steps.core.settings import Settings
from steps.io import tracking

EXPECTED_EXIT_CODES: dict[type[LooplineError], int] = {
    ConfigError: 2,
    DataError: 2,
    RegistryError: 2,
    StoreError: 1,
    ServabilityError: 2,
    WorkflowError: 2,
    GateRejected: 3,
    ServiceError: 1,
    BuildError: 1,
    DeployError: 1,
    DeployConflict: 2,
    StackError: 2,
    PromotionLocked: 2,
    CanaryRolledBack: 4,
}


def test_every_error_class_has_its_documented_exit_code() -> None:
    defined = {
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, LooplineError)
        and value is not LooplineError
    }
    assert defined == set(EXPECTED_EXIT_CODES)  # a new class must be placed in the contract
    assert {cls: cls.exit_code for cls in defined} == EXPECTED_EXIT_CODES
    assert NOT_RETRIED_EXIT_CODES == (2, 3, 4)


def _app(raised: BaseException) -> typer.Typer:
    app = typer.Typer()

    @app.command()
    @reports_errors
    def fail(count: int = 1) -> None:
        """Raise the error under test."""
        raise raised

    return app


@pytest.mark.parametrize(("error_class", "exit_code"), list(EXPECTED_EXIT_CODES.items()))
def test_the_cli_layer_exits_with_the_errors_code_and_a_one_line_message(
    error_class: type[LooplineError], exit_code: int
) -> None:
    result = CliRunner().invoke(_app(error_class("store s3://x has no y")), [])
    assert result.exit_code == exit_code
    assert "error: store s3://x has no y" in result.output
    assert "Traceback" not in result.output


def test_an_unexpected_exception_exits_1_keeping_its_traceback() -> None:
    result = CliRunner().invoke(_app(KeyError("bug")), [])
    assert result.exit_code == 1
    assert isinstance(result.exception, KeyError)  # not turned into a message: a bug shows


def test_a_usage_error_exits_2() -> None:
    result = CliRunner().invoke(_app(ConfigError("unused")), ["--count", "many"])
    assert result.exit_code == 2
    assert "Invalid value for '--count'" in result.output


@pytest.mark.parametrize(
    ("error_code", "expected"),
    [
        ("RESOURCE_DOES_NOT_EXIST", RegistryError),
        ("INVALID_PARAMETER_VALUE", RegistryError),
        ("PERMISSION_DENIED", RegistryError),
        ("INTERNAL_ERROR", ServiceError),
        ("TEMPORARILY_UNAVAILABLE", ServiceError),
    ],
)
def test_mlflow_errors_are_classified_by_the_status_they_stand_for(
    error_code: str, expected: type[LooplineError]
) -> None:
    from mlflow.exceptions import MlflowException
    from mlflow.protos import databricks_pb2

    failure = MlflowException("no such thing", error_code=getattr(databricks_pb2, error_code))
    classified = tracking.mlflow_error(failure, "reading run 42")
    assert type(classified) is expected
    assert str(classified) == "reading run 42: no such thing"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def unreachable_tracking(loopline_env: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A tracking URI nothing listens on, with MLflow's own HTTP retries turned off."""
    uri = f"http://127.0.0.1:{_closed_port()}"
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    return uri


def test_an_unreachable_tracking_server_is_a_service_error(unreachable_tracking: str) -> None:
    with pytest.raises(
        ServiceError, match=re.escape(f"cannot use MLflow tracking store '{unreachable_tracking}'")
    ):
        tracking.connect(Settings())


def test_a_step_that_cannot_reach_mlflow_exits_1_so_argo_retries_it(
    unreachable_tracking: str,
) -> None:
    from steps.cli import model_app

    result = CliRunner().invoke(model_app, ["show", "churn"])
    assert result.exit_code == 1
    assert f"error: cannot use MLflow tracking store '{unreachable_tracking}'" in result.output
    assert "Traceback" not in result.output


def test_an_experiment_created_meanwhile_by_another_step_is_used_not_refused(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow

    settings = Settings()
    created = tracking.connect(settings)
    real_lookup = mlflow.get_experiment_by_name
    lookups: list[str] = []

    def lookup_before_the_other_step_created_it(name: str) -> object:
        lookups.append(name)
        return None if len(lookups) == 1 else real_lookup(name)

    monkeypatch.setattr(mlflow, "get_experiment_by_name", lookup_before_the_other_step_created_it)

    assert tracking.connect(settings) == created  # create_experiment said "already exists"
    assert lookups == [settings.experiment, settings.experiment]

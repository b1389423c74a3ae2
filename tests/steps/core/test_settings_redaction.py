"""Settings never show a credential: not in an error about a rejected value, not in their repr,
while the values themselves stay whole for the code that uses them."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from steps.core.errors import ConfigError
from steps.core.settings import _Section, describe_validation_error, load_settings

PASSWORD = "hunter2-pw"


def test_a_rejected_uri_is_echoed_without_its_password(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", f"mysql://admin:{PASSWORD}@db:3306/mlflow")
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "LOOPLINE_TRACKING_URI" in message
    assert "sqlite:///" in message  # the expected form
    assert "mysql://admin:***@db:3306/mlflow" in message
    assert PASSWORD not in message


def test_a_rejected_signed_uri_is_echoed_without_its_signature(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "LOOPLINE_ARTIFACT_STORE", "https://b.example/p?X-Amz-Signature=f00dfeed&X-Amz-Date=1"
    )
    with pytest.raises(ConfigError) as caught:
        load_settings()
    assert "X-Amz-Signature=***&X-Amz-Date=1" in str(caught.value)
    assert "f00dfeed" not in str(caught.value)


def test_a_rejected_cli_override_with_credentials_is_redacted(loopline_env: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_settings(canary={"prometheus_url": f"ftp://ops:{PASSWORD}@prom:9090"})
    assert "LOOPLINE_CANARY__PROMETHEUS_URL" in str(caught.value)
    assert "ftp://ops:***@prom:9090" in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_an_unknown_secret_looking_variable_is_named_but_its_value_never_shown(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_S3__SECRET_ACCESS_KEY", PASSWORD)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert "LOOPLINE_S3__SECRET_ACCESS_KEY" in message
    assert "not shown" in message
    assert PASSWORD not in message


class _WithSecret(BaseModel):
    api_token: SecretStr
    db_password: int
    endpoint: str


def test_describe_validation_error_never_echoes_a_secret_field_and_redacts_the_rest() -> None:
    with pytest.raises(ValidationError) as caught:
        _WithSecret.model_validate(
            {"api_token": 12, "db_password": PASSWORD, "endpoint": ["https://u:pw9@h/"]}
        )
    message = describe_validation_error(caught.value)
    assert "LOOPLINE_DB_PASSWORD: Input should be a valid integer" in message
    assert PASSWORD not in message
    assert "LOOPLINE_API_TOKEN" in message
    assert "(got 12)" not in message
    assert "LOOPLINE_ENDPOINT" in message
    assert "['https://u:***@h/']" in message
    assert "pw9" not in message


def test_settings_repr_masks_credentials_but_values_and_dump_stay_whole(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = f"https://alice:{PASSWORD}@mlflow.example:443/"
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", uri)
    monkeypatch.setenv("LOOPLINE_CANARY__PROMETHEUS_URL", f"http://ops:{PASSWORD}@prom:9090")
    settings = load_settings()
    for shown in (repr(settings), str(settings), repr(settings.canary), f"{settings!r}"):
        assert PASSWORD not in shown
    assert "https://alice:***@mlflow.example:443/" in repr(settings)
    assert "http://ops:***@prom:9090" in repr(settings.canary)
    # The code that connects needs the real value, and load_settings round-trips the dump.
    assert settings.resolved_tracking_uri == uri
    assert settings.model_dump()["tracking_uri"] == uri
    assert load_settings(seed=7).tracking_uri == uri


class _SecretSection(_Section):
    token: SecretStr
    db_password: str
    endpoint: str


def test_a_section_masks_secret_fields_in_repr_and_a_secret_str_in_a_printed_dump() -> None:
    section = _SecretSection(
        token=SecretStr(PASSWORD), db_password=PASSWORD, endpoint=f"s3://b/k?token={PASSWORD}"
    )
    assert PASSWORD not in repr(section)
    assert "db_password='***'" in repr(section)
    assert "endpoint='s3://b/k?token=***'" in repr(section)
    assert PASSWORD not in str(section.model_dump()["token"])
    assert PASSWORD not in section.model_dump_json(include={"token"})
    assert section.token.get_secret_value() == PASSWORD

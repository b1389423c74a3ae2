"""Settings: defaults in code, then environment, then CLI overrides; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import ConfigError
from steps.core.settings import load_settings


def test_defaults_keep_everything_under_the_state_dir(loopline_env: Path) -> None:
    settings = load_settings()
    assert settings.resolved_tracking_uri == f"sqlite:///{loopline_env.resolve()}/mlflow.db"
    assert settings.resolved_artifact_store == (loopline_env.resolve() / "artifacts").as_uri()
    assert settings.tracking_is_local
    assert not loopline_env.exists()  # nothing created by loading settings


def test_environment_overrides_defaults_and_nests_with_double_underscore(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_GATE__MIN_VALUE", "0.85")
    monkeypatch.setenv("LOOPLINE_TRAIN__MODEL_KIND", "sklearn-hgb")
    monkeypatch.setenv("LOOPLINE_TRACKING_URI", "http://mlflow:5000")
    settings = load_settings()
    assert settings.gate.min_value == 0.85
    assert settings.train.model_kind == "sklearn-hgb"
    assert not settings.tracking_is_local


def test_cli_overrides_win_over_environment_and_none_means_not_given(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_GATE__MIN_VALUE", "0.85")
    monkeypatch.setenv("LOOPLINE_GATE__MAX_REGRESSION", "0.05")
    settings = load_settings(gate={"min_value": 0.6, "max_regression": None}, seed=None)
    assert settings.gate.min_value == 0.6
    assert settings.gate.max_regression == 0.05
    assert settings.seed == 42


@pytest.mark.parametrize(
    ("name", "value", "expected_fragment"),
    [
        ("LOOPLINE_GATE__MIN_VALUE", "abc", "valid number"),
        ("LOOPLINE_GATE__MIN_VALUE", "1.5", "less than or equal to 1"),
        ("LOOPLINE_SEED", "-3", "greater than or equal to 0"),
        ("LOOPLINE_TRAIN__MODEL_KIND", "lightgbm", "'xgboost'"),
        ("LOOPLINE_TRACKING_URI", "mysql://x", "sqlite:///"),
        ("LOOPLINE_ARTIFACT_STORE", "gs://bucket", "file:// or s3://"),
        ("LOOPLINE_MODEL_NAME", "bad name!", "pattern"),
    ],
)
def test_bad_values_name_the_variable_and_the_expected_form(
    loopline_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    value: str,
    expected_fragment: str,
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    assert name in message
    assert expected_fragment in message
    assert repr(value) in message


def test_bad_cli_override_is_named_like_its_variable(loopline_env: Path) -> None:
    with pytest.raises(ConfigError, match="LOOPLINE_TRAIN__TEST_SIZE"):
        load_settings(train={"test_size": 2.0})


def test_settings_are_frozen(loopline_env: Path) -> None:
    settings = load_settings()
    with pytest.raises(ValueError, match="frozen"):
        settings.seed = 1  # type: ignore[misc]

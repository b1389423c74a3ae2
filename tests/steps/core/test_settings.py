"""Settings: defaults in code, then environment, then CLI overrides; bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import ConfigError
from steps.core.settings import load_settings, setting_variables, unknown_variables


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


def test_a_variable_missing_the_double_underscore_is_an_error_naming_the_setting(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the gate's minimum set with one underscore, as users type it
    monkeypatch.setenv("LOOPLINE_GATE_MIN_VALUE", "0.99")
    monkeypatch.setenv("LOOPLINE_SERVING__WORKERZ", "2")
    # Then no setting is read silently at its default
    with pytest.raises(ConfigError) as caught:
        load_settings()
    message = str(caught.value)
    unknown = "not a Loopline setting (value not shown); did you mean"
    assert f"LOOPLINE_GATE_MIN_VALUE: {unknown} LOOPLINE_GATE__MIN_VALUE?" in message
    assert f"LOOPLINE_SERVING__WORKERZ: {unknown} LOOPLINE_SERVING__WORKERS?" in message
    assert "0.99" not in message


def test_every_field_and_section_field_is_a_known_variable() -> None:
    known = setting_variables()
    assert {"LOOPLINE_STATE_DIR", "LOOPLINE_GATE__MIN_VALUE", "LOOPLINE_IMAGE__REGISTRY",
            "LOOPLINE_SERVING__MAX_BATCH_ROWS", "LOOPLINE_SCHEMAS_DIR"} <= known  # fmt: skip
    assert "LOOPLINE_GATE" not in known  # a section is not a setting
    assert unknown_variables({"LOOPLINE_GATE__MIN_VALUE": "0.9", "PATH": "/bin"}) == []
    assert unknown_variables({"LOOPLINE_QQQQQQQQQQ": "1"}) == [
        "  LOOPLINE_QQQQQQQQQQ: not a Loopline setting (value not shown)"
    ]


def test_a_list_setting_that_is_not_json_names_the_variable_and_the_form(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_DATA__ID_COLUMNS", "customer_id,event_timestamp")
    with pytest.raises(ConfigError, match=r"LOOPLINE_DATA__ID_COLUMNS: cannot parse the value; "
                       r"a list setting takes JSON"):  # fmt: skip
        load_settings()

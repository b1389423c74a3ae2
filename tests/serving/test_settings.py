"""Tests for serving/settings.py: one model source, named errors."""

from __future__ import annotations

import pytest

from serving.settings import ServingConfigError, load_serving_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("LOOPLINE_SERVING__"):
            monkeypatch.delenv(name)


def test_model_tag_alone_is_enough(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_SERVING__MODEL_TAG", "churn:abc")
    settings = load_serving_settings()
    assert settings.model_tag == "churn:abc"
    assert settings.model_dir is None
    assert settings.max_batch_rows == 1000
    assert settings.log_dir == ".loopline/inference-log"
    assert (settings.fault_error_ratio, settings.fault_delay_ms) == (0.0, 0.0)  # drills only


@pytest.mark.parametrize("tag, directory", [(None, None), ("churn:abc", "/models/churn")])
def test_exactly_one_model_source_is_required(
    monkeypatch: pytest.MonkeyPatch, tag: str | None, directory: str | None
) -> None:
    if tag:
        monkeypatch.setenv("LOOPLINE_SERVING__MODEL_TAG", tag)
    if directory:
        monkeypatch.setenv("LOOPLINE_SERVING__MODEL_DIR", directory)
    with pytest.raises(ServingConfigError) as caught:
        load_serving_settings()
    assert "LOOPLINE_SERVING__MODEL_TAG" in str(caught.value)
    assert "LOOPLINE_SERVING__MODEL_DIR" in str(caught.value)


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_BATCH_ROWS", "0"),
        ("MAX_BATCH_ROWS", "many"),
        ("LOG_DIR", "gs://bucket/log"),
        ("LOG_DIR", "s3:///no-bucket"),
        ("LOG_FLUSH_INTERVAL_S", "-1"),
        ("FAULT_ERROR_RATIO", "1.5"),
        ("FAULT_ERROR_RATIO", "-0.1"),
        ("FAULT_DELAY_MS", "-1"),
        ("FAULT_DELAY_MS", "10001"),
    ],
)
def test_bad_values_name_their_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("LOOPLINE_SERVING__MODEL_TAG", "churn:abc")
    monkeypatch.setenv(f"LOOPLINE_SERVING__{name}", value)
    with pytest.raises(ServingConfigError) as caught:
        load_serving_settings()
    assert f"LOOPLINE_SERVING__{name}:" in str(caught.value)
    assert repr(value) in str(caught.value)

"""Redaction: credentials in URIs, signed queries and secret name=value pairs are masked; the
rest of the text is left exactly as it was."""

from __future__ import annotations

import pytest

from steps.core.redact import MASK, is_secret_name, redact, redact_value


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("https://user:password@host/", "https://user:***@host/"),
        (
            "open http://alice:s3cret@mlflow:5000/#/models",
            "open http://alice:***@mlflow:5000/#/models",
        ),
        ("https://ghp_abc123@github.com/org/repo", "https://***@github.com/org/repo"),
        ("cannot use 'https://u:p@ss@h:5000/api' now", "cannot use 'https://u:***@h:5000/api' now"),
        (
            "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA%2F2024&X-Amz-Signature=9f1e&a=1",
            "GET https://b.s3.amazonaws.com/k?X-Amz-Credential=***&X-Amz-Signature=***&a=1",
        ),
        (
            "https://acct.blob.core.windows.net/c/b?sv=2022&sig=abc%3D",
            "https://acct.blob.core.windows.net/c/b?sv=2022&sig=***",
        ),
        ("LOOPLINE_X=https://h/?token=t0k3n==&b=2", "LOOPLINE_X=https://h/?token=***&b=2"),
        ("password=hunter2 key_columns=customer_id", "password=*** key_columns=customer_id"),
    ],
)
def test_credentials_are_masked_and_the_rest_kept(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "s3://bucket/bentos/loopline/model.v1.bento",
        "file:///state/artifacts/bentos/loopline/loopline-abc.bento",
        "sqlite:////tmp/state/mlflow.db",
        "registry.example/loopline@sha256:0123abcd",
        "git+https://github.com/org/repo@v1.2",
        "LOOPLINE_GATE__MIN_VALUE: less than or equal to 1 (got '1.5')",
    ],
)
def test_text_without_credentials_is_unchanged(text: str) -> None:
    assert redact(text) == text


def test_redacting_twice_changes_nothing_more() -> None:
    once = redact("https://u:p@h/?token=t&signature=s")
    assert redact(once) == once == f"https://u:{MASK}@h/?token={MASK}&signature={MASK}"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("password", True),
        ("LOOPLINE_S3__SECRET_ACCESS_KEY", True),
        ("api_key", True),
        ("X-Amz-Signature", True),
        ("mlflow_tracking_token", True),
        ("tracking_uri", False),
        ("key_columns", False),
        ("model_name", False),
        ("signal", False),
    ],
)
def test_secret_names_are_recognised_by_whole_segments(name: str, secret: bool) -> None:
    assert is_secret_name(name) is secret


def test_a_secret_setting_value_is_masked_whole_and_other_values_only_redacted() -> None:
    assert redact_value("db_password", "plain") == MASK
    assert redact_value("tracking_uri", "https://u:pw@h/") == f"https://u:{MASK}@h/"
    assert redact_value("seed", 42) == 42
    assert redact_value("api_token", None) is None

"""The promote step's inputs: the policy file, where Prometheus is, and its command line's errors.

The promotion itself runs against the real stack in tests/scripts/test_canary_drill.py and its
sequencing in tests/steps/canary/test_promotion.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from steps.cli import app
from steps.core.errors import ConfigError, DataError
from steps.core.settings import Settings, load_settings
from steps.promote import load_policy, metrics_source


def test_a_policy_file_overrides_only_the_fields_it_names(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_psi: 0.35\nmin_requests: 500\n", encoding="utf-8")
    settings = Settings(canary={"max_error_ratio": 0.02})

    chosen = load_policy(settings, policy)

    assert (chosen.max_psi, chosen.min_requests) == (0.35, 500)
    assert chosen.max_error_ratio == 0.02  # from the settings, untouched by the file
    assert chosen.min_requests_for("local") == 500


def test_a_policy_file_with_an_unknown_or_bad_field_names_the_file_and_field(
    tmp_path: Path,
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text("max_pssi: 0.3\nalpha: 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as raised:
        load_policy(Settings(), policy)
    message = str(raised.value)
    assert str(policy) in message
    assert "max_pssi: Extra inputs are not permitted" in message
    assert "alpha: Input should be less than 1 (got 2)" in message


@pytest.mark.parametrize(
    ("text", "expected"),
    [("- 1\n- 2\n", "expected a mapping of policy fields"), ("a: [", "cannot read it as YAML")],
)
def test_a_policy_file_that_is_not_a_mapping_is_a_data_error(
    tmp_path: Path, text: str, expected: str
) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=expected):
        load_policy(Settings(), policy)


def test_kubernetes_needs_prometheus_url_and_local_uses_the_stack(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = Settings(platform="kubernetes")
    with pytest.raises(ConfigError, match="LOOPLINE_CANARY__PROMETHEUS_URL"):
        metrics_source(cluster)
    local = Settings(stack={"prometheus_port": 19090})
    assert metrics_source(local).base_url == "http://127.0.0.1:19090"
    monkeypatch.setenv("LOOPLINE_CANARY__PROMETHEUS_URL", "prometheus:9090")
    with pytest.raises(ConfigError, match="LOOPLINE_CANARY__PROMETHEUS_URL: Value error, expected"):
        load_settings()


def test_the_command_line_refuses_bad_input_with_exit_2(tmp_path: Path, loopline_env: Path) -> None:
    out = str(tmp_path / "out")
    missing = CliRunner().invoke(app, ["promote", "--out-dir", out])
    assert missing.exit_code == 2, missing.output
    assert "--model-version: expected the canary's version number" in missing.output
    action = CliRunner().invoke(app, ["promote", "--out-dir", out, "--action", "deploy"])
    assert action.exit_code == 2 and "'deploy' is not one of" in action.output
    policy = tmp_path / "p.yaml"
    policy.write_text("interval_s: -1\n", encoding="utf-8")
    bad = CliRunner().invoke(app, ["canary", "promote", "7", "--policy", str(policy)])
    assert bad.exit_code == 2
    assert "interval_s: Input should be greater than 0" in " ".join(bad.output.split())
    assert not (tmp_path / "out").exists()

"""A bounded canary drill in the suite: real Prometheus, HAProxy, Locust and ``bentoml serve``.

Three versions are trained on 4k rows and built (about a minute); then, with a 5 s analysis
interval, a canary answering 500 for a fifth of its requests and a silently wrong model are
rolled back and a healthy retrain is promoted; the on-call commands then put the previous
champion back. ``make canary-drill`` runs all six scenarios at the local defaults.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from scripts import canary_drill
from steps.core import names
from steps.core.settings import Settings

pytestmark = pytest.mark.integration

INTERVAL_S = 5.0
TRAFFIC_RPS = 100.0


@pytest.fixture(scope="module")
def drilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Settings, object]]:
    from tests.fixtures.common import require_tool

    for tool in ("haproxy", "prometheus"):
        require_tool(tool)
    state = tmp_path_factory.mktemp("drill") / "state"
    settings = canary_drill.make_settings(state, INTERVAL_S, TRAFFIC_RPS, min_requests=30)
    from steps.io import tracking
    from steps.platform.local import LocalPlatform

    tracking.connect(settings)
    try:
        versions = canary_drill.prepare(settings, rows=4_000)
        yield settings, versions
    finally:
        LocalPlatform(settings).down()


def _tags(settings: Settings, version: str) -> dict[str, str]:
    from steps.io.registry import Registry

    return dict(Registry(settings.model_name).version(version).tags)


def test_faulty_canaries_roll_back_and_a_healthy_one_becomes_champion(
    drilled: tuple[Settings, canary_drill.Versions], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings, versions = drilled
    from steps.io.registry import Registry
    from steps.platform.local import LocalPlatform

    registry = Registry(settings.model_name)
    assert registry.alias_version(names.CHAMPION) == versions.stable  # the first deployment

    # Given a canary answering 500 for a fifth of its requests
    errors = canary_drill.Scenario("errors", "20% 500s", error_ratio=0.2)
    result = canary_drill.run_scenario(settings, errors, versions)
    # Then it is rolled back within two intervals, stable untouched, the champion unmoved
    assert result.outcome == "rolled_back" and result.as_expected, result
    assert result.intervals_to_decision <= 2.5
    assert any("error ratio" in reason for reason in result.reasons), result.reasons
    assert registry.alias_version(names.CHAMPION) == versions.stable
    tags = _tags(settings, versions.healthy)
    assert tags[names.CANARY_STATE_TAG] == "rolled_back"
    served = LocalPlatform(settings).served()
    assert served.canary is None and served.weights.canary == 0

    # Given a model answering 200 with inverted probabilities
    wrong = canary_drill.Scenario("wrong-model", "inverted", model="wrong")
    result = canary_drill.run_scenario(settings, wrong, versions)
    assert result.outcome == "rolled_back" and result.stable_untouched, result
    assert any("PSI" in reason for reason in result.reasons), result.reasons

    # Given a healthy retrain
    healthy = canary_drill.Scenario("healthy", "retrain", expected="promoted")
    result = canary_drill.run_scenario(settings, healthy, versions)
    # Then it walks every step, takes stable's place and becomes champion
    assert result.outcome == "promoted", result
    served = LocalPlatform(settings).served()
    assert served.stable is not None and served.stable.version == versions.healthy
    assert served.canary is None and served.weights.stable == 100
    assert registry.alias_version(names.CHAMPION) == versions.healthy
    assert registry.alias_version(names.PREVIOUS_CHAMPION) == versions.stable
    tags = _tags(settings, versions.healthy)
    assert tags[names.CANARY_STATE_TAG] == "promoted"
    report = Path(tags[names.CANARY_REPORT_TAG].removeprefix("file://"))
    record = json.loads((report / "analysis.json").read_text())
    assert [check["weight"] for check in record["checks"]][-1] == 100
    assert {c["weight"] for c in record["checks"]} >= {10, 30, 50, 100}
    assert (report / "analysis.html").is_file() and (report / "p99_ms.png").is_file()

    # The on-call commands: status shows no canary; rollback puts the previous champion back
    from steps.cli import app

    env = {
        "LOOPLINE_STATE_DIR": str(settings.state_dir),
        **{f"LOOPLINE_STACK__{k.upper()}": str(v) for k, v in settings.stack.model_dump().items()},
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    status = CliRunner().invoke(app, ["canary", "status"])
    assert status.exit_code == 0, status.output
    assert "no canary in progress" in status.output
    assert f"champion: v{versions.healthy}" in status.output
    nothing = CliRunner().invoke(app, ["canary", "abort"])
    assert nothing.exit_code == 2 and "no canary is deployed" in nothing.output
    rolled = CliRunner().invoke(app, ["canary", "rollback"])
    assert rolled.exit_code == 0, rolled.output
    served = LocalPlatform(settings).served()
    assert served.stable is not None and served.stable.version == versions.stable
    assert registry.alias_version(names.CHAMPION) == versions.stable
    assert registry.alias_version(names.PREVIOUS_CHAMPION) == versions.healthy

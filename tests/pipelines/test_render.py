"""Tests of pipelines/render.py: byte-stable output, the committed argo/ and --check."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipelines.render import DEFAULT_OUT_DIR, HEADER, RESOURCES, main, render_all, write_all
from pipelines.templates import retry_expression
from steps.localrun.retry_expression import LastRetry, parse_retry_expression

EXPECTED_FILES = {
    "retrain.yaml",
    "retrain-schedule.yaml",
    "retrain-submit.yaml",
    "drift-monitor.yaml",
    "retrain-webhook-eventsource.yaml",
    "retrain-on-event-sensor.yaml",
    "canary-promote.yaml",
    "canary-abort.yaml",
    "canary-rollback.yaml",
}


def test_render_is_byte_stable_across_two_renders(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"

    assert main(["--out-dir", str(first)]) == 0
    assert main(["--out-dir", str(second)]) == 0

    assert sorted(p.name for p in first.iterdir()) == sorted(EXPECTED_FILES)
    for name in EXPECTED_FILES:
        assert (first / name).read_bytes() == (second / name).read_bytes()


def test_committed_argo_dir_matches_a_fresh_render(capsys: pytest.CaptureFixture[str]) -> None:
    exit_code = main(["--check"])

    assert exit_code == 0, capsys.readouterr().err
    assert Path(__file__).resolve().parents[2] / "argo" == DEFAULT_OUT_DIR


def test_each_file_has_the_header_then_one_resource_with_sorted_keys() -> None:
    rendered = render_all()

    assert set(rendered) == EXPECTED_FILES == set(RESOURCES)
    for name, text in rendered.items():
        assert text.startswith(HEADER), name
        documents = list(yaml.safe_load_all(text))
        assert len(documents) == 1, name
        assert list(documents[0]) == sorted(documents[0]), name
        assert "creationTimestamp" not in text


def test_check_lists_the_file_that_differs_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_all(tmp_path)
    edited = tmp_path / "retrain-schedule.yaml"
    edited.write_text(edited.read_text().replace("Forbid", "Allow"))

    exit_code = main(["--check", "--out-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert exit_code == 1
    assert f"{edited}: differs" in err
    assert "retrain.yaml: differs" not in err


def test_check_reports_missing_and_unrendered_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_all(tmp_path)
    (tmp_path / "retrain-submit.yaml").unlink()
    (tmp_path / "old.yaml").write_text(HEADER + "kind: Workflow\n")

    exit_code = main(["--check", "--out-dir", str(tmp_path)])

    err = capsys.readouterr().err
    assert exit_code == 1
    assert "retrain-submit.yaml: missing" in err
    assert "old.yaml: not rendered by pipelines/" in err


def test_check_writes_nothing(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "retrain.yaml").write_text("edited\n")

    main(["--check", "--out-dir", str(tmp_path)])

    assert (tmp_path / "retrain.yaml").read_text() == "edited\n"


def test_render_removes_stale_generated_files_but_keeps_hand_written_ones(tmp_path: Path) -> None:
    (tmp_path / "stale.yaml").write_text(HEADER + "kind: Workflow\n")
    (tmp_path / "mine.yaml").write_text("kind: Workflow\n")

    written = write_all(tmp_path)

    assert {path.name for path in written} == EXPECTED_FILES
    assert not (tmp_path / "stale.yaml").exists()
    assert (tmp_path / "mine.yaml").exists()


WORKFLOW_KINDS = {"Workflow", "WorkflowTemplate", "CronWorkflow"}


def _retry_strategies(value: Any, where: str) -> Iterator[tuple[str, Any]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key == "retryStrategy":
                yield f"{where}.{key}", item
            else:
                yield from _retry_strategies(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _retry_strategies(item, f"{where}[{index}]")


def test_every_committed_retry_strategy_never_retries_bad_input_a_gate_or_a_rollback() -> None:
    strategies: dict[str, Any] = {}
    for path in sorted(DEFAULT_OUT_DIR.glob("*.yaml")):
        document = yaml.safe_load(path.read_text())
        if document["kind"] in WORKFLOW_KINDS:
            strategies.update(_retry_strategies(document, path.name))

    # The seven retrain steps, the drift check and the three canary templates.
    assert len(strategies) >= 11, sorted(strategies)
    for where, strategy in strategies.items():
        assert strategy["expression"] == retry_expression(), where
        assert strategy["retryPolicy"] == "Always", where
    # What the expression decides, as the local runner (and Argo) evaluates it after a failure.
    expression = parse_retry_expression(retry_expression())
    decisions = {
        code: expression.allows_retry(LastRetry(code, "Failed", 3.0, "", 0))
        for code in (1, 2, 3, 4, 137)
    }
    assert decisions == {1: True, 2: False, 3: False, 4: False, 137: True}
    assert expression.allows_retry(LastRetry(None, "Error", 3.0, "pod deleted", 0))

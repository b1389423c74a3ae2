"""Step outputs are written once, under the names the run contract declares."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.names import STEP_OUTPUTS
from steps.core.outputs import read_output, write_outputs


def test_a_step_writes_exactly_its_declared_outputs(tmp_path: Path) -> None:
    write_outputs(tmp_path, "deploy", {"track": "canary", "canary_weight": 10, "endpoint": "u"})
    assert read_output(tmp_path, "canary_weight") == "10"
    assert read_output(tmp_path, "track") == "canary"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(STEP_OUTPUTS["deploy"])


def test_a_missing_or_extra_output_is_a_programming_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"step register must write outputs"):
        write_outputs(tmp_path, "register", {})
    with pytest.raises(ValueError, match=r"step train must write outputs"):
        write_outputs(
            tmp_path, "train", {"run_id": "r", "data_hash": "h", "model_uri": "m", "x": 1}
        )
    assert not list(tmp_path.iterdir())


def test_every_rendered_step_template_declares_the_contract_outputs() -> None:
    import yaml

    argo = Path(__file__).resolve().parents[3] / "argo"
    seen = set()
    for path in sorted(argo.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            spec = document.get("spec") or {}
            spec = spec.get("workflowSpec", spec)  # a CronWorkflow wraps the workflow spec
            for template in spec.get("templates", []):
                command = (template.get("container") or {}).get("command", [])
                if command[:2] != ["python", "-m"]:
                    continue
                step = command[2].removeprefix("steps.")
                if "--fetch-to" in template["container"].get("args", []):
                    # containerize's fetch mode only hands the bento on, as an artifact
                    assert "parameters" not in template["outputs"], (path.name, step)
                    continue
                declared = tuple(p["name"] for p in template["outputs"]["parameters"])
                assert declared == STEP_OUTPUTS[step], (path.name, step)
                seen.add(step)
    assert {"train", "evaluate", "register", "build", "containerize", "drift", "deploy",
            "promote"} <= seen  # fmt: skip

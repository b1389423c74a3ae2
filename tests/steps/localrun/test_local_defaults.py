"""A parameter whose local default is a setting: the YAML keeps the cluster's default."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import WorkflowError
from steps.localrun.loader import load_workflow
from tests.steps.localrun.conftest import RunYaml, WriteYaml, line_of

WORKFLOW = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: data-
  annotations:
    loopline.dev/parameter-settings: '{"data-uri": "data.uri", "seed": "seed"}'
spec:
  entrypoint: main
  arguments:
    parameters:
      - {name: data-uri, value: "s3://loopline/data/churn.parquet"}
      - {name: seed, value: "1"}
      - {name: other, value: "kept"}
  templates:
    - name: main
      container:
        image: loopline:latest
        command: [python, -c, "print('ok')"]
"""


def test_a_set_setting_is_the_local_default_and_a_given_value_still_wins(
    run_yaml: RunYaml, loopline_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOOPLINE_DATA__URI", "/data/churn.csv")
    record = run_yaml(WORKFLOW)
    # data-uri from LOOPLINE_DATA__URI; seed from its setting (always set: default 42)
    assert record.parameters == {"data-uri": "/data/churn.csv", "seed": "42", "other": "kept"}
    again = run_yaml(WORKFLOW, {"data-uri": "/given.parquet"})
    assert again.parameters["data-uri"] == "/given.parquet"


def test_an_unset_setting_keeps_the_yamls_default(run_yaml: RunYaml, loopline_env: Path) -> None:
    record = run_yaml(WORKFLOW)
    assert record.parameters["data-uri"] == "s3://loopline/data/churn.parquet"


def test_a_malformed_annotation_is_refused_with_its_line(write_yaml: WriteYaml) -> None:
    path = write_yaml(WORKFLOW.replace('\'{"data-uri": "data.uri", "seed": "seed"}\'', "'[1]'"))
    with pytest.raises(WorkflowError) as caught:
        load_workflow(path)
    assert f":{line_of(path, 'loopline.dev/parameter-settings')}:" in str(caught.value)
    assert 'expected a JSON object of parameter: setting, e.g. {"data-uri": "data.uri"}' in str(
        caught.value
    )


def test_the_rendered_retrain_and_drift_workflows_bind_data_uri_to_its_setting() -> None:
    argo = Path(__file__).resolve().parents[3] / "argo"
    for name in ("retrain-submit.yaml", "drift-monitor.yaml"):
        workflow = load_workflow(argo / name)
        assert workflow.setting_defaults == {"data-uri": "data.uri"}, name
        defaults = {p.name: p.value for p in workflow.arguments}
        assert str(defaults["data-uri"]).startswith("s3://"), name  # the cluster's, in the YAML

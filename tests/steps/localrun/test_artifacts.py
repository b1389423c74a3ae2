"""Key-only S3 artifacts go to the configured artifact store and come back as inputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.settings import Settings
from steps.localrun.executor import RunOptions, run_workflow
from tests.fixtures.s3 import S3Server
from tests.steps.localrun.conftest import RunYaml, WriteYaml

PIPELINE = """
apiVersion: argoproj.io/v1alpha1
kind: Workflow
metadata:
  generateName: art-
spec:
  entrypoint: main
  templates:
    - name: main
      dag:
        tasks:
          - name: produce
            template: produce
          - name: consume
            depends: produce
            template: consume
            arguments:
              artifacts:
                - name: model
                  from: "{{tasks.produce.outputs.artifacts.model}}"
                - name: report
                  s3:
                    key: "reports/{{workflow.name}}.txt"
    - name: produce
      outputs:
        artifacts:
          - name: model
            path: /tmp/outputs/model
            s3:
              key: "models/{{workflow.name}}/model"
          - name: report
            path: /tmp/outputs/report.txt
            s3:
              key: "reports/{{workflow.name}}.txt"
          - name: notes
            path: /tmp/outputs/notes.txt
      container:
        image: loopline:latest
        command: [sh, -c]
        args:
          - >-
            mkdir -p /tmp/outputs/model/sub &&
            echo weights-1 > /tmp/outputs/model/weights.txt &&
            echo deep > /tmp/outputs/model/sub/deep.txt &&
            echo auc=0.9 > /tmp/outputs/report.txt &&
            echo n > /tmp/outputs/notes.txt
    - name: consume
      inputs:
        artifacts:
          - name: model
            path: /tmp/inputs/model
          - name: report
            path: /tmp/inputs/report.txt
      container:
        image: loopline:latest
        command: [sh, -c]
        args:
          - cat /tmp/inputs/model/weights.txt /tmp/inputs/model/sub/deep.txt /tmp/inputs/report.txt
"""


def test_artifacts_pass_through_the_file_store(run_yaml: RunYaml, loopline_env: Path) -> None:
    record = run_yaml(PIPELINE)
    assert record.phase == "Succeeded", record.message
    store = loopline_env / "artifacts"
    produced = record.node("produce").outputs.artifacts
    assert produced["model"] == (store / "models" / record.name / "model").as_uri()
    assert (store / "models" / record.name / "model" / "weights.txt").read_text() == "weights-1\n"
    assert (store / "models" / record.name / "model" / "sub" / "deep.txt").read_text() == "deep\n"
    # An artifact without a key goes under <run>/<node>/<artifact>.
    assert (store / record.name / "produce" / "notes").read_text() == "n\n"
    assert record.node("consume").outputs.result == "weights-1\ndeep\nauc=0.9"
    # Inputs were copied into the consumer's own directory, not /tmp/inputs.
    consumer_work = Path(record.run_dir) / "nodes" / "consume" / "work"
    assert (consumer_work / "tmp" / "inputs" / "model" / "weights.txt").is_file()


def test_missing_output_artifact_fails_the_node(run_yaml: RunYaml) -> None:
    record = run_yaml(PIPELINE.replace("echo n > /tmp/outputs/notes.txt", "true"))
    produce = record.node("produce")
    assert produce.phase == "Failed"
    assert "output artifact 'notes'" in produce.message
    assert record.node("consume").phase == "Omitted"


@pytest.mark.integration
def test_artifacts_pass_through_an_s3_store(
    loopline_env: Path,
    write_yaml: WriteYaml,
    s3_server: S3Server,
    s3_bucket: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPLINE_ARTIFACT_STORE", f"s3://{s3_bucket}/runs")
    monkeypatch.setenv("LOOPLINE_S3__ENDPOINT_URL", s3_server.endpoint_url)
    record = run_workflow(
        write_yaml(PIPELINE), {}, settings=Settings(), options=RunOptions(backoff_scale=0)
    )
    assert record.phase == "Succeeded", record.message
    client = s3_server.client()
    weights = client.get_object(
        Bucket=s3_bucket, Key=f"runs/models/{record.name}/model/weights.txt"
    )
    assert weights["Body"].read() == b"weights-1\n"
    assert record.node("produce").outputs.artifacts["model"] == (
        f"s3://{s3_bucket}/runs/models/{record.name}/model"
    )
    assert record.node("consume").outputs.result == "weights-1\ndeep\nauc=0.9"

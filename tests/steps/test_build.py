"""Build step against a real local MLflow registry: bento contents, export, errors."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
import yaml

from serving.model import ModelKind as ServingKind
from steps import build
from steps.core.errors import ConfigError, RegistryError, ServabilityError
from steps.ml import servability
from tests.fixtures.s3 import S3Server
from tests.fixtures.training import TrainedRun


@pytest.mark.parametrize(
    ("kind", "lock"),
    [("xgboost", "serving/requirements.lock"), ("sklearn", "serving/requirements-sklearn.lock")],
)
def test_bentofile_serves_only_serving_code_with_the_kinds_locked_requirements(
    kind: ServingKind, lock: str
) -> None:
    config = build.bentofile("churn:v1-abc", kind)
    assert config["include"] == ["serving/*.py"]
    assert config["python"] == {"requirements_txt": lock, "lock_packages": False}
    assert {"name": "LOOPLINE_SERVING__MODEL_TAG", "value": "churn:v1-abc"} in config["envs"]


def test_a_kind_without_a_committed_lock_has_no_serving_image(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from serving.model import REQUIREMENTS_LOCKS

    monkeypatch.setitem(REQUIREMENTS_LOCKS, "sklearn", "requirements-gone.lock")
    with pytest.raises(
        ServabilityError,
        match=r"model kind sklearn \(model\.pkl\) has no serving image: expected its locked "
        r"requirements in serving/requirements-gone\.lock",
    ):
        build.bentofile("churn:v1-abc", "sklearn")
    monkeypatch.delitem(REQUIREMENTS_LOCKS, "xgboost")
    with pytest.raises(ServabilityError, match=r"serving/requirements-xgboost\.lock"):
        servability.requirements_lock("xgboost")


@pytest.mark.integration
def test_build_exports_a_bento_holding_the_champion_model(
    champion_store: TrainedRun, tmp_path: Path
) -> None:
    result = build.run(champion_store.settings, alias="champion", platform="linux/arm64")

    assert result.model_version == "1"
    assert (result.model_kind, result.requirements_lock) == ("xgboost", "serving/requirements.lock")
    assert result.model_tag == f"churn:v1-{champion_store.run_id[:8]}"
    archive = Path(result.archive_uri.removeprefix("file://"))
    assert archive.is_file()
    assert archive.is_relative_to(Path(champion_store.settings.resolved_artifact_store[7:]))
    with tarfile.open(archive) as bundle:
        names = bundle.getnames()
        model_dir = f"./models/churn/v1-{champion_store.run_id[:8]}"
        assert {f"{model_dir}/model.ubj", f"{model_dir}/feature_spec.json"} <= set(names)
        metadata = json.loads(bundle.extractfile(f"{model_dir}/metadata.json").read())  # type: ignore[union-attr]
        dockerfile = bundle.extractfile("./env/docker/Dockerfile").read().decode()  # type: ignore[union-attr]
        bento_info = yaml.safe_load(bundle.extractfile("./bento.yaml").read())  # type: ignore[union-attr]
        assert not any(name.startswith("./src/steps") for name in names)
    assert metadata["run_id"] == champion_store.run_id
    assert metadata["model_version"] == "1" and metadata["alias"] == "champion"
    assert len(metadata["data_hash"]) == 64
    assert "USER bentoml" in dockerfile  # the image runs as non-root
    assert f"LOOPLINE_SERVING__MODEL_TAG={result.model_tag}" in dockerfile
    assert bento_info["labels"] == {
        "model_version": "1",
        "run_id": champion_store.run_id,
        "model_kind": "xgboost",
    }

    again = build.run(champion_store.settings, version="1")
    assert again.model_tag == result.model_tag  # the BentoML model is reused, not duplicated


@pytest.mark.integration
def test_build_exports_to_s3(
    champion_store: TrainedRun, s3_server: S3Server, s3_bucket: str
) -> None:
    settings = champion_store.settings.model_copy(
        update={"artifact_store": f"s3://{s3_bucket}/store", "s3": s3_server.settings}
    )
    result = build.run(settings, alias="champion")
    key = result.archive_uri.removeprefix(f"s3://{s3_bucket}/")
    head = s3_server.client().head_object(Bucket=s3_bucket, Key=key)
    assert key.startswith("store/bentos/loopline/") and head["ContentLength"] > 10_000


@pytest.mark.integration
def test_build_errors_name_what_is_wrong(champion_store: TrainedRun) -> None:
    with pytest.raises(RegistryError, match="no alias 'production'"):
        build.run(champion_store.settings, alias="production")
    with pytest.raises(ConfigError, match="exactly one of"):
        build.run(champion_store.settings, version="1", alias="champion")
    with pytest.raises(ConfigError, match="linux/s390x"):
        build.run(champion_store.settings, alias="champion", platform="linux/s390x")

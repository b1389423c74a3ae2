"""Containerize step: a real image from the champion's bento, built without a daemon, started
under QEMU user emulation, pushed to the project's own ``docker-registry`` and read back."""

from __future__ import annotations

import json
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from steps import build, containerize
from steps.core.errors import BuildError, ConfigError
from steps.core.settings import ImageSettings, Settings
from steps.image import push, recipe
from steps.platform.local import registry
from tests.fixtures.common import require_tool
from tests.fixtures.training import TrainedRun

IMAGE_TOOLS = ("mmdebstrap", "proot", "qemu-aarch64-static", "skopeo", "docker-registry")


@dataclass(frozen=True)
class Pushed:
    settings: Settings
    run_id: str
    built: build.BuildResult
    result: containerize.ContainerizeResult
    archive_dir: Path


@pytest.fixture(scope="module")
def pushed(
    champion_store: TrainedRun, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pushed]:
    """The champion's bento built, fetched as the cluster's first pod does, then built into an
    arm64 image and pushed to a registry the step started on a free port."""
    from scripts.bench.servers import free_port

    for tool in IMAGE_TOOLS:
        require_tool(tool)
    image = ImageSettings(registry=f"127.0.0.1:{free_port()}/loopline")
    settings = champion_store.settings.model_copy(update={"image": image})
    built = build.run(settings, alias="champion")
    archive_dir = tmp_path_factory.mktemp("artifact")
    containerize.fetch(settings, built.archive_uri, archive_dir)
    try:
        result = containerize.run(settings, None, ["linux/arm64"], archive_path=archive_dir)
        yield Pushed(settings, champion_store.run_id, built, result, archive_dir)
    finally:
        registry.stop(settings)


def reference(result: containerize.ContainerizeResult) -> str:
    return result.image_ref.split("@")[0]


@pytest.mark.integration
def test_the_arm64_image_is_pushed_and_its_digest_read_back(pushed: Pushed) -> None:
    result = pushed.result
    name, version = pushed.built.bento_tag.split(":")
    assert result.image_ref.startswith(f"{pushed.settings.image.registry}/{name}:{version}@sha256:")
    raw = push.raw_manifest(reference(result), verify_tls=False)
    assert result.image_ref.endswith(push.digest_of(raw))
    assert json.loads(raw)["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
    assert list(result.layers["linux/arm64"]) == ["base", "site", "app"]


@pytest.mark.integration
def test_platform_user_entrypoint_and_labels_read_back_from_the_registry(pushed: Pushed) -> None:
    config = push.config_of(reference(pushed.result), verify_tls=False)
    assert (config["architecture"], config["os"]) == ("arm64", "linux")
    runs = config["config"]
    assert runs["User"] == f"{recipe.UID}:{recipe.UID}"
    assert runs["Entrypoint"] == ["python3", "-m", "serving.launch"]
    assert runs["Cmd"] == [recipe.BENTO_DIR, "--host", "0.0.0.0", "--port", "3000"]
    assert runs["WorkingDir"] == recipe.WORKDIR
    labels = runs["Labels"]
    assert labels["ai.loopline.model.name"] == pushed.settings.model_name
    assert labels["ai.loopline.model.version"] == pushed.built.model_version
    assert labels["ai.loopline.mlflow.run_id"] == pushed.run_id
    assert labels["org.opencontainers.image.title"] == pushed.built.bento_tag
    env = dict(entry.split("=", 1) for entry in runs["Env"])
    assert env["LOOPLINE_SERVING__LOG_DIR"] == "/tmp/inference-log"


@pytest.mark.integration
def test_the_image_started_under_emulation_and_scored_as_mlflow(pushed: Pushed) -> None:
    (report,) = pushed.result.smoke
    assert report["platform"] == "linux/arm64" and report["emulated"] is True
    assert report["rows"] == 32
    assert float(report["max_abs_diff"]) <= 1e-6
    assert float(report["seconds_to_ready"]) > 0


@pytest.mark.integration
def test_the_same_bento_gives_the_same_digest(pushed: Pushed) -> None:
    again = containerize.run(
        pushed.settings, None, ["linux/arm64"], archive_path=pushed.archive_dir
    )
    assert again.image_ref == pushed.result.image_ref
    digests = [
        {name: layer["digest"] for name, layer in result.layers["linux/arm64"].items()}
        for result in (pushed.result, again)
    ]
    assert digests[0] == digests[1]


@pytest.mark.integration
def test_a_failed_smoke_test_fails_the_step_and_pushes_nothing(
    pushed: Pushed, tmp_path: Path
) -> None:
    # Given the same bento whose recorded MLflow probabilities are off by 0.01
    archive = next(pushed.archive_dir.glob("*.bento"))
    unpacked = containerize.unpack_archive(archive, tmp_path / "bento")
    (smoke_file,) = unpacked.glob("models/*/*/smoke_rows.json")
    document = json.loads(smoke_file.read_text())
    document["probabilities"] = [p + 0.01 for p in document["probabilities"]]
    smoke_file.write_text(json.dumps(document))
    tampered = tmp_path / "artifact" / archive.name
    tampered.parent.mkdir()
    with tarfile.open(tampered, "w:gz") as bundle:
        bundle.add(unpacked, arcname=".")
    settings = pushed.settings.model_copy(
        update={"image": pushed.settings.image.model_copy(
            update={"registry": f"{pushed.settings.image.registry_host}/tampered"})}
    )  # fmt: skip
    # When it is containerized, Then the step fails naming the difference
    with pytest.raises(
        BuildError, match=r"differently from the MLflow model: max abs difference 0\.01"
    ):
        containerize.run(settings, None, ["linux/arm64"], archive_path=tampered.parent)
    # And the registry holds nothing under that path
    catalog = httpx.get(f"http://{settings.image.registry_host}/v2/_catalog").json()
    assert not [name for name in catalog["repositories"] if name.startswith("tampered/")]
    assert any(name.startswith("loopline/") for name in catalog["repositories"])


@pytest.mark.integration
def test_two_platforms_give_an_index_and_amd64_starts_natively(pushed: Pushed) -> None:
    result = containerize.run(
        pushed.settings, None, ["linux/amd64", "linux/arm64"], archive_path=pushed.archive_dir
    )
    index = json.loads(push.raw_manifest(reference(result), verify_tls=False))
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    platforms = [(m["platform"]["os"], m["platform"]["architecture"]) for m in index["manifests"]]
    assert platforms == [("linux", "amd64"), ("linux", "arm64")]
    # The arm64 image in the index is the one pushed alone (same layers, same config)
    arm64 = index["manifests"][1]["digest"]
    assert pushed.result.image_ref.endswith(arm64)
    emulated = {report["platform"]: report["emulated"] for report in result.smoke}
    assert emulated == {"linux/amd64": False, "linux/arm64": True}


def test_a_registry_credential_that_is_not_json_is_refused_unechoed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(push.AUTH_ENV, "hunter2-not-json")
    with pytest.raises(BuildError) as caught:
        push.push(tmp_path, "v1", "127.0.0.1:1/x/y:v1", verify_tls=False)
    assert "DOCKER_AUTH_CONFIG: expected a docker config.json" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_an_archive_that_is_not_a_bento_is_named(tmp_path: Path) -> None:
    archive = tmp_path / "loopline-abc.bento"
    archive.write_text("not a tar")
    with pytest.raises(BuildError, match=r"loopline-abc\.bento: not a bento archive"):
        containerize.unpack_archive(archive, tmp_path / "out")


def test_registry_is_checked_and_names_the_image() -> None:
    with pytest.raises(ConfigError, match="no scheme"):
        containerize.image_name("https://registry", "loopline:abc")
    assert containerize.image_name("reg:5000/ml/", "loopline:abc") == "reg:5000/ml/loopline:abc"


def test_a_local_archive_is_the_file_or_the_one_bento_in_a_directory(tmp_path: Path) -> None:
    archive = tmp_path / "artifact" / "churn_service-abc123.bento"
    archive.parent.mkdir()
    archive.write_bytes(b"bento")

    assert containerize.local_archive(archive) == archive
    assert containerize.local_archive(archive.parent) == archive
    (archive.parent / "other-1.bento").write_bytes(b"bento")
    with pytest.raises(ConfigError, match="exactly one"):
        containerize.local_archive(archive.parent)
    with pytest.raises(ConfigError, match="no such file"):
        containerize.local_archive(tmp_path / "missing")


def test_run_takes_exactly_one_of_a_uri_and_a_local_archive(tmp_path: Path) -> None:
    settings = Settings(state_dir=tmp_path / "state")
    for uri, path in ((None, None), ("file:///x.bento", tmp_path)):
        with pytest.raises(ConfigError, match="exactly one of --archive-uri"):
            containerize.run(settings, uri, ["linux/arm64"], "r.local/ml", archive_path=path)

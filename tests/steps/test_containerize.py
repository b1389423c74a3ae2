"""Containerize step: the BuildKit build context and invocation, checked without an engine.

No container engine or registry runs on these machines, so the BuildKit client is replaced by
tests/fixtures/bin/buildctl_daemonless.py (see its docstring), put first on PATH.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from steps import build, containerize
from steps.core.errors import BuildError, ConfigError
from tests.fixtures.training import TrainedRun

FAKE_BUILDCTL = Path(__file__).resolve().parents[1] / "fixtures" / "bin" / "buildctl_daemonless.py"


@pytest.fixture
def fake_buildkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake ``buildctl-daemonless.sh`` first on PATH; return its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / containerize.BUILDKIT_DAEMONLESS
    script.write_text(FAKE_BUILDCTL.read_text())
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_registry_is_checked_and_names_the_image() -> None:
    with pytest.raises(ConfigError, match="no scheme"):
        containerize.image_name("https://registry", "loopline:abc")
    assert containerize.image_name("reg:5000/ml/", "loopline:abc") == "reg:5000/ml/loopline:abc"


@pytest.mark.integration
def test_buildkit_builds_the_bento_for_arm64_and_records_the_digest(
    champion_store: TrainedRun, fake_buildkit: Path
) -> None:
    built = build.run(champion_store.settings, alias="champion")

    result = containerize.run(
        champion_store.settings, built.archive_uri, ["linux/arm64"], "registry.local/ml"
    )

    assert result.image_built and result.builder == "buildkit"
    name, version = built.bento_tag.split(":")
    assert result.image_ref.startswith(f"registry.local/ml/{name}:{version}@sha256:")
    assert len(result.image_ref.rsplit("sha256:", 1)[1]) == 64
    calls = Path(f"{fake_buildkit}.calls").read_text()
    assert "platform=linux/arm64" in calls and "push=true" in calls
    # The build context is the bento: non-root Dockerfile, model inside the archive.
    archive = Path(built.archive_uri.removeprefix("file://"))
    with tarfile.open(archive) as bundle:
        dockerfile = bundle.extractfile("./env/docker/Dockerfile").read().decode()  # type: ignore[union-attr]
        assert any(n.endswith("/model.ubj") for n in bundle.getnames())
    assert "\nUSER bentoml" in dockerfile


@pytest.mark.integration
def test_multi_arch_build_asks_for_one_manifest_of_both_platforms(
    champion_store: TrainedRun, fake_buildkit: Path
) -> None:
    built = build.run(champion_store.settings, alias="champion")
    containerize.run(
        champion_store.settings, built.archive_uri, ["linux/amd64", "linux/arm64"], "r.local/ml"
    )
    assert "platform=linux/amd64,linux/arm64" in Path(f"{fake_buildkit}.calls").read_text()


@pytest.mark.integration
def test_without_a_builder_it_fails_listing_what_it_looked_for_or_skips(
    champion_store: TrainedRun, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no docker, buildctl, podman, buildah
    built = build.run(champion_store.settings, alias="champion")
    with pytest.raises(BuildError) as caught:
        containerize.run(champion_store.settings, built.archive_uri, ["linux/arm64"], "r.local")
    message = str(caught.value)
    for looked_for in ("buildctl-daemonless.sh", "docker", "buildx", "podman", "buildah"):
        assert looked_for in message
    skipped = containerize.run(
        champion_store.settings, built.archive_uri, ["linux/arm64"], "r.local",
        skip_if_no_builder=True,
    )  # fmt: skip
    assert (skipped.image_ref, skipped.image_built) == ("none", False)
    assert "serve the bento directly" in skipped.reason


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
    from steps.core.settings import Settings

    settings = Settings(state_dir=tmp_path / "state")
    for uri, path in ((None, None), ("file:///x.bento", tmp_path)):
        with pytest.raises(ConfigError, match="exactly one of --archive-uri"):
            containerize.run(settings, uri, ["linux/arm64"], "r.local/ml", archive_path=path)


@pytest.mark.integration
def test_fetch_then_build_from_the_local_archive_as_the_two_cluster_pods_do(
    champion_store: TrainedRun, fake_buildkit: Path, tmp_path: Path
) -> None:
    built = build.run(champion_store.settings, alias="champion")
    artifact_dir = tmp_path / "bento"

    fetched = containerize.fetch(champion_store.settings, built.archive_uri, artifact_dir)
    result = containerize.run(
        champion_store.settings, None, ["linux/arm64"], "registry.local/ml",
        archive_path=artifact_dir,
    )  # fmt: skip

    assert fetched.parent == artifact_dir and fetched.name == Path(built.archive_uri).name
    name, version = built.bento_tag.split(":")
    assert result.image_ref.startswith(f"registry.local/ml/{name}:{version}@sha256:")
    assert "push=true" in Path(f"{fake_buildkit}.calls").read_text()

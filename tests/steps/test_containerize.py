"""Containerize step: the BuildKit build context and invocation, checked without an engine.

No container engine or registry runs on these machines, so the BuildKit client is replaced by a
fake ``buildctl-daemonless.sh`` that accepts only what the real CLI accepts for this build,
requires the Dockerfile in the ``dockerfile`` local, and writes the metadata file the way
BuildKit does (``containerimage.digest``), with a digest derived from the context's bytes.
"""

from __future__ import annotations

import os
import stat
import tarfile
from pathlib import Path

import pytest

from steps import build, containerize
from steps.errors import BuildError, ConfigError
from tests.fixtures.training import TrainedRun

FAKE_BUILDCTL = r'''#!/usr/bin/env python3
import hashlib, json, pathlib, sys
args = sys.argv[1:]
if args[:1] != ["build"]:
    sys.exit("buildctl: only 'build' is supported by this fake")
opts, locals_, out, meta, frontend = [], {}, None, None, None
i = 1
while i < len(args):
    flag, value = args[i], args[i + 1]
    if flag == "--frontend": frontend = value
    elif flag == "--local": key, _, path = value.partition("="); locals_[key] = pathlib.Path(path)
    elif flag == "--opt": opts.append(value)
    elif flag == "--output": out = dict(p.split("=", 1) for p in value.split(","))
    elif flag == "--metadata-file": meta = pathlib.Path(value)
    else: sys.exit(f"buildctl: unknown flag {flag}")
    i += 2
if frontend != "dockerfile.v0": sys.exit("buildctl: frontend must be dockerfile.v0")
dockerfile = locals_["dockerfile"] / dict(o.split("=", 1) for o in opts).get("filename", "Dockerfile")
if not dockerfile.is_file(): sys.exit(f"buildctl: no Dockerfile at {dockerfile}")
if out is None or out.get("type") != "image" or out.get("push") != "true": sys.exit("buildctl: bad --output")
digest = hashlib.sha256()
for path in sorted(locals_["context"].rglob("*")):
    if path.is_file(): digest.update(path.read_bytes())
pathlib.Path(sys.argv[0] + ".calls").write_text(json.dumps(args))
meta.write_text(json.dumps({"containerimage.digest": "sha256:" + digest.hexdigest(), "image.name": out["name"]}))
'''


@pytest.fixture
def fake_buildkit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Put the fake ``buildctl-daemonless.sh`` first on PATH; return its path."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / containerize.BUILDKIT_DAEMONLESS
    script.write_text(FAKE_BUILDCTL)
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return script


def test_platforms_and_registry_are_checked() -> None:
    assert containerize.parse_platforms("linux/amd64, linux/arm64") == ["linux/amd64", "linux/arm64"]
    with pytest.raises(ConfigError, match="linux/ppc64le"):
        containerize.parse_platforms("linux/ppc64le")
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

"""The artifact store keeps every copy inside its root: keys that would leave it are refused
before anything is copied or deleted, and ordinary keys (nested, dotted) still work."""

from __future__ import annotations

from pathlib import Path

import pytest

from steps.core.errors import ConfigError, StoreError
from steps.core.settings import Settings, load_settings
from steps.io.artifact_store import ArtifactStore, check_key
from tests.fixtures.s3 import S3Server


@pytest.fixture
def store(loopline_env: Path) -> ArtifactStore:
    """A file:// store under a fresh state directory, with a victim directory beside it."""
    victim = loopline_env / "victim"
    victim.mkdir(parents=True)
    (victim / "precious.txt").write_text("keep me\n")
    return ArtifactStore(load_settings())


@pytest.fixture
def bento(tmp_path: Path) -> Path:
    source = tmp_path / "model.v1.bento"
    source.write_bytes(b"bento-bytes")
    return source


def _root(store: ArtifactStore) -> Path:
    return Path(store.root.removeprefix("file://"))


def _assert_victim_intact(loopline_env: Path) -> None:
    assert (loopline_env / "victim" / "precious.txt").read_text() == "keep me\n"


# --- ordinary keys -----------------------------------------------------------------------------


def test_nested_and_dotted_keys_round_trip(
    store: ArtifactStore, bento: Path, tmp_path: Path
) -> None:
    uri = store.upload(bento, "bentos/loopline/model.v1.bento")
    assert uri == f"{store.root}/bentos/loopline/model.v1.bento"
    assert (_root(store) / "bentos" / "loopline" / "model.v1.bento").read_bytes() == b"bento-bytes"
    assert store.download(uri, tmp_path / "back" / "copy.bento")
    assert (tmp_path / "back" / "copy.bento").read_bytes() == b"bento-bytes"


def test_a_directory_upload_replaces_what_was_at_its_key(
    store: ArtifactStore, tmp_path: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "sub").mkdir(parents=True)
    (first / "sub" / "old.txt").write_text("old")
    second.mkdir()
    (second / "..hidden.v2").write_text("new")
    store.upload(first, "reports/run-1")
    uri = store.upload(second, "reports/run-1")
    assert sorted(p.name for p in (_root(store) / "reports" / "run-1").iterdir()) == ["..hidden.v2"]
    assert store.download(uri, tmp_path / "out")
    assert (tmp_path / "out" / "..hidden.v2").read_text() == "new"


def test_a_key_with_unusual_characters_is_encoded_in_its_uri(
    store: ArtifactStore, bento: Path, tmp_path: Path
) -> None:
    uri = store.upload(bento, "runs/wf 1/%2e%2e")
    assert uri == f"{store.root}/runs/wf%201/%252e%252e"
    assert (_root(store) / "runs" / "wf 1" / "%2e%2e").is_file()
    assert store.download(uri, tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == b"bento-bytes"


def test_an_optional_missing_artifact_is_reported_absent(
    store: ArtifactStore, tmp_path: Path
) -> None:
    assert store.download(store.uri("reports/none"), tmp_path / "x", optional=True) is False
    with pytest.raises(StoreError, match="does not exist"):
        store.download(store.uri("reports/none"), tmp_path / "x")


# --- keys that leave the store -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        ("../victim", "'..' segment"),
        ("bentos/../../victim", "'..' segment"),
        ("/etc/passwd", "is absolute"),
        ("bentos//x", "empty segment"),
        ("./x", "'.' segment"),
        ("", "is empty"),
        ("..\\victim", "backslash"),
    ],
)
def test_a_key_that_leaves_the_store_is_refused_before_anything_is_deleted(
    store: ArtifactStore, loopline_env: Path, bento: Path, key: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        store.upload(bento, key)
    message = str(caught.value)
    assert f"artifact key {key!r}" in message
    assert problem in message
    assert store.root in message
    assert "expected a relative key" in message
    assert "bentos/churn/model.v1.bento" in message  # an example of the form
    _assert_victim_intact(loopline_env)
    assert not (loopline_env / "victim" / "model.v1.bento").exists()


def test_check_key_accepts_an_ordinary_key() -> None:
    assert check_key("bentos/loopline/loopline-abc.v1.bento", "s3://b/p") == (
        "bentos/loopline/loopline-abc.v1.bento"
    )


def test_a_key_through_a_symlink_out_of_the_store_is_refused(
    store: ArtifactStore, loopline_env: Path, bento: Path
) -> None:
    _root(store).mkdir(parents=True)
    (_root(store) / "escape").symlink_to(loopline_env / "victim", target_is_directory=True)
    with pytest.raises(ConfigError, match="through a symlink") as caught:
        store.upload(bento, "escape/precious.txt")
    assert store.root in str(caught.value)
    _assert_victim_intact(loopline_env)


def test_a_key_naming_a_symlink_out_of_the_store_is_not_replaced(
    store: ArtifactStore, loopline_env: Path, tmp_path: Path
) -> None:
    _root(store).mkdir(parents=True)
    (_root(store) / "reports").symlink_to(loopline_env / "victim", target_is_directory=True)
    replacement = tmp_path / "replacement"
    replacement.mkdir()
    with pytest.raises(ConfigError, match="through a symlink"):
        store.upload(replacement, "reports")
    _assert_victim_intact(loopline_env)


def test_a_key_naming_the_root_through_a_symlink_is_refused(
    store: ArtifactStore, tmp_path: Path, bento: Path
) -> None:
    _root(store).mkdir(parents=True)
    (_root(store) / "keep.txt").write_text("store content")
    (_root(store) / "self").symlink_to(_root(store), target_is_directory=True)
    with pytest.raises(ConfigError, match="through a symlink"):
        store.upload(tmp_path, "self")
    assert (_root(store) / "keep.txt").read_text() == "store content"


# --- URIs outside the store --------------------------------------------------------------------


def test_a_file_uri_outside_the_store_is_not_copied(
    store: ArtifactStore, loopline_env: Path, tmp_path: Path
) -> None:
    outside = (loopline_env / "victim" / "precious.txt").as_uri()
    with pytest.raises(ConfigError) as caught:
        store.download(outside, tmp_path / "stolen")
    message = str(caught.value)
    assert repr(outside) in message
    assert f"outside the artifact store {store.root}" in message
    assert f"expected {store.root}/<key>" in message
    assert not (tmp_path / "stolen").exists()


@pytest.mark.parametrize(
    "suffix",
    ["/../victim/precious.txt", "/%2E%2E/victim/precious.txt", "", "/bentos//x", "-sibling/x"],
)
def test_a_file_uri_that_climbs_out_of_the_store_is_not_copied(
    store: ArtifactStore, tmp_path: Path, suffix: str
) -> None:
    with pytest.raises(ConfigError, match="outside the artifact store"):
        store.download(f"{store.root}{suffix}", tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()


def test_a_file_uri_through_a_symlink_out_of_the_store_is_not_copied(
    store: ArtifactStore, loopline_env: Path, tmp_path: Path
) -> None:
    _root(store).mkdir(parents=True)
    (_root(store) / "bentos").symlink_to(loopline_env / "victim", target_is_directory=True)
    with pytest.raises(ConfigError, match="through a symlink"):
        store.download(f"{store.root}/bentos/precious.txt", tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()


def test_an_s3_store_refuses_a_file_uri_and_another_bucket(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    monkeypatch.setenv("LOOPLINE_ARTIFACT_STORE", "s3://artifacts/runs")
    store = ArtifactStore(load_settings())
    for uri in (secret.as_uri(), "s3://other/runs/x", "s3://artifacts/runsx/y", "s3://artifacts/x"):
        with pytest.raises(ConfigError, match="outside the artifact store s3://artifacts/runs"):
            store.download(uri, tmp_path / "stolen")
    assert not (tmp_path / "stolen").exists()


# --- S3 object keys mapped onto local paths (a real S3-protocol server) ------------------------


@pytest.fixture
def s3_store(
    loopline_env: Path, monkeypatch: pytest.MonkeyPatch, s3_server: S3Server, s3_bucket: str
) -> ArtifactStore:
    monkeypatch.setenv("LOOPLINE_ARTIFACT_STORE", f"s3://{s3_bucket}/runs")
    monkeypatch.setenv("LOOPLINE_S3__ENDPOINT_URL", s3_server.endpoint_url)
    return ArtifactStore(Settings())


@pytest.mark.integration
def test_s3_nested_and_dotted_keys_round_trip(
    s3_store: ArtifactStore, s3_bucket: str, tmp_path: Path
) -> None:
    folder = tmp_path / "bento"
    (folder / "models" / "churn").mkdir(parents=True)
    (folder / "models" / "churn" / "model.v1.ubj").write_bytes(b"weights")
    (folder / "bento.yaml").write_text("name: loopline\n")
    uri = s3_store.upload(folder, "bentos/loopline/v1.2")
    assert uri == f"s3://{s3_bucket}/runs/bentos/loopline/v1.2"
    assert s3_store.download(uri, tmp_path / "back")
    assert (tmp_path / "back" / "models" / "churn" / "model.v1.ubj").read_bytes() == b"weights"
    assert (tmp_path / "back" / "bento.yaml").read_text() == "name: loopline\n"


@pytest.mark.integration
@pytest.mark.parametrize(
    "hostile",
    ["runs/drop//tmp/evil.txt", "runs/drop/../../evil.txt", "runs/drop/a/./evil.txt"],
)
def test_an_s3_object_key_that_would_land_outside_the_target_writes_nothing(
    s3_store: ArtifactStore, s3_server: S3Server, s3_bucket: str, tmp_path: Path, hostile: str
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="runs/drop/fine.txt", Body=b"fine")
    client.put_object(Bucket=s3_bucket, Key=hostile, Body=b"evil")
    target = tmp_path / "work" / "in"
    with pytest.raises(ConfigError) as caught:
        s3_store.download(f"s3://{s3_bucket}/runs/drop", target)
    message = str(caught.value)
    assert f"S3 object {hostile!r}" in message
    assert f"s3://{s3_bucket}/runs/drop" in message
    assert "expected a relative key" in message
    assert not target.exists()  # refused before the first download, the fine file included
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.integration
def test_an_s3_folder_marker_is_skipped(
    s3_store: ArtifactStore, s3_server: S3Server, s3_bucket: str, tmp_path: Path
) -> None:
    client = s3_server.client()
    client.put_object(Bucket=s3_bucket, Key="runs/drop/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="runs/drop/sub/", Body=b"")
    client.put_object(Bucket=s3_bucket, Key="runs/drop/sub/data.csv", Body=b"a,b\n")
    assert s3_store.download(f"s3://{s3_bucket}/runs/drop", tmp_path / "in")
    assert (tmp_path / "in" / "sub" / "data.csv").read_text() == "a,b\n"

"""OCI layers and layouts: the same files give the same bytes, and an image reads back whole."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
from pathlib import Path

import pytest

from steps.core.errors import BuildError
from steps.image import oci


def tree(root: Path, files: dict[str, str], mtime: int) -> Path:
    """Write ``files`` (relative path -> text) under ``root`` with every time set to ``mtime``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "usr" / "bin").mkdir(parents=True, exist_ok=True)
    (root / "usr" / "bin" / "python").symlink_to("/usr/bin/python3")
    for path in [root, *root.rglob("*")]:
        os.utime(path, (mtime, mtime), follow_symlinks=False)
    return root


FILES = {"home/bentoml/bento/bento.yaml": "name: x\n", "etc/hosts": "127.0.0.1 localhost\n",
         "usr/lib/a.py": "A = 1\n"}  # fmt: skip


def test_a_layer_depends_on_paths_modes_and_contents_only(tmp_path: Path) -> None:
    # Given the same files written at different times, in a different order
    first = oci.write_layer(tree(tmp_path / "one", FILES, 1_000), tmp_path / "blobs")
    reordered = dict(reversed(FILES.items()))
    second = oci.write_layer(tree(tmp_path / "two", reordered, 2_000_000), tmp_path / "blobs")
    # Then both layers are the same bytes
    assert first == second
    # And one changed byte changes the digest and the diff_id
    changed = {**FILES, "usr/lib/a.py": "A = 2\n"}
    third = oci.write_layer(tree(tmp_path / "three", changed, 1_000), tmp_path / "blobs")
    assert third.blob.digest != first.blob.digest and third.diff_id != first.diff_id


def test_a_layer_is_owned_by_root_but_the_users_home_and_keeps_no_time_or_names(
    tmp_path: Path,
) -> None:
    root = tree(tmp_path / "root", FILES, 1_000)
    (root / "usr" / "lib" / "a.py").chmod(0o666)
    layer = oci.write_layer(root, tmp_path / "blobs", {"home/bentoml": 1034})
    blob = tmp_path / "blobs" / layer.blob.digest.removeprefix("sha256:")
    with tarfile.open(blob, "r:gz") as tar:
        members = {member.name: member for member in tar.getmembers()}
    assert (members["home/bentoml"].uid, members["home/bentoml"].gid) == (1034, 1034)
    assert members["home/bentoml/bento/bento.yaml"].uid == 0  # what the home holds stays root's
    assert members["etc/hosts"].uid == 0 and members["home"].uid == 0
    assert {m.mtime for m in members.values()} == {0}
    assert {m.uname for m in members.values()} | {m.gname for m in members.values()} == {""}
    assert members["usr/lib/a.py"].mode == 0o644  # group/other write dropped
    assert members["tmp"].mode == 0o1777
    assert members["usr/bin/python"].issym()
    assert members["usr/bin/python"].linkname == "/usr/bin/python3"
    # Parents come before their children, siblings sorted
    names = list(members)
    assert names.index("home") < names.index("home/bentoml") < names.index("home/bentoml/bento")
    assert names == sorted(names, key=lambda n: (n.split("/")[:-1], n))
    # The gzip header carries neither a name nor a time
    header = blob.read_bytes()[:10]
    assert header[4:8] == b"\0\0\0\0"
    with gzip.open(blob) as raw:
        assert hashlib.sha256(raw.read()).hexdigest() == layer.diff_id.removeprefix("sha256:")


def layout_with(tmp_path: Path, archs: list[str]) -> Path:
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    manifests = []
    for arch in archs:
        layer = oci.write_layer(tree(tmp_path / arch, {f"{arch}.txt": arch}, 0), blobs)
        config = oci.write_json_blob(
            blobs, oci.CONFIG, {"architecture": arch, "os": "linux",
                                "rootfs": {"type": "layers", "diff_ids": [layer.diff_id]}},
        )  # fmt: skip
        manifests.append(
            (oci.write_json_blob(blobs, oci.MANIFEST, oci.manifest(config, [layer], {})), arch)
        )
    top = manifests[0][0] if len(archs) == 1 else oci.write_json_blob(
        blobs, oci.INDEX, oci.index(manifests, {}))  # fmt: skip
    oci.write_layout(layout, top, "v1")
    return layout


def test_an_index_unpacks_the_platform_asked_for(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, ["amd64", "arm64"])
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    assert top["mediaType"] == oci.INDEX and top["annotations"] == {oci.REF_NAME: "v1"}
    config = oci.unpack(layout, "arm64", tmp_path / "root")
    assert config["architecture"] == "arm64"
    assert (tmp_path / "root" / "arm64.txt").read_text() == "arm64"
    assert not (tmp_path / "root" / "amd64.txt").exists()
    with pytest.raises(BuildError, match="no linux/riscv64 image in the index"):
        oci.unpack(layout, "riscv64", tmp_path / "other")


def test_a_single_image_of_another_architecture_is_refused(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, ["arm64"])
    with pytest.raises(BuildError, match="the image is arm64, not amd64"):
        oci.unpack(layout, "amd64", tmp_path / "root")


def test_a_corrupt_blob_is_named(tmp_path: Path) -> None:
    layout = layout_with(tmp_path, ["arm64"])
    top = json.loads((layout / "index.json").read_text())["manifests"][0]["digest"]
    (layout / "blobs" / "sha256" / top.removeprefix("sha256:")).write_text("{}")
    with pytest.raises(BuildError, match=f"blob {top} does not match its digest"):
        oci.unpack(layout, "arm64", tmp_path / "root")


@pytest.mark.parametrize(
    ("member", "linkname", "message"),
    [
        ("../escape.txt", "", "would be written outside the directory"),
        ("/etc/passwd", "", "would be written outside the directory"),
        ("usr/lib/evil", "../../../outside", "links outside the directory"),
    ],
)
def test_an_archive_member_that_leaves_the_directory_is_refused(
    tmp_path: Path, member: str, linkname: str, message: str
) -> None:
    archive = tmp_path / "bad.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo(member)
        if linkname:
            info.type, info.linkname = tarfile.SYMTYPE, linkname
        tar.addfile(info)
    with pytest.raises(BuildError, match=f"bad archive: .*{message}"):
        oci.extract(archive, tmp_path / "out", "bad archive")
    assert not (tmp_path / "escape.txt").exists()


def test_absolute_links_are_kept_for_a_root_and_refused_for_a_bento(tmp_path: Path) -> None:
    archive = tmp_path / "links.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("usr/bin/python")
        info.type, info.linkname = tarfile.SYMTYPE, "/usr/bin/python3"
        tar.addfile(info)
    oci.extract(archive, tmp_path / "root", "root")
    assert (tmp_path / "root" / "usr" / "bin" / "python").readlink() == Path("/usr/bin/python3")
    with pytest.raises(BuildError, match=r"links to the absolute path '/usr/bin/python3'"):
        oci.extract(archive, tmp_path / "bento", "bento", absolute_links=False)

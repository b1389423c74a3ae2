"""OCI image layouts written byte for byte the same from the same files.

A layer is a gzip'd tar of a directory tree in sorted order, every entry with the same time
(the epoch), owner root (or the ids ``owners`` gives a path), no user or group names, and gzip
without a name or time: its digest depends on the files' paths, modes and contents only.
Configurations, manifests and indexes are JSON with sorted keys and no spaces.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast

from steps.core.errors import BuildError

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
REF_NAME = "org.opencontainers.image.ref.name"
GZIP_LEVEL = 6


@dataclass(frozen=True)
class Blob:
    """A content-addressed blob: its media type, ``sha256:`` digest and size in bytes."""

    media_type: str
    digest: str
    size: int

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {"mediaType": self.media_type, "digest": self.digest, "size": self.size, **extra}


@dataclass(frozen=True)
class Layer:
    """A layer blob and the digest of its uncompressed tar (the config's ``diff_id``)."""

    blob: Blob
    diff_id: str
    unpacked_bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"digest": self.blob.digest, "size": self.blob.size, "diff_id": self.diff_id,
                "unpacked_bytes": self.unpacked_bytes}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Layer:
        blob = Blob(LAYER, str(data["digest"]), int(data["size"]))
        return cls(blob, str(data["diff_id"]), int(data["unpacked_bytes"]))


class _Sink(Protocol):
    def write(self, data: bytes, /) -> int: ...

    def flush(self) -> None: ...


class _Hashing:
    """A write-only file that hashes and counts what passes through it."""

    def __init__(self, sink: _Sink) -> None:
        self.sink, self.sha, self.size = sink, hashlib.sha256(), 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.sink.write(data)

    def flush(self) -> None:
        self.sink.flush()


def _entries(root: Path) -> Iterator[Path]:
    """Every path under ``root`` (not ``root`` itself), parents first, siblings sorted."""
    for directory, subdirs, files in os.walk(root):
        subdirs.sort()
        base = Path(directory)
        for name in sorted([*subdirs, *files]):
            yield base / name


def write_layer(root: Path, blobs: Path, owners: Mapping[str, int] | None = None) -> Layer:
    """Write the tree under ``root`` as a reproducible layer blob into the ``blobs`` directory.

    Args:
        root: the directory whose contents become the layer's ``/``.
        blobs: ``blobs/sha256`` of an OCI layout (or a cache directory).
        owners: paths (relative, e.g. ``home/bentoml``) owned by a uid (= gid), not what they
            hold; everything else is root's.

    Raises:
        BuildError: when a file cannot be read.
    """
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f".partial-{os.getpid()}"
    diff_sha, unpacked = hashlib.sha256(), 0
    try:
        with partial.open("wb") as raw:
            hashing = _Hashing(raw)
            zipping = gzip.GzipFile(
                filename="", mode="wb", fileobj=hashing, compresslevel=GZIP_LEVEL, mtime=0
            )
            with zipping as zipped:
                tar_sink = _Hashing(zipped)
                tar_file = cast(IO[bytes], tar_sink)
                with tarfile.open(fileobj=tar_file, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                    for path in _entries(root):
                        _add(tar, root, path, owners or {})
                diff_sha, unpacked = tar_sink.sha, tar_sink.size
    except OSError as err:
        partial.unlink(missing_ok=True)
        raise BuildError(f"cannot write a layer of {root}: {err}") from err
    digest = f"sha256:{hashing.sha.hexdigest()}"
    partial.replace(blobs / digest.removeprefix("sha256:"))
    return Layer(Blob(LAYER, digest, hashing.size), f"sha256:{diff_sha.hexdigest()}", unpacked)


def _add(tar: tarfile.TarFile, root: Path, path: Path, owners: Mapping[str, int]) -> None:
    name = path.relative_to(root).as_posix()
    info = tar.gettarinfo(str(path), arcname=name)
    if info.type not in (tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE):
        return  # device nodes, fifos, sockets: never part of an image layer
    owner = owners.get(name, 0)
    info.uid = info.gid = owner
    info.uname = info.gname = ""
    info.mtime = 0
    info.mode = stat.S_IMODE(info.mode) & ~0o022  # no group/other write
    if info.isdir() and name == "tmp":
        info.mode = 0o1777
    if info.isreg():
        with path.open("rb") as content:
            tar.addfile(info, content)
    else:
        tar.addfile(info)


def write_json_blob(blobs: Path, media_type: str, document: Mapping[str, Any]) -> Blob:
    """Write ``document`` as a canonical JSON blob; return its descriptor."""
    data = canonical(document)
    digest = hashlib.sha256(data).hexdigest()
    blobs.mkdir(parents=True, exist_ok=True)
    (blobs / digest).write_bytes(data)
    return Blob(media_type, f"sha256:{digest}", len(data))


def canonical(document: Mapping[str, Any]) -> bytes:
    """The JSON bytes of ``document`` with sorted keys and no spaces."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def manifest(config: Blob, layers: list[Layer], annotations: Mapping[str, str]) -> dict[str, Any]:
    """Return an image manifest of ``config`` and ``layers``."""
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.blob.descriptor() for layer in layers],
        "annotations": dict(sorted(annotations.items())),
    }


def index(manifests: list[tuple[Blob, str]], annotations: Mapping[str, str]) -> dict[str, Any]:
    """Return an image index of ``(manifest, architecture)`` pairs (all ``linux``)."""
    return {
        "schemaVersion": 2,
        "mediaType": INDEX,
        "manifests": [
            blob.descriptor(platform={"architecture": arch, "os": "linux"})
            for blob, arch in manifests
        ],
        "annotations": dict(sorted(annotations.items())),
    }


def write_layout(layout: Path, top: Blob, ref_name: str) -> None:
    """Write ``oci-layout`` and ``index.json`` pointing at ``top`` (a manifest or an index)
    under the name ``ref_name`` (the image tag)."""
    (layout / "oci-layout").write_bytes(canonical({"imageLayoutVersion": "1.0.0"}))
    root = {"schemaVersion": 2, "manifests": [top.descriptor(annotations={REF_NAME: ref_name})]}
    (layout / "index.json").write_bytes(canonical(root))


def read_blob(layout: Path, digest: str) -> bytes:
    """Return the blob ``digest`` of ``layout``, checked against its digest.

    Raises:
        BuildError: when the blob is missing or its content does not match its digest.
    """
    path = layout / "blobs" / "sha256" / digest.removeprefix("sha256:")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise BuildError(f"{layout}: blob {digest} missing: {err}") from err
    if f"sha256:{hashlib.sha256(data).hexdigest()}" != digest:
        raise BuildError(f"{layout}: blob {digest} does not match its digest")
    return data


def platform_manifest(layout: Path, arch: str) -> dict[str, Any]:
    """Return the manifest of ``arch`` in ``layout`` (whose top is a manifest or an index).

    Raises:
        BuildError: when the layout holds no image for ``arch``.
    """
    top = json.loads((layout / "index.json").read_text())["manifests"][0]
    document = json.loads(read_blob(layout, top["digest"]))
    if document.get("mediaType") == INDEX:
        found = [m for m in document["manifests"] if m["platform"]["architecture"] == arch]
        if not found:
            raise BuildError(f"{layout}: no linux/{arch} image in the index")
        document = json.loads(read_blob(layout, found[0]["digest"]))
    config = json.loads(read_blob(layout, document["config"]["digest"]))
    if config.get("architecture") != arch:
        raise BuildError(f"{layout}: the image is {config.get('architecture')}, not {arch}")
    return dict(document)


def unpack(layout: Path, arch: str, dest: Path) -> dict[str, Any]:
    """Extract the ``arch`` image's layers in order into ``dest``; return its configuration.

    Raises:
        BuildError: when a layer is missing, corrupt or writes outside ``dest``.
    """
    document = platform_manifest(layout, arch)
    dest.mkdir(parents=True, exist_ok=True)
    for descriptor in document["layers"]:
        path = layout / "blobs" / "sha256" / descriptor["digest"].removeprefix("sha256:")
        extract(path, dest, f"{layout}: cannot unpack layer {descriptor['digest']}")
    return dict(json.loads(read_blob(layout, document["config"]["digest"])))


def extract(tarball: Path, dest: Path, failure: str, *, absolute_links: bool = True) -> None:
    """Extract ``tarball`` (any compression) into ``dest``, never outside it: a member whose path
    leaves ``dest``, or a device, is refused; a root file system's absolute symlinks are kept
    unless ``absolute_links`` is False (then a link must point inside ``dest``). Checked here
    rather than by ``extractall(filter=...)``, which Debian 12's Python 3.11.2 lacks.

    Raises:
        BuildError: starting with ``failure`` when it is not a readable tar or escapes ``dest``.
    """
    root = dest.resolve()
    try:
        with tarfile.open(tarball, "r:*") as tar:
            members = tar.getmembers()
            for member in members:
                _check_member(member, root, absolute_links)
            tar.extractall(dest, members=members)  # noqa: S202 (every member checked above)
    except (OSError, tarfile.TarError, ValueError) as err:
        raise BuildError(f"{failure}: {err}") from err


def _check_member(member: tarfile.TarInfo, root: Path, absolute_links: bool) -> None:
    """Refuse a member that would land, or link, outside ``root``.

    Raises:
        ValueError: naming the member.
    """
    target = Path(os.path.normpath(root / member.name))  # by the names: links are not followed
    if member.name.startswith("/") or not target.is_relative_to(root):
        raise ValueError(f"member {member.name!r} would be written outside the directory")
    if member.isdev() or member.isfifo():
        raise ValueError(f"member {member.name!r} is a device or a fifo")
    if member.issym() or member.islnk():
        link = member.linkname
        if link.startswith("/"):
            if member.islnk() or not absolute_links:
                raise ValueError(f"member {member.name!r} links to the absolute path {link!r}")
            return
        base = target.parent if member.issym() else root
        if not Path(os.path.normpath(base / link)).is_relative_to(root):
            raise ValueError(f"member {member.name!r} links outside the directory ({link!r})")

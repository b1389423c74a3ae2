"""The artifact store: keys under ``Settings().resolved_artifact_store`` (file:// or s3://).

Steps keep large outputs here (bento archives, drift reports) and the local runner maps Argo's
key-only S3 artifacts here. An Argo artifact ``s3: {key: K}`` without bucket or endpoint means
"key K in the artifact repository"; locally that repository is
``Settings().resolved_artifact_store``: a ``file://`` directory or an ``s3://bucket/prefix``
reached with boto3 at ``Settings().s3.endpoint_url``.
Files and directories are copied as they are (no tar/gzip archive).

Nothing leaves the store. A key is relative: ``/``-separated names, none of them empty, ``.`` or
``..`` (``bentos/churn/model.v1.bento``); a URI to download is under the store root; a local path
a key maps to (the store's own directory on upload, the download target for each S3 object) stays
inside its directory once symlinks are resolved. Anything else is refused with a
:class:`~steps.core.errors.ConfigError` naming the key and the store root, before a byte is
copied or deleted: an upload replaces its target, and a key such as ``../victim`` must not
delete a directory beside the store.
"""

from __future__ import annotations

import shutil
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlparse

from steps.core.errors import ConfigError, StoreError
from steps.core.redact import redact
from steps.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

KEY_FORM = (
    "a relative key of '/'-separated names, none of them empty, '.' or '..' "
    "(e.g. bentos/churn/model.v1.bento)"
)
"""The expected form of a key, as refusals state it."""


def check_key(key: str, root: str) -> str:
    """Return ``key`` when it names something inside the store at ``root``.

    Raises:
        ConfigError: for an empty or absolute key, an empty, ``.`` or ``..`` segment, a
            backslash or a NUL character; naming the key, the root and :data:`KEY_FORM`.
    """
    problem = _key_problem(key)
    if problem is not None:
        raise ConfigError(
            f"artifact key {key!r} {problem}: it would leave the artifact store {redact(root)}; "
            f"expected {KEY_FORM}"
        )
    return key


def _key_problem(key: str) -> str | None:
    if not key:
        return "is empty"
    if key.startswith("/"):
        return "is absolute"
    if "\\" in key or "\0" in key:
        return "holds a backslash or NUL"
    for segment in key.split("/"):
        if segment == "":
            return "holds an empty segment"
        if segment in (".", ".."):
            return f"holds a {segment!r} segment"
    return None


class ArtifactStore:
    """Copies node files to and from the configured artifact store root."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.resolved_artifact_store
        self._settings = settings
        self._client: Any = None

    def uri(self, key: str) -> str:
        """Return the URI of ``key`` under the store root (percent-encoded in a file:// root).

        Raises:
            ConfigError: when ``key`` would leave the store (:func:`check_key`).
        """
        check_key(key, self.root)
        if self.root.startswith("file://"):
            return f"{self.root}/{quote(key)}"
        return f"{self.root}/{key}"

    def upload(self, source: Path, key: str) -> str:
        """Copy a file or directory to ``key``, replacing what is there.

        Returns:
            The URI it was stored at.

        Raises:
            ConfigError: when ``key`` would leave the store, through its segments or a symlink.
            StoreError: when the store refuses the copy.
        """
        uri = self.uri(key)
        if uri.startswith("file://"):
            target = self._local_target(key)
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target)
            else:
                shutil.copy2(source, target)
            return uri
        bucket, prefix = _s3_parts(uri)
        files = (
            [source] if source.is_file() else sorted(p for p in source.rglob("*") if p.is_file())
        )
        for path in files:
            object_key = (
                prefix if path == source else f"{prefix}/{path.relative_to(source).as_posix()}"
            )
            self._call(lambda p=path, k=object_key: self.client.upload_file(str(p), bucket, k), uri)
        return uri

    def download(self, uri: str, target: Path, *, optional: bool = False) -> bool:
        """Copy the file or directory at ``uri`` (under the store root) to ``target``.

        Returns:
            True when copied; False when it does not exist and ``optional`` is set.

        Raises:
            ConfigError: when ``uri`` is not under the store root (another scheme, bucket or
                directory, a ``..`` segment, a symlink out of the store), or an S3 object's key
                would land outside ``target``.
            StoreError: when it does not exist (and is not optional) or cannot be read.
        """
        key = self.key_of(uri)
        target.parent.mkdir(parents=True, exist_ok=True)
        if self.root.startswith("file://"):
            source = self._local_target(key)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, target)
            elif optional:
                return False
            else:
                raise StoreError(f"artifact {redact(uri)} does not exist")
            return True
        return self._download_s3(uri, target, optional=optional)

    def key_of(self, uri: str) -> str:
        """Return the key of ``uri`` in this store.

        Raises:
            ConfigError: when ``uri`` is not under the store root, naming both and the
                expected form.
        """
        if uri.startswith(f"{self.root}/"):
            relative = uri.removeprefix(f"{self.root}/")
            key = unquote(relative) if self.root.startswith("file://") else relative
            if _key_problem(key) is None:
                return key
        raise ConfigError(
            f"artifact {redact(uri)!r} is outside the artifact store {redact(self.root)}: "
            f"expected {redact(self.root)}/<key>, with {KEY_FORM}; the steps pass only URIs "
            f"they stored there"
        )

    def _local_target(self, key: str) -> Path:
        """The local path of ``key`` in a file:// store, refused when a symlink leads it out."""
        base = _file_path(self.root).resolve()
        return _inside(base, key, f"artifact key {key!r}", self.root)

    def _download_s3(self, uri: str, target: Path, *, optional: bool) -> bool:
        bucket, prefix = _s3_parts(uri)
        listing = self._call(lambda: self.client.list_objects_v2(Bucket=bucket, Prefix=prefix), uri)
        keys = [item["Key"] for item in listing.get("Contents", [])]
        if prefix in keys:
            self._call(lambda: self.client.download_file(bucket, prefix, str(target)), uri)
            return True
        # A key ending in "/" is a folder marker some S3 tools create: it holds no data.
        inside = [key for key in keys if key.startswith(f"{prefix}/") and not key.endswith("/")]
        if not inside:
            if optional:
                return False
            raise StoreError(f"artifact {redact(uri)} does not exist")
        # Every destination is checked before the first download: a hostile object key
        # (``prefix//etc/x``, ``prefix/../../x``) must not write anything, anywhere.
        destinations = {
            key: _inside(
                target.resolve(), key.removeprefix(f"{prefix}/"), f"S3 object {key!r}", uri
            )
            for key in inside
        }
        for key, destination in destinations.items():
            destination.parent.mkdir(parents=True, exist_ok=True)
            self._call(
                lambda k=key, d=destination: self.client.download_file(bucket, k, str(d)), uri
            )
        return True

    @property
    def client(self) -> S3Client:
        """A boto3 S3 client for the configured endpoint (created on first use)."""
        if self._client is None:
            import boto3

            self._client = boto3.client(
                "s3",
                endpoint_url=self._settings.s3.endpoint_url,
                region_name=self._settings.s3.region,
            )
        return self._client  # type: ignore[no-any-return]

    @staticmethod
    def _call(action: Any, uri: str) -> Any:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return action()
        except (BotoCoreError, ClientError) as err:
            raise StoreError(redact(f"artifact store refused {uri}: {err}")) from err


def _inside(base: Path, relative: str, what: str, root: str) -> Path:
    """``base / relative`` once its segments and symlinks are checked to stay under ``base``.

    Raises:
        ConfigError: naming ``what``, the store ``root`` and the expected form.
    """
    problem = _key_problem(relative)
    if problem is None:
        path = base.joinpath(*PurePosixPath(relative).parts)
        if base in path.resolve().parents:
            return path
        problem = f"resolves to {path.resolve()} through a symlink"
    raise ConfigError(
        f"{what} {problem}: it would leave {base} (artifact store {redact(root)}); "
        f"expected {KEY_FORM}"
    )


def _file_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")

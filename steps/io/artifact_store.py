"""The artifact store: keys under ``Settings().resolved_artifact_store`` (file:// or s3://).

Steps keep large outputs here (bento archives, drift reports) and the local runner maps Argo's
key-only S3 artifacts here. An Argo artifact ``s3: {key: K}`` without bucket or endpoint means
"key K in the artifact repository"; locally that repository is
``Settings().resolved_artifact_store``: a ``file://`` directory or an ``s3://bucket/prefix``
reached with boto3 at ``Settings().s3.endpoint_url``.
Files and directories are copied as they are (no tar/gzip archive).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from steps.core.errors import StoreError
from steps.core.settings import Settings

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


class ArtifactStore:
    """Copies node files to and from the configured artifact store root."""

    def __init__(self, settings: Settings) -> None:
        self.root = settings.resolved_artifact_store
        self._settings = settings
        self._client: Any = None

    def uri(self, key: str) -> str:
        """Return the URI of ``key`` under the store root."""
        return f"{self.root}/{key.lstrip('/')}"

    def upload(self, source: Path, key: str) -> str:
        """Copy a file or directory to ``key``.

        Returns:
            The URI it was stored at.

        Raises:
            StoreError: when the store refuses the copy.
        """
        uri = self.uri(key)
        if uri.startswith("file://"):
            target = _file_path(uri)
            if target.exists():
                shutil.rmtree(target) if target.is_dir() else target.unlink()
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
        """Copy the file or directory at ``uri`` to ``target``.

        Returns:
            True when copied; False when it does not exist and ``optional`` is set.

        Raises:
            StoreError: when it does not exist (and is not optional) or cannot be read.
        """
        target.parent.mkdir(parents=True, exist_ok=True)
        if uri.startswith("file://"):
            source = _file_path(uri)
            if source.is_dir():
                shutil.copytree(source, target, dirs_exist_ok=True)
            elif source.is_file():
                shutil.copy2(source, target)
            elif optional:
                return False
            else:
                raise StoreError(f"artifact {uri} does not exist")
            return True
        if not uri.startswith("s3://"):
            raise StoreError(f"artifact location {uri!r} is neither file:// nor s3://")
        return self._download_s3(uri, target, optional=optional)

    def _download_s3(self, uri: str, target: Path, *, optional: bool) -> bool:
        bucket, prefix = _s3_parts(uri)
        listing = self._call(lambda: self.client.list_objects_v2(Bucket=bucket, Prefix=prefix), uri)
        keys = [item["Key"] for item in listing.get("Contents", [])]
        if prefix in keys:
            self._call(lambda: self.client.download_file(bucket, prefix, str(target)), uri)
            return True
        inside = [key for key in keys if key.startswith(f"{prefix}/")]
        if not inside:
            if optional:
                return False
            raise StoreError(f"artifact {uri} does not exist")
        for key in inside:
            destination = target / key.removeprefix(f"{prefix}/")
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
            raise StoreError(f"artifact store refused {uri}: {err}") from err


def _file_path(uri: str) -> Path:
    return Path(unquote(urlparse(uri).path))


def _s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    return parsed.netloc, parsed.path.strip("/")

"""Install a pinned uv binary using only the Python standard library.

A fresh Debian machine has ``python3`` but neither pip nor venv; this fetches uv's wheel from
the package index (``UV_INDEX_URL``/``PIP_INDEX_URL`` or PyPI), checks its sha256 against the
index's JSON metadata and unpacks the ``uv`` binary into the given directory.

Usage: python3 scripts/bootstrap_uv.py DEST_DIR
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import platform
import stat
import sys
import urllib.request
import zipfile
from pathlib import Path

UV_VERSION = "0.13.9"
ARCH_TAGS = {"x86_64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}


def _index_request() -> urllib.request.Request:
    index = os.environ.get("UV_INDEX_URL") or os.environ.get("PIP_INDEX_URL") or ""
    base = index.rstrip("/") if index.startswith("http") else "https://pypi.org/simple"
    # PEP 691: the simple index as JSON, with each file's sha256.
    return urllib.request.Request(  # noqa: S310 - an https index URL, checked above
        f"{base}/uv/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )


def main() -> int:
    dest = Path(sys.argv[1] if len(sys.argv) > 1 else ".tools/bin")
    arch = ARCH_TAGS.get(platform.machine())
    if arch is None:
        print(f"bootstrap_uv: unsupported machine {platform.machine()!r}", file=sys.stderr)
        return 2
    with urllib.request.urlopen(_index_request(), timeout=60) as response:  # noqa: S310
        files = json.load(response)["files"]
    prefix = f"uv-{UV_VERSION}-py3-none-manylinux"
    wheel = next(
        (
            f
            for f in files
            if f["filename"].startswith(prefix) and f["filename"].endswith(f"_{arch}.whl")
        ),
        None,
    )
    if wheel is None:
        print(f"bootstrap_uv: no manylinux {arch} wheel for uv {UV_VERSION}", file=sys.stderr)
        return 2
    with urllib.request.urlopen(wheel["url"], timeout=300) as response:  # noqa: S310
        payload = response.read()
    if hashlib.sha256(payload).hexdigest() != wheel["hashes"]["sha256"]:
        print("bootstrap_uv: sha256 mismatch for " + wheel["filename"], file=sys.stderr)
        return 2
    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        member = next(n for n in archive.namelist() if n.endswith("/scripts/uv"))
        dest.mkdir(parents=True, exist_ok=True)
        target = dest / "uv"
        target.write_bytes(archive.read(member))
    target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    print(f"bootstrap_uv: installed uv {UV_VERSION} at {target}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

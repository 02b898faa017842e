"""File helpers shared by the stages' edges (landing files, exports)."""

from __future__ import annotations

import hashlib
import os
import urllib.parse


def file_sha256(path: str) -> str:
    """Return the hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def local_path(location: str) -> str | None:
    """Return the absolute local path of ``location`` (a plain path or a ``file:`` URI), or
    None when it names another file system (``hdfs://``, ``s3a://``)."""
    parsed = urllib.parse.urlparse(location)
    if parsed.scheme == "file":
        return os.path.abspath(urllib.parse.unquote(parsed.path))
    if parsed.scheme == "" or len(parsed.scheme) == 1:   # a relative path, or a Windows drive letter
        return os.path.abspath(location)
    return None

"""File helpers shared by the stages' edges (landing files, exports)."""

from __future__ import annotations

import hashlib


def file_sha256(path: str) -> str:
    """Return the hex SHA-256 of the file at ``path``, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

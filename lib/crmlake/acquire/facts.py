"""What a new landing file holds, in one streaming pass on an executor: checksum and data lines.

:func:`file_facts` is plain Python (no Spark), so it is tested directly. It counts each
file's data lines independently of Spark's reader (:mod:`crmlake.acquire.reader`), so that
acquire's balance (data lines seen = lines spanned by accepted + quarantined + duplicate
records) can fail when records are lost, and it finds the files whose content cannot be
read (a truncated gzip) before Spark's reader would fail on them.
"""

from __future__ import annotations

import hashlib
import zlib
from typing import Iterator

FACTS_SCHEMA = "path string, sha256 string, data_lines long, unreadable string"
BLOCK_BYTES = 1 << 20


def _unreadable(exc: BaseException) -> str:
    return f"unreadable_file: {type(exc).__name__}: {exc}"[:500]


def _blank(line: bytes) -> bool:
    """A line holding only whitespace (or nothing) is no record: the one rule both counters use."""
    return not line.strip()


def _decompressed_blocks(path: str) -> Iterator[bytes]:
    """Yield the file's content in blocks, gunzipped when it ends in .gz (every gzip member)."""
    with open(path, "rb") as fh:
        blocks = iter(lambda: fh.read(BLOCK_BYTES), b"")
        if not path.endswith(".gz"):
            yield from blocks
            return
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        for block in blocks:
            while block:
                yield inflater.decompress(block)
                block = inflater.unused_data
                if inflater.eof and block:  # a further gzip member
                    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        if not inflater.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def file_facts(path: str, fmt: str) -> tuple[str, str, int | None, str | None]:
    """Return ``(path, sha256, data_lines, unreadable)`` for one landing file, in one pass.

    sha256 is of the bytes as delivered; data_lines counts the non-blank lines of the
    (gunzipped) content, less the header of a CSV file; unreadable is the reason when the
    content cannot be read (a truncated gzip), and then data_lines is None.
    """
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(BLOCK_BYTES), b""):
            digest.update(block)
    lines, carry = 0, b""
    try:
        for block in _decompressed_blocks(path):
            pieces = (carry + block).split(b"\n")
            carry = pieces.pop()
            lines += sum(1 for piece in pieces if not _blank(piece))
    except (OSError, EOFError, zlib.error) as exc:
        return path, digest.hexdigest(), None, _unreadable(exc)
    lines += 0 if _blank(carry) else 1
    header = 1 if fmt == "csv" and lines else 0
    return path, digest.hexdigest(), lines - header, None

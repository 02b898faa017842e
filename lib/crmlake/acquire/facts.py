"""What a new landing file holds, in one streaming pass on an executor: checksum and data lines.

:func:`file_facts` is plain Python (no Spark), so it is tested directly. It reads a file
through :mod:`crmlake.files`, so a landing file on HDFS or in a bucket is read by the same code
as a local one. It counts each
file's data lines independently of Spark's reader (:mod:`crmlake.acquire.reader`), so that
acquire's balance (data lines seen = lines spanned by accepted + quarantined + duplicate
records) can fail when records are lost, and it finds the files whose content cannot be
read (a truncated gzip, a compression crmlake does not read) before Spark's reader would
fail on them. The two counters share one definition of a blank line,
:data:`BLANK_CHARACTERS`: were they to disagree on one line, its file would never balance.
"""

from __future__ import annotations

import bz2
import os
import zlib
from typing import Callable, Iterator

from crmlake import files

FACTS_SCHEMA = "path string, sha256 string, data_lines long, unreadable string"
BLOCK_BYTES = 1 << 20
# A line made of these characters only (or of nothing) is blank: no record. ASCII whitespace
# only, as ``bytes.strip()`` sees it: a line holding only U+2028, U+00A0 or any other
# Unicode space is a data line (a bad record, quarantined), so that neither counter needs
# to decode a line to know it is blank. The reader builds its Spark test from this constant.
BLANK_CHARACTERS = " \t\r\n\x0b\x0c"
_BLANK_BYTES = BLANK_CHARACTERS.encode("ascii")
# Spark's text reader decompresses by suffix (Hadoop's codecs): these two are counted as it
# reads them, every stream of a multi-stream file (gzip members, concatenated bzip2 streams).
DECOMPRESSORS: dict[str, Callable] = {
    ".gz": lambda: zlib.decompressobj(wbits=16 + zlib.MAX_WBITS),
    ".bz2": bz2.BZ2Decompressor,
}
# Hadoop's other codecs (.deflate, .lz4, .snappy, .zst: Hadoop's own framing, which other
# tools' files need not follow) and .xz (which Spark would read as raw bytes, a bad record
# per line): such a file is refused whole, as unreadable, with the reason.
REFUSED_COMPRESSIONS = (".deflate", ".lz4", ".snappy", ".zst", ".xz")


def _unreadable(exc: BaseException) -> str:
    return f"unreadable_file: {type(exc).__name__}: {exc}"[:500]


def _blank(line: bytes) -> bool:
    """A line holding only :data:`BLANK_CHARACTERS` (or nothing) is no record."""
    return not line.strip(_BLANK_BYTES)


def refused_compression(path: str) -> str | None:
    """Return why ``path`` is not read (a compression crmlake does not read), or None."""
    suffix = next((s for s in REFUSED_COMPRESSIONS if path.endswith(s)), None)
    if suffix is None:
        return None
    readable = " or ".join(DECOMPRESSORS)
    return f"unreadable_file: unsupported_compression: {os.path.basename(path)} is {suffix}-compressed; send it uncompressed or {readable}"[:500]


def _decompressed_blocks(path: str) -> Iterator[bytes]:
    """Yield the file's content in blocks, decompressed when its suffix is one of :data:`DECOMPRESSORS`."""
    new_decompressor = next((make for suffix, make in DECOMPRESSORS.items() if path.endswith(suffix)), None)
    with files.open_input(path) as fh:
        blocks = iter(lambda: fh.read(BLOCK_BYTES), b"")
        if new_decompressor is None:
            yield from blocks
            return
        decompressor = new_decompressor()
        for block in blocks:
            while block:
                if decompressor.eof:  # a further stream follows the one that ended (bz2 takes no input past its end)
                    decompressor = new_decompressor()
                yield decompressor.decompress(block)
                block = decompressor.unused_data
        if not decompressor.eof:
            raise EOFError("Compressed file ended before the end-of-stream marker was reached")


def file_facts(path: str, fmt: str) -> tuple[str, str, int | None, str | None]:
    """Return ``(path, sha256, data_lines, unreadable)`` for one landing file (a location, :mod:`crmlake.files`).

    sha256 is of the bytes as delivered; data_lines counts the non-blank lines of the
    (decompressed) content, less the header of a CSV file; unreadable is the reason when the
    content cannot be read (a truncated gzip or bzip2, a refused compression:
    :func:`refused_compression`), and then data_lines is None.
    """
    sha256 = files.file_sha256(path)
    refused = refused_compression(path)
    if refused:
        return path, sha256, None, refused
    lines, carry = 0, b""
    try:
        for block in _decompressed_blocks(path):
            pieces = (carry + block).split(b"\n")
            carry = pieces.pop()
            lines += sum(1 for piece in pieces if not _blank(piece))
    except (OSError, EOFError, zlib.error) as exc:
        return path, sha256, None, _unreadable(exc)
    lines += 0 if _blank(carry) else 1
    header = 1 if fmt == "csv" and lines else 0
    return path, sha256, lines - header, None

"""Split one landing file into records, on the executors: gzip, line numbers, encoding, size, CSV.

:func:`file_records` is plain Python (no Spark), so it is tested directly. It yields one
tuple per record: ``(source_line, line_count, raw_text, record_json, error)``.
``line_count`` is how many data lines the record spans (a CSV record with a quoted newline
spans two; a CSV header is not data and spans none). :func:`file_facts` counts the data
lines of a file independently, in one streaming pass that also checksums it, so that
acquire's balance (data lines seen = lines covered by accepted + quarantined + duplicate
records) can fail when records are lost. ``record_json`` is the
record as a JSON object (a CSV row becomes ``{"column": "value", ...}``), so JSON and CSV
sources are validated by the same Spark code. ``error`` is a reason code when the record
is bad before any field is looked at (``invalid_utf8``, ``oversize_line``,
``csv_field_count``, ``unreadable_file``).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import zlib
from typing import Iterator

RECORD_SCHEMA = "source_line long, line_count int, raw_text string, record_json string, error string"
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


def _decode(raw: bytes) -> tuple[str, bool]:
    """Decode UTF-8; return (text, valid). Invalid bytes survive as escapes for the raw text."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), False


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line[:-1] if line.endswith(b"\r") else line
        if not _blank(line):
            yield number, line


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def file_records(path: str, content: bytes, fmt: str, max_line_bytes: int, raw_max_chars: int) -> Iterator[tuple]:
    """Yield ``(source_line, line_count, raw_text, record_json, error)`` for every record of one file."""
    try:
        data = gzip.decompress(content) if path.endswith(".gz") else content
    except (OSError, EOFError, zlib.error) as exc:
        yield (0, 0, None, None, _unreadable(exc))
        return
    if fmt == "json":
        yield from _json_records(data, max_line_bytes, raw_max_chars)
    else:
        yield from _csv_records(data, max_line_bytes, raw_max_chars)


def _json_records(data: bytes, max_line_bytes: int, raw_max_chars: int) -> Iterator[tuple]:
    for number, line in _lines(data):
        if len(line) > max_line_bytes:
            yield (number, 1, _decode(line[:raw_max_chars])[0], None, "oversize_line")
            continue
        text, valid = _decode(line)
        yield (number, 1, _truncate(text, raw_max_chars), text if valid else None, None if valid else "invalid_utf8")


def _csv_records(data: bytes, max_line_bytes: int, raw_max_chars: int) -> Iterator[tuple]:
    # Decode line by line so one bad line is one bad record; quoted fields may span lines.
    decoded: list[tuple[int, str, str | None]] = []
    for number, line in _lines(data):
        if len(line) > max_line_bytes:
            decoded.append((number, _decode(line[:raw_max_chars])[0], "oversize_line"))
            continue
        text, valid = _decode(line)
        decoded.append((number, text, None if valid else "invalid_utf8"))
    if not decoded:
        return
    header_no, header_text, header_error = decoded[0]
    if header_error:  # no row can be read without its column names: every line is quarantined
        yield (header_no, 0, _truncate(header_text, raw_max_chars), None, f"bad_header: {header_error}")
        for number, text, _ in decoded[1:]:
            yield (number, 1, _truncate(text, raw_max_chars), None, "bad_header")
        return
    header = [h.strip() for h in next(csv.reader([header_text]))]
    pending: list[tuple[int, str]] = []
    for number, text, error in decoded[1:]:
        if error and not pending:
            yield (number, 1, _truncate(text, raw_max_chars), None, error)
            continue
        pending.append((number, text))
        joined = "\n".join(t for _, t in pending)
        rows = list(csv.reader(io.StringIO(joined)))
        if joined.count('"') % 2 == 1 and len(pending) < 50:
            continue  # an open quoted field: the record goes on on the next line
        first_no, spanned = pending[0][0], len(pending)
        pending = []
        raw = _truncate(joined, raw_max_chars)
        if len(rows) != 1 or len(rows[0]) != len(header):
            found = len(rows[0]) if rows else 0
            yield (first_no, spanned, raw, None, f"csv_field_count: expected {len(header)}, found {found}")
            continue
        record = {name: (value if value != "" else None) for name, value in zip(header, rows[0])}
        yield (first_no, spanned, raw, json.dumps(record, ensure_ascii=False), None)
    for number, text in pending:
        yield (number, 1, _truncate(text, raw_max_chars), None, "csv_unterminated_quote")

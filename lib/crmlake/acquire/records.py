"""Split one landing file into records, on the executors: gzip, line numbers, encoding, size, CSV.

:func:`file_records` is plain Python (no Spark), so it is tested directly. It yields one
tuple per record: ``(source_line, raw_text, record_json, error)``. ``record_json`` is the
record as a JSON object (a CSV row becomes ``{"column": "value", ...}``), so JSON and CSV
sources are validated by the same Spark code. ``error`` is a reason code when the record
is bad before any field is looked at (``invalid_utf8``, ``oversize_line``,
``csv_field_count``, ``unreadable_file``).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import zlib
from typing import Iterator

RECORD_SCHEMA = "source_line long, raw_text string, record_json string, error string"


def _decode(raw: bytes) -> tuple[str, bool]:
    """Decode UTF-8; return (text, valid). Invalid bytes survive as escapes for the raw text."""
    try:
        return raw.decode("utf-8"), True
    except UnicodeDecodeError:
        return raw.decode("utf-8", errors="backslashreplace"), False


def _lines(data: bytes) -> Iterator[tuple[int, bytes]]:
    for number, line in enumerate(data.split(b"\n"), start=1):
        line = line[:-1] if line.endswith(b"\r") else line
        if line.strip():
            yield number, line


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit]


def file_records(path: str, content: bytes, fmt: str, max_line_bytes: int, raw_max_chars: int) -> Iterator[tuple]:
    """Yield ``(source_line, raw_text, record_json, error)`` for every record of one file."""
    try:
        data = gzip.decompress(content) if path.endswith(".gz") else content
    except (OSError, EOFError, zlib.error) as exc:
        yield (0, None, None, f"unreadable_file: {type(exc).__name__}: {exc}"[:500])
        return
    if fmt == "json":
        yield from _json_records(data, max_line_bytes, raw_max_chars)
    else:
        yield from _csv_records(data, max_line_bytes, raw_max_chars)


def _json_records(data: bytes, max_line_bytes: int, raw_max_chars: int) -> Iterator[tuple]:
    for number, line in _lines(data):
        if len(line) > max_line_bytes:
            yield (number, _decode(line[:raw_max_chars])[0], None, "oversize_line")
            continue
        text, valid = _decode(line)
        yield (number, _truncate(text, raw_max_chars), text if valid else None, None if valid else "invalid_utf8")


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
    if header_error:
        yield (header_no, _truncate(header_text, raw_max_chars), None, f"bad_header: {header_error}")
        return
    header = [h.strip() for h in next(csv.reader([header_text]))]
    pending: list[tuple[int, str]] = []
    for number, text, error in decoded[1:]:
        if error and not pending:
            yield (number, _truncate(text, raw_max_chars), None, error)
            continue
        pending.append((number, text))
        joined = "\n".join(t for _, t in pending)
        rows = list(csv.reader(io.StringIO(joined)))
        if joined.count('"') % 2 == 1 and len(pending) < 50:
            continue  # an open quoted field: the record goes on on the next line
        first_no = pending[0][0]
        pending = []
        raw = _truncate(joined, raw_max_chars)
        if len(rows) != 1 or len(rows[0]) != len(header):
            found = len(rows[0]) if rows else 0
            yield (first_no, raw, None, f"csv_field_count: expected {len(header)}, found {found}")
            continue
        record = {name: (value if value != "" else None) for name, value in zip(header, rows[0])}
        yield (first_no, raw, json.dumps(record, ensure_ascii=False), None)
    for number, text in pending:
        yield (number, _truncate(text, raw_max_chars), None, "csv_unterminated_quote")

"""Landing files into records, in the JVM: Spark's text reader splits, numbers and parses every line.

A big plain file is split into many tasks (``spark.sql.files.maxPartitionBytes``); a gzip
file cannot be split and is read by one task. Line numbers are counted across splits
without a shuffle, in two passes over the files:

1. one row per split (file, block start) to the driver: its first row id
   (``monotonically_increasing_id`` is contiguous within a split), its line count and, for
   CSV, its first non-blank line (the header candidate) and its lines with an odd number of
   quotes (where a quoted field opens or closes across lines: rare);
2. every line, joined to that small per-split index (broadcast) for its file and line number:
   lines in the file's earlier splits + its row id - the split's first row id + 1. The lines
   of the few CSV records that span lines are joined to their record's first line
   (broadcast) and grouped; every other line is a record by itself.

A record is ``(source_file, file_sha256, source_line, line_count, raw_text, record_json,
error)``: ``line_count`` is how many data lines it spans (a CSV header is not data),
``raw_text`` its text as read (the quarantine makes it valid UTF-8 and truncates it, for
the bad records only),
``record_json`` the record as a JSON object (a CSV row becomes ``{"column": "value"}``,
so both formats are validated by the same code) and ``error`` a reason code when the
record is bad before any field is looked at: ``invalid_utf8``, ``oversize_line``,
``csv_field_count``, ``csv_unterminated_quote`` (no closing quote within
:data:`MAX_RECORD_LINES` lines), ``csv_stray_quote`` (a quote inside an unquoted field),
``bad_header``, ``unreadable_file``. The balance's other side, each file's data lines, is
counted independently by :mod:`crmlake.acquire.facts`.
"""

from __future__ import annotations

import csv
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.acquire.facts import BLANK_CHARACTERS
from crmlake.files import path_part, spark_uri

RECORD_SCHEMA = "source_file string, file_sha256 string, source_line long, line_count int, raw_text string, record_json string, error string"
MAX_RECORD_LINES = 50     # a quote still open this many lines later is a stray quote, not a multi-line field
GLOB_CHARACTERS = "\\*?[]{}"
# An RFC 4180 quoted field: opened at the start of a field, doubled quotes and newlines inside,
# closed at the end of one. Unrolled and possessive (runs of non-quotes, then doubled quotes,
# never given back: the closing quote must end the field, so no backtrack could match), which
# Java matches in loops, whereas "([^"]|"")*" recursed once per character and a quoted field of
# a few thousand characters overflowed the thread's stack (the JVM went down with it).
QUOTED_FIELD = r'(?<=^|,)"[^"]*+(?:""[^"]*+)*+"(?=,|\z)'
SPAN_SCHEMA = "source_file string, source_line long, record_start long, span_error string"
# A Java regular expression: each blank character as a \x{..} escape, so none is taken for syntax.
BLANK_LINE = r"\A[" + "".join(f"\\x{{{ord(c):x}}}" for c in BLANK_CHARACTERS) + r"]*\z"
INDEX_SCHEMA = ("_uri string, _block long, _first_row long, _first_line long, source_file string, file_sha256 string, "
                "_header_id int, _header_line long, _bad_header string")


@dataclass(frozen=True)
class FileToRead:
    """One landing file to read: its path, checksum and, when its content cannot be read, why."""

    path: str
    sha256: str
    unreadable: str | None = None


def read_records(spark: SparkSession, files: list[FileToRead], fmt: str, max_line_bytes: int) -> DataFrame:
    """Return every record of ``files`` (``fmt`` ``json`` or ``csv``) as rows of :data:`RECORD_SCHEMA`.

    The files' paths are locations (:mod:`crmlake.files`): local paths or URIs of a file
    system Spark reads. An unreadable file (a truncated gzip) is one record holding its reason; the
    others are read by Spark, so a local landing zone must be one the driver and the
    executors all see (one machine, NFS, a mount).
    """
    unreadable = spark.createDataFrame(
        [(f.path, f.sha256, 0, 0, None, None, f.unreadable) for f in files if f.unreadable], RECORD_SCHEMA)
    readable = [f for f in files if not f.unreadable]
    if not readable:
        return unreadable
    raw = raw_lines(spark, [f.path for f in readable])
    splits = _splits(raw, fmt)
    headers: list[list[str]] = []
    index = _split_index(splits, {f.path: f for f in readable}, fmt, headers)
    lines = numbered_lines(raw, spark.createDataFrame(index, INDEX_SCHEMA), max_line_bytes)
    if fmt == "json":
        records = lines.select(
            "source_file", "file_sha256", "source_line", F.lit(1).alias("line_count"), F.col("value").alias("raw_text"),
            F.when(F.col("error").isNull(), F.col("value")).alias("record_json"), "error")
    else:
        spans = _multi_line_spans(splits, index)
        records = csv_records(lines, spark.createDataFrame(spans, SPAN_SCHEMA) if spans else None, headers)
    return records.unionByName(unreadable)


def raw_lines(spark: SparkSession, paths: list[str]) -> DataFrame:
    """Read every line of ``paths``: ``_uri``, ``_block`` (split start), ``_row`` (id, contiguous per split), ``value``."""
    return spark.read.option("lineSep", "\n").text([_glob_escaped(spark_uri(p)) for p in paths]).select(
        F.col("_metadata.file_path").alias("_uri"),
        F.col("_metadata.file_block_start").alias("_block"),
        F.monotonically_increasing_id().alias("_row"),
        "value",
    )


def numbered_lines(raw: DataFrame, index: DataFrame, max_line_bytes: int) -> DataFrame:
    """Return the non-blank lines of ``raw`` with source_file, file_sha256, source_line, the
    index's CSV header columns, ``value`` (without a trailing CR; an oversize line's cut to
    ``max_line_bytes`` characters) and ``error`` (oversize_line, invalid_utf8 or null)."""
    value = F.col("value")
    # Checked on the bytes as read: a string function (the CR's removal) would replace bad bytes.
    oversize = F.octet_length(value) - F.when(value.endswith("\r"), 1).otherwise(0) > max_line_bytes
    # An oversize line is a bad record: its text is cut to the limit (in characters) before it
    # is carried further; the quarantine keeps less still.
    text = F.when(oversize, F.left(value, F.lit(max_line_bytes))).otherwise(_without_cr(value))
    return raw.where(~_blank(value)).join(F.broadcast(index), ["_uri", "_block"]).select(
        *[c for c in index.columns if not c.startswith(("_uri", "_block", "_first"))],
        (F.col("_first_line") + F.col("_row") - F.col("_first_row")).alias("source_line"),
        text.alias("value"),
        F.when(oversize, F.lit("oversize_line")).when(~F.is_valid_utf8(value), F.lit("invalid_utf8")).alias("error"),
    )


def csv_records(lines: DataFrame, spans: DataFrame | None, headers: list[list[str]]) -> DataFrame:
    """Return the records of numbered CSV ``lines``: one per line, except the lines that
    ``spans`` (source_file, source_line, record_start, span_error) joins into one record or
    marks bad; the header line is no record unless the header is bad."""
    if spans is None:
        lines = lines.withColumn("record_start", F.lit(None).cast("long")).withColumn("span_error", F.lit(None).cast("string"))
    else:
        lines = lines.join(F.broadcast(spans), ["source_file", "source_line"], "left")
    bad_header = F.col("_bad_header").isNotNull()
    is_header = F.col("source_line") == F.col("_header_line")
    keys = ["source_file", "file_sha256", "_header_id", "_bad_header"]
    single = lines.where(F.col("record_start").isNull() & (bad_header | ~is_header)).select(
        *keys, "source_line",
        F.when(is_header, 0).otherwise(1).alias("line_count"),
        F.col("value").alias("text"),
        F.coalesce(
            F.when(bad_header & is_header, F.concat(F.lit("bad_header: "), F.col("_bad_header"))),
            F.when(bad_header, F.lit("bad_header")),
            "span_error", "error",
        ).alias("error"),
    )
    multi = lines.where(F.col("record_start").isNotNull()).groupBy(*keys, F.col("record_start").alias("source_line")).agg(
        F.count(F.lit(1)).cast("int").alias("line_count"),
        F.array_join(F.transform(F.sort_array(F.collect_list(F.struct("source_line", "value"))), lambda x: x["value"]), "\n").alias("text"),
        F.try_element_at(F.sort_array(F.collect_list(F.when(F.col("error").isNotNull(), F.struct("source_line", "error")))), F.lit(1))["error"].alias("error"),
    )
    records = single.unionByName(multi)
    expected = F.lit(None).cast("int")
    parsed = F.lit(None).cast("string")
    for header_id, columns in enumerate(headers):
        mine = F.col("_header_id") == header_id
        expected = F.when(mine, F.lit(len(columns))).otherwise(expected)
        schema = ", ".join("`{}` STRING".format(c.replace("`", "``")) for c in columns)
        parsed = F.when(mine, F.to_json(F.from_csv("text", F.lit(schema), {"escape": '"'}))).otherwise(parsed)
    # What is left without the quoted fields: its commas part the fields, and a quote left in it
    # stands inside an unquoted field, which RFC 4180 forbids (two such quotes on separate lines
    # would otherwise join the lines between them into one record, read as its first row).
    records = records.withColumn("_unquoted", F.regexp_replace("text", QUOTED_FIELD, ""))
    found = F.size(F.split("_unquoted", ",", -1))
    error = F.coalesce(
        "error",
        F.when(F.col("_unquoted").contains('"'), F.lit("csv_stray_quote")),
        F.when(found != expected, F.format_string("csv_field_count: expected %d, found %d", expected, found)),
    )
    return records.select(
        "source_file", "file_sha256", "source_line", "line_count",
        F.col("text").alias("raw_text"),
        F.when(error.isNull(), parsed).alias("record_json"),
        error.alias("error"),
    )


def _glob_escaped(path: str) -> str:
    """``path`` with the characters Hadoop would take for a glob escaped: a file name is a name."""
    return "".join("\\" + c if c in GLOB_CHARACTERS else c for c in path)


def _read_path(uri: str) -> str:
    """The path of a file as Spark's ``_metadata.file_path`` names it (a URI, percent-encoded),
    decoded: the :func:`crmlake.files.path_part` of the location it was read from."""
    return urllib.parse.unquote(urllib.parse.urlparse(uri).path)


def _blank(value: Column) -> Column:
    # The rule both line counters share: only BLANK_CHARACTERS, from the start (\A) to the very
    # end (\z). Java's \s and $ would not do: $ also matches before a final U+2028, U+2029 or
    # U+0085 (line terminators to Java), which facts counts as a data line.
    return value.rlike(BLANK_LINE)


def _without_cr(value: Column) -> Column:
    # The line without the CR of a CRLF ending (a suffix test: a regular expression costs a search per line).
    return F.when(value.endswith("\r"), value.substr(F.lit(1), F.length(value) - 1)).otherwise(value)


def _splits(raw: DataFrame, fmt: str) -> list:
    """Pass 1: one row per split of ``raw`` (collected: a few per file)."""
    aggregates = [F.min("_row").alias("first_row"), F.count(F.lit(1)).alias("lines")]
    if fmt == "csv":
        nonblank = ~_blank(F.col("value"))
        odd = nonblank & ((F.length("value") - F.length(F.replace("value", F.lit('"'), F.lit("")))) % 2 == 1)
        aggregates += [
            F.min(F.when(nonblank, F.col("_row"))).alias("first_nonblank_row"),
            F.min_by(
                F.struct(_without_cr(F.col("value")).alias("text"), F.is_valid_utf8("value").alias("valid"), F.octet_length("value").alias("bytes")),
                F.when(nonblank, F.col("_row")),
            ).alias("first_nonblank"),
            F.collect_list(F.when(odd, F.col("_row"))).alias("odd_rows"),
        ]
    return raw.groupBy("_uri", "_block").agg(*aggregates).collect()


def _split_index(splits: list, files: dict, fmt: str, headers: list) -> list[tuple]:
    """Return the per-split index rows (:data:`INDEX_SCHEMA`) from pass 1; append each distinct CSV header's columns to ``headers``."""
    per_file: dict[str, list] = defaultdict(list)
    asked = {path_part(location): location for location in files}
    for split in splits:
        path = asked.get(_read_path(split["_uri"]))
        if path is None:
            raise RuntimeError(f"Spark read {split['_uri']}, which is none of the files asked for")
        per_file[path].append(split)
    rows = []
    for path, file_splits in per_file.items():
        file_splits.sort(key=lambda s: s["_block"])
        header_id = header_line = bad_header = None
        if fmt == "csv":
            header_line, columns, bad_header = _csv_header(file_splits)
            if columns is not None:
                header_id = headers.index(columns) if columns in headers else len(headers)
                if header_id == len(headers):
                    headers.append(columns)
        first_line = 1
        for split in file_splits:
            rows.append((split["_uri"], split["_block"], split["first_row"], first_line, path, files[path].sha256, header_id, header_line, bad_header))
            first_line += split["lines"]
    return rows


def _csv_header(file_splits: list) -> tuple[int | None, list[str] | None, str | None]:
    """Return (line, column names, None) for a CSV file's first non-blank line, or (line, None, why) when it is bad."""
    first_line = 1
    for split in file_splits:
        if split["first_nonblank_row"] is not None:
            header = split["first_nonblank"]
            line = first_line + split["first_nonblank_row"] - split["first_row"]
            if not header["valid"]:
                return line, None, "invalid_utf8"
            if header["text"].count('"') % 2:
                return line, None, "csv_unterminated_quote"
            return line, [c.strip() for c in next(csv.reader([header["text"]]))], None
        first_line += split["lines"]
    return None, None, None


def _multi_line_spans(splits: list, index: list[tuple]) -> list[tuple]:
    """Return rows of :data:`SPAN_SCHEMA` for the lines of CSV records that span lines (each
    line with its record's first line) and for stray opening quotes (``csv_unterminated_quote``),
    in files whose header is good.

    Walks each file's odd-quote lines in order: an odd line opens a record, the next one
    closes it, unless it is :data:`MAX_RECORD_LINES` or more lines later: then the opener was
    a stray quote, quarantined alone, and the later line opens again.
    """
    first_line = {(uri, block): (row, line, path, header_line) for uri, block, row, line, path, _, header_id, header_line, _ in index if header_id is not None}
    odd_lines: dict[str, list[int]] = defaultdict(list)
    for split in splits:
        if (split["_uri"], split["_block"]) in first_line:
            row, line, path, header_line = first_line[(split["_uri"], split["_block"])]
            odd_lines[path] += [line + r - row for r in split["odd_rows"] if line + r - row != header_line]
    rows = []
    for path, odd in odd_lines.items():
        opened = None
        for line in sorted(odd):
            if opened is None:
                opened = line
            elif line - opened < MAX_RECORD_LINES:
                rows += [(path, n, opened, None) for n in range(opened, line + 1)]
                opened = None
            else:
                rows.append((path, opened, None, "csv_unterminated_quote"))
                opened = line
        if opened is not None:
            rows.append((path, opened, None, "csv_unterminated_quote"))
    return rows

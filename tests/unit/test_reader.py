"""Landing files into records: Spark's reader (line numbers across splits, CSV) and the independent facts pass."""

import bz2
import gzip
import hashlib
import json

import pytest

from crmlake.acquire import facts
from crmlake.acquire.facts import file_facts
from crmlake.acquire.reader import FileToRead, raw_lines, read_records


@pytest.fixture
def records(spark, tmp_path):
    """Write one landing file and return its records as (source_line, line_count, raw_text, record_json, error), by line."""

    def read(name: str, content: bytes, fmt: str, max_line: int = 1 << 20):
        path = tmp_path / name
        path.write_bytes(content)
        _, sha, _, unreadable = file_facts(str(path), fmt)
        rows = read_records(spark, [FileToRead(str(path), sha, unreadable)], fmt, max_line).collect()
        assert {r["source_file"] for r in rows} <= {str(path)} and {r["file_sha256"] for r in rows} <= {sha}
        return sorted((r["source_line"], r["line_count"], r["raw_text"], r["record_json"], r["error"]) for r in rows)

    return read


def test_json_lines_keep_line_numbers_and_skip_blank_lines(records):
    out = records("a.jsonl", b'{"a": 1}\n\n{"b": 2}\r\n', "json")
    assert [(r[0], r[1], r[3], r[4]) for r in out] == [(1, 1, '{"a": 1}', None), (3, 1, '{"b": 2}', None)]


def test_line_numbers_count_across_the_splits_of_a_big_file(spark, tmp_path, records):
    lines = [b'{"n": %d}' % n if n % 7 else b"" for n in range(1, 20001)]  # every 7th line blank
    spark.conf.set("spark.sql.files.maxPartitionBytes", "16k")  # about 20 splits, read by different tasks
    try:
        out = records("big.jsonl", b"\n".join(lines) + b"\n", "json")
        assert raw_lines(spark, [str(tmp_path / "big.jsonl")]).select("_block").distinct().count() > 10  # it was split
    finally:
        spark.conf.unset("spark.sql.files.maxPartitionBytes")
    assert [r[0] for r in out] == [n for n in range(1, 20001) if n % 7]
    assert all(json.loads(r[3])["n"] == r[0] for r in out)


def test_invalid_utf8_is_a_bad_record_not_a_stop(records):
    out = records("a.jsonl", b'{"a": "\xff"}\n{"b": 2}\n', "json")
    assert (out[0][3], out[0][4]) == (None, "invalid_utf8")
    assert out[1][4] is None


def test_oversize_line_is_bad_and_its_text_is_cut_at_the_limit(records):
    out = records("a.jsonl", b'{"a": "' + b"x" * 500 + b'"}\n{"b": 2}\n', "json", max_line=100)
    assert out[0][4] == "oversize_line" and out[0][2] == '{"a": "' + "x" * 93   # the quarantine may cut it shorter (test_classify)
    assert out[1][2] == '{"b": 2}' and out[1][4] is None


def test_gzip_is_read_whole_and_a_truncated_gzip_is_one_unreadable_record(records):
    data = gzip.compress(b'{"a": 1}\n' * 100)
    assert len(records("a.jsonl.gz", data, "json")) == 100
    broken = records("b.jsonl.gz", data[: len(data) // 2], "json")
    assert len(broken) == 1 and broken[0][4].startswith("unreadable_file")


def test_a_file_name_with_glob_characters_is_read_as_named(records):
    assert len(records("events [1] {a}*.jsonl", b'{"a": 1}\n', "json")) == 1


def test_a_file_name_with_percent_signs_and_spaces_is_read_as_named(records):
    assert len(records("100%25 of a%20day.jsonl", b'{"a": 1}\n', "json")) == 1


def test_csv_rows_become_json_objects_with_empty_as_null(records):
    out = records("o.csv", b"id,name,amount\r\n1,,9.50\r\n", "csv")
    assert [(r[0], r[1], r[2], json.loads(r[3]), r[4]) for r in out] == [(2, 1, "1,,9.50", {"id": "1", "amount": "9.50"}, None)]


def test_csv_quoted_field_may_span_lines(records):
    out = records("o.csv", b'id,note\n1,"two\n\nlines, ""quoted"""\n2,x\n', "csv")
    assert [(r[0], r[1], json.loads(r[3])) for r in out] == [(2, 2, {"id": "1", "note": 'two\nlines, "quoted"'}), (5, 1, {"id": "2", "note": "x"})]


def test_a_stray_quote_is_one_bad_line_and_the_rest_are_read(records):
    body = b"id,note\n" + b'1,"open\n' + b"".join(b"%d,x\n" % n for n in range(2, 60))
    out = records("o.csv", body, "csv")
    assert (out[0][0], out[0][4]) == (2, "csv_unterminated_quote")
    assert [r[4] for r in out[1:]] == [None] * 58


def test_a_quoted_field_of_thousands_of_characters_or_doubled_quotes_is_read(records):
    # The old pattern recursed per character (past ~3,000 the JVM's stack overflowed); a loop
    # that is not possessive would still recurse per doubled quote.
    long_text, many_quotes = "x" * 5000 + '""' + "y" * 5000, 'a""' * 5000
    out = records("o.csv", f'id,note\n1,"{long_text}"\n2,"{many_quotes}"\n3,z\n'.encode(), "csv")
    assert [(r[0], json.loads(r[3]), r[4]) for r in out] == [
        (2, {"id": "1", "note": long_text.replace('""', '"')}, None), (3, {"id": "2", "note": many_quotes.replace('""', '"')}, None), (4, {"id": "3", "note": "z"}, None)]


def test_quotes_inside_unquoted_fields_are_bad_and_never_hide_the_lines_between(records, tmp_path):
    # Lines 2 and 4 hold one stray quote each: joined as one record, they would read as line 2's
    # row alone and line 3 would vanish though the file balances. The three lines are one bad record.
    content = b'id,item,qty\n1,24" monitor,1\n2,books,1\n3,27" monitor,1\n4,pens,2\n5, "a,b",1\n6,"c"d,1\n'
    out = records("o.csv", content, "csv")
    assert [(r[0], r[1], r[4]) for r in out] == [(2, 3, "csv_stray_quote"), (5, 1, None), (6, 1, "csv_stray_quote"), (7, 1, "csv_stray_quote")]
    assert out[0][2] == '1,24" monitor,1\n2,books,1\n3,27" monitor,1'
    assert balance_of(records, tmp_path, "o.csv", content, "csv") == (6, 6)


def test_csv_wrong_field_count_is_bad(records):
    out = records("o.csv", b'a,b,c\n1,2\n1,"2,3",4,5\n', "csv")
    assert [r[4] for r in out] == ["csv_field_count: expected 3, found 2", "csv_field_count: expected 3, found 4"]


def test_a_bad_csv_header_quarantines_every_line_instead_of_dropping_them(records):
    out = records("o.csv", b"id,\xff\n1,2\n3,4\n", "csv")
    assert [(r[0], r[1], r[4].split(":")[0]) for r in out] == [(1, 0, "bad_header"), (2, 1, "bad_header"), (3, 1, "bad_header")]


def test_file_facts_count_data_lines_independently_of_the_reader(tmp_path):
    plain = tmp_path / "e.jsonl"
    plain.write_bytes(b'{"a": 1}\n\n  \n{"b": 2}\r\n{"c": 3}')  # blank lines are no data; no final newline
    path, sha, lines, unreadable = file_facts(str(plain), "json")
    assert (lines, unreadable) == (3, None)
    assert sha == hashlib.sha256(plain.read_bytes()).hexdigest()
    table = tmp_path / "o.csv.gz"
    table.write_bytes(gzip.compress(b'id,note\n1,"two\nlines"\n2,x\n'))
    assert file_facts(str(table), "csv")[2] == 3  # the header is not data; the quoted newline's two lines are
    broken = tmp_path / "b.jsonl.gz"
    broken.write_bytes(gzip.compress(b"".join(b"{\"a\": %d}\n" % i for i in range(100)))[:60])
    assert file_facts(str(broken), "json")[2:] == (None, "unreadable_file: EOFError: Compressed file ended before the end-of-stream marker was reached")


def test_every_gzip_member_is_read_by_both_counters(tmp_path, records):
    content = gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n{"a": 3}\n')
    assert len(records("two.jsonl.gz", content, "json")) == 3 == file_facts(str(tmp_path / "two.jsonl.gz"), "json")[2]


def balance_of(records, tmp_path, name: str, content: bytes, fmt: str) -> tuple[int, int]:
    """Return (data lines file_facts counts, lines the reader's records span) for one landing file."""
    out = records(name, content, fmt)
    return file_facts(str(tmp_path / name), fmt)[2], sum(r[1] for r in out)


@pytest.mark.parametrize("line", ["\u2028", "\u2029", "\u0085", "\u00a0", "\u3000", "\x1c"], ids=repr)
def test_a_line_of_only_unicode_whitespace_is_a_data_line_to_both_counters(records, tmp_path, line):
    content = b'{"a": 1}\n' + line.encode() + b'\n{"b": 2}\n'
    out = records("w.jsonl", content, "json")
    assert [(r[0], r[2]) for r in out] == [(1, '{"a": 1}'), (2, line), (3, '{"b": 2}')]  # line 2: a record (validation finds it bad)
    assert balance_of(records, tmp_path, "w.jsonl", content, "json") == (3, 3)


@pytest.mark.parametrize("line", [b"\x0b", b"\x0c", b"\r", b" \t\r"], ids=repr)
def test_a_line_of_only_ascii_whitespace_is_blank_to_both_counters(records, tmp_path, line):
    content = b'{"a": 1}\n' + line + b'\n{"b": 2}\n'
    assert [r[0] for r in records("w.jsonl", content, "json")] == [1, 3]
    assert balance_of(records, tmp_path, "w.jsonl", content, "json") == (2, 2)


def test_a_csv_line_of_only_u2028_is_a_data_line_to_both_counters_even_as_the_header(records, tmp_path):
    content = "\u2028\nid,note\n1,x\n\u2028\n".encode()
    out = records("o.csv", content, "csv")
    # Line 1 is the first non-blank line: the header, of one column, against which the rows count.
    assert [(r[0], r[4]) for r in out] == [(2, "csv_field_count: expected 1, found 2"), (3, "csv_field_count: expected 1, found 2"), (4, None)]
    assert balance_of(records, tmp_path, "o.csv", content, "csv") == (3, 3)


def test_every_bzip2_stream_is_read_by_both_counters(tmp_path, records):
    content = bz2.compress(b'{"a": 1}\n') + bz2.compress(b'{"a": 2}\n\n{"a": 3}\n')
    assert [r[2] for r in records("two.jsonl.bz2", content, "json")] == ['{"a": 1}', '{"a": 2}', '{"a": 3}']
    assert file_facts(str(tmp_path / "two.jsonl.bz2"), "json")[2:] == (3, None)


def test_a_bzip2_stream_ending_at_a_block_boundary_is_followed_by_the_next(tmp_path, monkeypatch):
    first = bz2.compress(b'{"a": 1}\n')
    monkeypatch.setattr(facts, "BLOCK_BYTES", len(first))  # the second stream starts a block
    (tmp_path / "b.jsonl.bz2").write_bytes(first + bz2.compress(b'{"a": 2}\n'))
    assert file_facts(str(tmp_path / "b.jsonl.bz2"), "json")[2:] == (2, None)


def test_a_truncated_bzip2_is_one_unreadable_record(records):
    data = bz2.compress(b'{"a": 1}\n' * 100)
    broken = records("b.jsonl.bz2", data[: len(data) // 2], "json")
    assert len(broken) == 1 and broken[0][4] == "unreadable_file: EOFError: Compressed file ended before the end-of-stream marker was reached"


@pytest.mark.parametrize("suffix", [".zst", ".lz4", ".snappy", ".deflate", ".xz"])
def test_a_compression_crmlake_does_not_read_is_refused_whole_with_a_reason_naming_the_file(records, tmp_path, suffix):
    name = "e.jsonl" + suffix
    out = records(name, b"\x28\xb5\x2f\xfd any bytes", "json")
    reason = f"unreadable_file: unsupported_compression: {name} is {suffix}-compressed; send it uncompressed or .gz or .bz2"
    assert out == [(0, 0, None, None, reason)]
    assert file_facts(str(tmp_path / name), "json")[2:] == (None, reason)

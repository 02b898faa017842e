"""The executor-side splitter, in plain Python."""

import gzip
import hashlib
import json

from crmlake.acquire.records import file_facts, file_records


def records(path, content, fmt, max_line=1 << 20):
    return list(file_records(path, content, fmt, max_line, 100))


def test_json_lines_keep_line_numbers_and_skip_blank_lines():
    out = records("a.jsonl", b'{"a": 1}\n\n{"b": 2}\r\n', "json")
    assert [(r[0], r[1], r[3], r[4]) for r in out] == [(1, 1, '{"a": 1}', None), (3, 1, '{"b": 2}', None)]


def test_invalid_utf8_is_a_bad_record_not_a_stop():
    out = records("a.jsonl", b'{"a": "\xff"}\n{"b": 2}\n', "json")
    assert out[0][4] == "invalid_utf8" and out[0][3] is None
    assert out[1][4] is None


def test_oversize_line_is_bad_and_raw_text_is_truncated():
    out = records("a.jsonl", b'{"a": "' + b"x" * 500 + b'"}\n', "json", max_line=100)
    assert out[0][4] == "oversize_line"
    assert len(out[0][2]) == 100


def test_gzip_is_read_and_truncated_gzip_is_one_unreadable_record():
    data = gzip.compress(b'{"a": 1}\n' * 100)
    assert len(records("a.jsonl.gz", data, "json")) == 100
    broken = records("a.jsonl.gz", data[: len(data) // 2], "json")
    assert len(broken) == 1 and broken[0][4].startswith("unreadable_file")


def test_csv_rows_become_json_objects_with_empty_as_null():
    out = records("o.csv", b"id,name,amount\r\n1,,9.50\r\n", "csv")
    assert out == [(2, 1, "1,,9.50", json.dumps({"id": "1", "name": None, "amount": "9.50"}), None)]


def test_csv_quoted_field_may_span_lines():
    out = records("o.csv", b'id,note\n1,"two\nlines"\n2,x\n', "csv")
    assert (out[0][1], json.loads(out[0][3])) == (2, {"id": "1", "note": "two\nlines"})  # spans two data lines
    assert (out[1][0], json.loads(out[1][3])) == (4, {"id": "2", "note": "x"})


def test_csv_wrong_field_count_is_bad():
    out = records("o.csv", b"a,b,c\n1,2\n", "csv")
    assert out[0][4] == "csv_field_count: expected 3, found 2"


def test_a_bad_csv_header_quarantines_every_line_instead_of_dropping_them():
    out = records("o.csv", b"id,\xff\n1,2\n3,4\n", "csv")
    assert [(r[0], r[1], r[4].split(":")[0]) for r in out] == [(1, 0, "bad_header"), (2, 1, "bad_header"), (3, 1, "bad_header")]


def test_file_facts_count_data_lines_independently_of_the_splitter(tmp_path):
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


def test_file_facts_read_every_gzip_member(tmp_path):
    joined = tmp_path / "two.jsonl.gz"
    joined.write_bytes(gzip.compress(b'{"a": 1}\n') + gzip.compress(b'{"a": 2}\n{"a": 3}\n'))
    assert file_facts(str(joined), "json")[2] == 3 == len(records(str(joined), joined.read_bytes(), "json"))

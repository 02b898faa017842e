"""The executor-side splitter, in plain Python."""

import gzip
import json

from crmlake.acquire.records import file_records


def records(path, content, fmt, max_line=1 << 20):
    return list(file_records(path, content, fmt, max_line, 100))


def test_json_lines_keep_line_numbers_and_skip_blank_lines():
    out = records("a.jsonl", b'{"a": 1}\n\n{"b": 2}\r\n', "json")
    assert [(r[0], r[2], r[3]) for r in out] == [(1, '{"a": 1}', None), (3, '{"b": 2}', None)]


def test_invalid_utf8_is_a_bad_record_not_a_stop():
    out = records("a.jsonl", b'{"a": "\xff"}\n{"b": 2}\n', "json")
    assert out[0][3] == "invalid_utf8" and out[0][2] is None
    assert out[1][3] is None


def test_oversize_line_is_bad_and_raw_text_is_truncated():
    out = records("a.jsonl", b'{"a": "' + b"x" * 500 + b'"}\n', "json", max_line=100)
    assert out[0][3] == "oversize_line"
    assert len(out[0][1]) == 100


def test_gzip_is_read_and_truncated_gzip_is_one_unreadable_record():
    data = gzip.compress(b'{"a": 1}\n' * 100)
    assert len(records("a.jsonl.gz", data, "json")) == 100
    broken = records("a.jsonl.gz", data[: len(data) // 2], "json")
    assert len(broken) == 1 and broken[0][3].startswith("unreadable_file")


def test_csv_rows_become_json_objects_with_empty_as_null():
    out = records("o.csv", b"id,name,amount\r\n1,,9.50\r\n", "csv")
    assert out == [(2, "1,,9.50", json.dumps({"id": "1", "name": None, "amount": "9.50"}), None)]


def test_csv_quoted_field_may_span_lines():
    out = records("o.csv", b'id,note\n1,"two\nlines"\n2,x\n', "csv")
    assert json.loads(out[0][2]) == {"id": "1", "note": "two\nlines"}
    assert (out[1][0], json.loads(out[1][2])) == (4, {"id": "2", "note": "x"})


def test_csv_wrong_field_count_is_bad():
    out = records("o.csv", b"a,b,c\n1,2\n", "csv")
    assert out[0][3] == "csv_field_count: expected 3, found 2"

"""Each record of a batch is accepted once, counted a duplicate or quarantined (acquire.job.classify),
and a quarantined record's row holds its raw text readable (acquire.job.quarantine_rows)."""

import datetime as dt

from pyspark.sql import functions as F

from crmlake.acquire.contract import SOURCES
from crmlake.acquire.job import classify, quarantine_rows

COLUMNS = "record_key string, source_file string, source_line long, reason string, payload string"


def outcomes(spark, records, existing=None, broadcast_max_rows=10, committed=None):
    validated = spark.createDataFrame(records, COLUMNS)
    seen = spark.createDataFrame([(k,) for k in existing], "record_key string") if existing is not None else None
    written = spark.createDataFrame(committed, "record_key string, source_file string, source_line long") if committed is not None else None
    rows = classify(validated, seen, broadcast_max_rows, written).collect()
    assert all(set(validated.columns) < set(r.asDict()) and r["payload"] for r in rows)   # every column kept, and the outcome
    return {(r["source_file"], r["source_line"]): r["ingest_outcome"] for r in rows}


def test_the_first_good_record_of_a_key_by_file_then_line_is_accepted_the_rest_are_duplicates(spark):
    records = [
        ("k1", "b.jsonl", 1, None, "x"), ("k1", "a.jsonl", 9, None, "x"), ("k1", "a.jsonl", 3, None, "x"),   # a.jsonl line 3 is first
        ("k2", "a.jsonl", 1, "bad_enum:event_type", "y"), ("k2", "a.jsonl", 2, None, "y"),   # a bad record holds no key
        ("k3", "a.jsonl", 4, None, "z"),
        ("k4", "b.jsonl", 2, None, "w"),
    ]
    expected = {
        ("b.jsonl", 1): "duplicate", ("a.jsonl", 9): "duplicate", ("a.jsonl", 3): "accepted",
        ("a.jsonl", 1): "quarantined", ("a.jsonl", 2): "accepted",
        ("a.jsonl", 4): "accepted",
        ("b.jsonl", 2): "duplicate",   # in bronze already
    }
    assert outcomes(spark, records, existing=["k4", "k9"]) == expected
    assert outcomes(spark, records, existing=["k4", "k9"], broadcast_max_rows=1) == expected   # too many repeats to broadcast: shuffled


def test_a_record_a_killed_run_wrote_stays_accepted_where_it_was_written_and_a_late_file_holding_its_key_is_the_duplicate(spark):
    # The killed run wrote k1 from day2.jsonl; a late file (of an earlier day: first by name)
    # delivered since holds k1 too. Taken by file, the late file's k1 would be accepted and
    # written beside the committed one; the run's balance would then fail at every rerun.
    records = [("k1", "day1-late.jsonl", 1, None, "x"), ("k1", "day2.jsonl", 1, None, "x"), ("k2", "day2.jsonl", 2, None, "y"),
               ("k3", "day1-late.jsonl", 2, None, "z"), ("k3", "day2.jsonl", 3, None, "z")]
    committed = [("k1", "day2.jsonl", 1), ("k2", "day2.jsonl", 2)]
    expected = {("day1-late.jsonl", 1): "duplicate", ("day2.jsonl", 1): "accepted", ("day2.jsonl", 2): "accepted",
                ("day1-late.jsonl", 2): "accepted", ("day2.jsonl", 3): "duplicate"}   # k3 was not written: first by file
    assert outcomes(spark, records, existing=[], committed=committed) == expected
    assert outcomes(spark, records, existing=[], committed=committed, broadcast_max_rows=1) == expected


def test_with_no_bronze_table_yet_only_repeats_within_the_batch_are_duplicates(spark):
    records = [("k1", "a.csv", 2, None, "x"), ("k1", "a.csv", 5, None, "x"), ("k2", "a.csv", 3, None, "y")]
    assert outcomes(spark, records) == {("a.csv", 2): "accepted", ("a.csv", 5): "duplicate", ("a.csv", 3): "accepted"}


def test_a_quarantine_row_holds_the_raw_text_as_valid_utf8_and_truncated(spark):
    lines = [(1, b'{"x": "\xff"}', "invalid_utf8", "quarantined"), (2, b"x" * 500, "oversize_line", "quarantined"), (3, b"{}", None, "accepted")]
    classified = spark.createDataFrame([("a.jsonl", "f1", n, text.hex(), reason, outcome) for n, text, reason, outcome in lines],
                                       "source_file string, file_sha256 string, source_line long, raw_hex string, reason string, ingest_outcome string")
    classified = classified.withColumn("raw_text", F.unhex("raw_hex").cast("string"))   # the bytes as read, an invalid one included
    quarantined = quarantine_rows(classified, SOURCES["clickstream"], dt.datetime(2026, 12, 1), 100)
    # Checked in Spark: a Python string of the row would show the bad byte replaced either way.
    rows = quarantined.withColumn("valid", F.is_valid_utf8("raw_text")).orderBy("source_line").collect()
    assert [(r["source_line"], r["raw_text"], r["valid"], r["reason"]) for r in rows] == [
        (1, '{"x": "\ufffd"}', True, "invalid_utf8"), (2, "x" * 100, True, "oversize_line")]
    assert all(r["source"] == "clickstream" and len(r["quarantine_key"]) == 64 for r in rows)

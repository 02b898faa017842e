"""Each record of a batch is accepted once, counted a duplicate or quarantined (acquire.job.classify)."""

from crmlake.acquire.job import classify

COLUMNS = "record_key string, source_file string, source_line long, reason string, payload string"


def outcomes(spark, records, existing=None, broadcast_max_rows=10):
    validated = spark.createDataFrame(records, COLUMNS)
    seen = spark.createDataFrame([(k,) for k in existing], "record_key string") if existing is not None else None
    rows = classify(validated, seen, broadcast_max_rows).collect()
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


def test_with_no_bronze_table_yet_only_repeats_within_the_batch_are_duplicates(spark):
    records = [("k1", "a.csv", 2, None, "x"), ("k1", "a.csv", 5, None, "x"), ("k2", "a.csv", 3, None, "y")]
    assert outcomes(spark, records) == {("a.csv", 2): "accepted", ("a.csv", 5): "duplicate", ("a.csv", 3): "accepted"}

"""The lake's contract, run against both engines on real Delta tables on disk.

The delta-spark engine's run skips where Delta's jars are not on the JVM classpath (here:
no Maven registry, so spark.jars.packages cannot resolve them).
"""

import datetime as dt
import glob
import json
import os
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from pyspark.sql import functions as F

from crmlake.lake import Lake, PredicateError, WriteId
from crmlake.lake.rs import RsEngine
from crmlake.lake.spark_delta import delta_spark_available
from crmlake.lease import LeaseLostError, lake_lease, lease_path
from tables import ROWS, catalog_with_test_tables

ADVISORY_SIZE = "spark.sql.adaptive.advisoryPartitionSizeInBytes"


@pytest.fixture(params=["rs", "spark"])
def lake(request, spark, conf):
    if request.param == "spark" and not delta_spark_available(spark):
        pytest.skip("delta-spark engine: Delta's jars are not on the JVM classpath (no Maven here to resolve io.delta:delta-spark_4.2_2.13)")
    return Lake(spark, conf.with_overrides([f"lake.engine={request.param}"]), catalog_with_test_tables())


@pytest.fixture
def small_shuffle_partitions(spark):
    """AQE's advisory partition size at 64 KiB for one test, so a day of a few MB is big."""
    before = spark.conf.get(ADVISORY_SIZE)
    spark.conf.set(ADVISORY_SIZE, "64k")
    yield
    spark.conf.set(ADVISORY_SIZE, before)


SCHEMA = "account_id string, email string, day date, updated_time timestamp, amount long"


def holds_account():
    """How an erase finds the test tables' rows: their account_id among the subject's accounts."""
    return F.array_contains(F.col("_subject_accounts"), F.col("account_id"))


def subject(spark, *accounts):
    """The one-row frame an erase compares rows with: the subject's accounts as data."""
    return spark.createDataFrame([(list(accounts),)], "_subject_accounts array<string>")
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def rows(spark, *items):
    return spark.createDataFrame(
        [(a, f"{a}@x", dt.date(2026, 11, d), T0 + dt.timedelta(hours=h), amt) for a, d, h, amt in items], SCHEMA
    )


def table_rows(lake, name):
    return sorted((r["account_id"], r["amount"]) for r in lake.read(name).collect())


def parquet_files(lake, name):
    """The table's data files on disk (every test table here has only committed files)."""
    return sorted(glob.glob(os.path.join(lake.path(name), "day=*", "*.parquet")))


def writer_tasks(paths):
    """How many Spark tasks wrote ``paths``: a task names its files part-<its partition>-…"""
    return len({re.match(r"part-(\d+)", os.path.basename(p)).group(1) for p in paths})


def events(spark, rows, days, input_partitions):
    return spark.range(0, rows, 1, input_partitions).select(
        F.col("id").alias("event_id"), F.date_format(F.date_add(F.lit("2026-11-01"), (F.col("id") % days).cast("int")), "yyyy-MM-dd").alias("day")
    )


@pytest.mark.parametrize("write", ["append", "overwrite_where", "merge"])
def test_a_column_declared_after_the_table_was_made_is_added_by_the_next_write_and_reads_null_before(spark, lake, write):
    older = {**ROWS, "columns": {c: t for c, t in ROWS["columns"].items() if c != "amount"}}
    Lake(spark, lake.conf, catalog_with_test_tables().with_tables({"silver.t": older})).append("silver.t", rows(spark, ("a1", 1, 0, 5)).drop("amount"))
    assert "amount" not in lake.read("silver.t").columns
    new = rows(spark, ("a2", 2, 0, 7))
    {"append": lambda: lake.append("silver.t", new), "overwrite_where": lambda: lake.overwrite_where("silver.t", new, "day = DATE'2026-11-02'"),
     "merge": lambda: lake.merge("silver.t", new, keys=["account_id"], order_by="updated_time")}[write]()
    assert table_rows(lake, "silver.t") == [("a1", None), ("a2", 7)]
    names = DeltaTable(lake.path("silver.t")).schema().to_arrow().names
    assert names[-1] == "amount" and sorted(names) == sorted(ROWS["columns"])   # added after the table's own columns


def test_replayed_idempotent_write_commits_nothing(spark, lake):
    df = rows(spark, ("a", 1, 0, 1), ("b", 2, 0, 2))
    first = lake.append("bronze.t", df, partition_by=["day"], txn=WriteId("job", 202611010))
    again = lake.append("bronze.t", df, partition_by=["day"], txn=WriteId("job", 202611010))
    assert first.committed and not again.committed
    assert lake.version("bronze.t") == 0
    assert DeltaTable(lake.path("bronze.t")).transaction_version("job") == 202611010
    assert table_rows(lake, "bronze.t") == [("a", 1), ("b", 2)]


def test_table_is_readable_by_deltalake_alone_with_one_commit_per_write(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1)), partition_by=["day"])
    lake.append("bronze.t", rows(spark, ("b", 2, 0, 2)), partition_by=["day"])
    table = DeltaTable(lake.path("bronze.t"))
    assert table.version() == 1 and len(table.history()) == 2
    assert sorted(table.to_pyarrow_table().column("account_id").to_pylist()) == ["a", "b"]
    assert table.metadata().partition_columns == ["day"]


def test_merge_latest_wins_and_deletes(spark, lake):
    lake.append("silver.t", rows(spark, ("a", 1, 5, 1), ("b", 1, 5, 2), ("c", 2, 5, 3)), partition_by=["day"])
    changes = rows(spark, ("a", 1, 6, 10), ("b", 1, 4, 20), ("c", 2, 7, 0), ("d", 2, 1, 4))
    lake.merge("silver.t", changes, keys=["account_id"], order_by="updated_time", delete_when="amount = 0")
    # a: newer wins; b: older change loses; c: deleted by a newer change; d: inserted.
    assert table_rows(lake, "silver.t") == [("a", 10), ("b", 2), ("d", 4)]


def test_merge_keyed_by_partition_rewrites_only_touched_partitions(spark, lake):
    lake.append("silver.t", rows(spark, ("a", 1, 5, 1), ("b", 2, 5, 2), ("c", 3, 5, 3)), partition_by=["day"])
    result = lake.merge("silver.t", rows(spark, ("b", 2, 6, 20), ("d", 2, 6, 4)), keys=["account_id", "day"], order_by="updated_time")
    assert table_rows(lake, "silver.t") == [("a", 1), ("b", 20), ("c", 3), ("d", 4)]
    if lake.engine.name == "rs":
        assert result.files_removed == 1  # only day 2's file


def test_overwrite_where_replaces_only_that_partition(spark, lake):
    lake.append("gold.t", rows(spark, ("a", 1, 0, 1), ("b", 2, 0, 2)), partition_by=["day"])
    lake.overwrite_where("gold.t", rows(spark, ("c", 2, 0, 3)), "day = DATE'2026-11-02'")
    assert table_rows(lake, "gold.t") == [("a", 1), ("c", 3)]
    with pytest.raises(PredicateError, match="do not all match"):
        lake.overwrite_where("gold.t", rows(spark, ("z", 1, 0, 9)), "day = DATE'2026-11-02'")


def test_the_log_counts_a_table_s_rows_without_reading_them(spark, lake):
    """rs: the rows of the current version, summed from the log's per-file counts; delta-spark's
    file list carries no counts (None: the caller counts). A table never written has none."""
    assert lake.logged_rows("gold.t") == 0
    lake.append("gold.t", rows(spark, ("a", 1, 0, 1), ("b", 2, 0, 2)), partition_by=["day"])
    lake.append("gold.t", rows(spark, ("c", 2, 0, 3)), partition_by=["day"])
    lake.overwrite_where("gold.t", rows(spark, ("d", 2, 0, 4), ("e", 2, 0, 5), ("f", 2, 0, 6)), "day = DATE'2026-11-02'")
    rs = isinstance(lake.engine, RsEngine)
    assert lake.logged_rows("gold.t") == (4 if rs else None) and lake.read("gold.t").count() == 4


def test_erase_leaves_no_parquet_file_holding_the_key(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1), ("b", 1, 0, 2)), partition_by=["day"])
    lake.append("bronze.t", rows(spark, ("a", 2, 0, 3)), partition_by=["day"])
    account_a = subject(spark, "a")
    assert lake.erase("bronze.t", account_a, holds_account()).rows == 2   # counted by the scan that finds their files
    assert lake.erase("bronze.t", account_a, holds_account()).rows == 0   # none left: nothing rewritten
    assert table_rows(lake, "bronze.t") == [("b", 2)]
    files = glob.glob(os.path.join(lake.path("bronze.t"), "**", "*.parquet"), recursive=True)
    assert files, "the table still has b's file"
    for path in files:
        assert "a" not in pq.read_table(path).column("account_id").to_pylist()
    for log_file in glob.glob(os.path.join(lake.path("bronze.t"), "_delta_log", "*.json")):
        assert "a@x" not in open(log_file).read()  # no string statistics in the log


def test_a_merge_of_no_rows_commits_nothing_and_a_table_written_empty_reads_empty(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1)), partition_by=["day"])
    version, files = lake.version("bronze.t"), lake.files("bronze.t")
    assert not lake.merge("bronze.t", rows(spark), keys=["account_id"], order_by="updated_time", partition_by=["day"]).committed  # a day that changes nothing
    assert lake.version("bronze.t") == version and lake.files("bronze.t") == files
    lake.overwrite("silver.t", rows(spark), partition_by=["day"])  # a source never delivered: its schema, no rows
    assert lake.read("silver.t").count() == 0 and lake.read("silver.t").columns == lake.read("bronze.t").columns
    if lake.engine.name == "rs":   # Spark writes an empty file for an empty DataFrame; the rs engine does not commit it
        assert lake.files("silver.t") == [] and not glob.glob(os.path.join(lake.path("silver.t"), "**", "*.parquet"), recursive=True)


def test_erase_matches_values_no_sql_could_hold_unquoted_and_writes_none_into_the_log(spark, lake):
    hostile = ["o'brien", "back\\", 'quo"te', "100%", "a_b", "new\nline", "台北", "') OR 1=1 --"]
    lake.append("bronze.t", rows(spark, *[(h, 1, 0, i) for i, h in enumerate(hostile)], ("a%b", 1, 0, 99), ("aXb", 2, 0, 98)), partition_by=["day"])
    erased = lake.erase("bronze.t", subject(spark, *hostile), holds_account())
    assert erased.rows == len(hostile)
    assert table_rows(lake, "bronze.t") == [("a%b", 99), ("aXb", 98)]   # neither % nor _ is a wildcard
    # What each commit says it did (a DELETE's or UPDATE's would hold its predicate's text).
    commits = [json.loads(line)["commitInfo"] for f in glob.glob(os.path.join(lake.path("bronze.t"), "_delta_log", "*.json"))
               for line in open(f, encoding="utf-8") if '"commitInfo"' in line]
    said = json.dumps(commits, ensure_ascii=False)
    assert not [h for h in hostile if h in said or json.dumps(h, ensure_ascii=False)[1:-1] in said]


def test_stray_uncommitted_files_are_invisible(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1)), partition_by=["day"])
    stray_dir = os.path.join(lake.path("bronze.t"), "day=2026-11-01")
    rows(spark, ("zz", 1, 0, 99)).drop("day").coalesce(1).write.parquet("file://" + stray_dir + "/_tmp")
    for f in glob.glob(stray_dir + "/_tmp/*.parquet"):
        os.replace(f, os.path.join(stray_dir, "part-stray.parquet"))
    assert table_rows(lake, "bronze.t") == [("a", 1)]


def test_a_big_partition_value_is_written_by_several_tasks(spark, lake, small_shuffle_partitions):
    lake.append("bronze.events", events(spark, 200_000, 1, 4), partition_by=["day"])
    files = parquet_files(lake, "bronze.events")
    assert writer_tasks(files) > 1, f"one task wrote the whole day: {files}"
    assert sum(pq.read_metadata(f).num_rows for f in files) == 200_000
    assert lake.read("bronze.events").count() == 200_000


def test_small_partition_values_get_one_file_each(spark, lake):
    lake.append("bronze.events", events(spark, 3_000, 30, 6), partition_by=["day"])  # 6 input partitions hold every day
    assert len(parquet_files(lake, "bronze.events")) == 30
    assert lake.read("bronze.events").count() == 3_000


def test_no_file_holds_more_than_target_file_rows(spark, lake):
    capped = Lake(spark, lake.conf.with_overrides(["lake.target_file_rows=100"]), lake.catalog)
    capped.append("bronze.events", events(spark, 1_000, 1, 1), partition_by=["day"])
    counts = [pq.read_metadata(f).num_rows for f in parquet_files(capped, "bronze.events")]
    assert max(counts) == 100 and sum(counts) == 1_000


def test_optimize_compacts_the_small_files_of_each_partition(spark, lake):
    for amount in range(3):
        lake.append("silver.t", rows(spark, (f"a{amount}", 1, 0, amount)), partition_by=["day"])
    lake.append("silver.t", rows(spark, ("b", 2, 0, 9)), partition_by=["day"])
    day_2 = [f for f in parquet_files(lake, "silver.t") if "day=2026-11-02" in f]
    result = lake.optimize("silver.t")
    table = DeltaTable(lake.path("silver.t"))  # deltalake alone reads the compacted table
    assert result.committed and result.files_removed == 3 and table.version() == 4
    assert sorted(table.to_pyarrow_table().column("amount").to_pylist()) == [0, 1, 2, 9]
    lake.vacuum("silver.t", retention_hours=0)
    files = parquet_files(lake, "silver.t")
    assert len(files) == 2 and day_2[0] in files  # day 1's three files in one; day 2's only file untouched
    assert not lake.optimize("silver.t").committed  # nothing small left to pair


def test_optimize_leaves_files_of_the_small_size_or_more_alone(spark, lake):
    many = [(f"big{i}", 1, 0, i) for i in range(2_000)]
    lake.append("silver.t", rows(spark, *many), partition_by=["day"])
    lake.append("silver.t", rows(spark, ("a", 1, 0, -1)), partition_by=["day"])
    lake.append("silver.t", rows(spark, ("b", 1, 0, -2)), partition_by=["day"])
    sizes = {f: os.path.getsize(f) for f in parquet_files(lake, "silver.t")}
    big = max(sizes, key=sizes.get)
    threshold = max(size for f, size in sizes.items() if f != big) + 1
    assert sizes[big] >= threshold
    Lake(spark, lake.conf.with_overrides([f"lake.small_file_bytes={threshold}"]), lake.catalog).optimize("silver.t")
    lake.vacuum("silver.t", retention_hours=0)
    files = parquet_files(lake, "silver.t")
    assert len(files) == 2 and big in files
    assert len(table_rows(lake, "silver.t")) == 2_002


def test_erase_with_blank_nulls_the_columns_keeps_the_rows_and_reports_the_files(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1), ("b", 1, 0, 2)), partition_by=["day"])
    before = {f["path"] for f in lake.files("bronze.t")}
    erased = lake.erase("bronze.t", subject(spark, "a"), holds_account(), blank=["email"])
    assert sorted((r["account_id"], r["email"]) for r in lake.read("bronze.t").collect()) == [("a", None), ("b", "b@x")]
    assert erased.rows == 1
    if lake.engine.name == "rs":
        assert {os.path.basename(p) for p in erased.files_removed} == {os.path.basename(p) for p in before}
    for path in glob.glob(os.path.join(lake.path("bronze.t"), "**", "*.parquet"), recursive=True):
        assert "a@x" not in pq.read_table(path).column("email").to_pylist()


def test_a_table_made_ready_for_writers_takes_their_appends_side_by_side(spark, lake):
    """As acquire's sources append to the quarantine: the table made first (absent, it is created
    empty with its declared columns and partitioning), then eight writers at once, some with no
    rows. Every commit lands; none fails on another's creating the table."""
    lake.ready_for_writers("bronze.t")
    assert lake.read("bronze.t").count() == 0 and sorted(lake.read("bronze.t").columns) == sorted(lake.catalog.spec("bronze.t").columns)
    if lake.engine.name == "rs":
        assert DeltaTable(lake.path("bronze.t")).metadata().partition_columns == ["day"]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: lake.append("bronze.t", rows(spark, (f"a{i}", 1, 0, i)) if i % 2 else rows(spark), partition_by=["day"]), range(8)))
    assert table_rows(lake, "bronze.t") == [(f"a{i}", i) for i in (1, 3, 5, 7)]


def test_a_writer_that_lost_the_lake_s_lease_commits_and_deletes_nothing_more(spark, lake, conf):
    path = lease_path(conf)
    # Its heartbeat would not notice before the writes below: the engine's own check stops each.
    with lake_lease(conf.with_overrides(["lake.lease.expiry_seconds=7200", "lake.lease.heartbeat_seconds=3600"]), "run organize"):
        lake.append("silver.t", rows(spark, ("a", 1, 0, 1)))
        os.remove(path)   # a writer on another machine judged it dead (stalled past the expiry) and took it over
        with open(path, "w") as fh:
            json.dump({"owner": "erase", "host": "h", "pid": 2, "token": "other", "acquired": 0, "heartbeat": 0}, fh)
        writes = {
            "append": lambda: lake.append("silver.t", rows(spark, ("b", 1, 0, 2))),
            "overwrite": lambda: lake.overwrite("silver.t", rows(spark, ("b", 1, 0, 2)), partition_by=["day"]),
            "merge": lambda: lake.merge("silver.t", rows(spark, ("a", 1, 1, 3)), keys=["account_id"], order_by="updated_time"),
            "vacuum": lambda: lake.vacuum("silver.t", 0),   # nor deletes the files the new holder may be writing
        }
        for write in writes.values():
            with pytest.raises(LeaseLostError, match=r"lake lease lost \(erase \(pid 2 on h.*silver/t not written"):
                write()
        assert lake.version("silver.t") == 0 and table_rows(lake, "silver.t") == [("a", 1)]
        os.remove(path)   # the other writer done: the lease is free, yet no longer this writer's
        with pytest.raises(LeaseLostError, match=r"nobody holds it now"):
            writes["append"]()
    writes["append"]()   # outside any lease (a library caller, a test): not fenced
    assert table_rows(lake, "silver.t") == [("a", 1), ("b", 2)]

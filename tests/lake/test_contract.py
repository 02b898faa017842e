"""The lake's contract, run against both engines on real Delta tables on disk.

The delta-spark engine's run skips where Delta's jars are not on the JVM classpath (here:
no Maven registry, so spark.jars.packages cannot resolve them).
"""

import datetime as dt
import glob
import os

import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable

from crmlake.lake import Lake, PredicateError, WriteId
from crmlake.lake.spark_delta import delta_spark_available
from tables import catalog_with_test_tables



@pytest.fixture(params=["rs", "spark"])
def lake(request, spark, conf):
    if request.param == "spark" and not delta_spark_available(spark):
        pytest.skip("delta-spark engine: Delta's jars are not on the JVM classpath (no Maven here to resolve io.delta:delta-spark_4.2_2.13)")
    return Lake(spark, type(conf)({**conf.data, "lake": {**conf.data["lake"], "engine": request.param}}), catalog_with_test_tables())


SCHEMA = "account_id string, email string, day date, updated_time timestamp, amount long"
T0 = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def rows(spark, *items):
    return spark.createDataFrame(
        [(a, f"{a}@x", dt.date(2026, 11, d), T0 + dt.timedelta(hours=h), amt) for a, d, h, amt in items], SCHEMA
    )


def table_rows(lake, name):
    return sorted((r["account_id"], r["amount"]) for r in lake.read(name).collect())


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


def test_erase_leaves_no_parquet_file_holding_the_key(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1), ("b", 1, 0, 2)), partition_by=["day"])
    lake.append("bronze.t", rows(spark, ("a", 2, 0, 3)), partition_by=["day"])
    lake.erase("bronze.t", "account_id = 'a'")
    assert table_rows(lake, "bronze.t") == [("b", 2)]
    files = glob.glob(os.path.join(lake.path("bronze.t"), "**", "*.parquet"), recursive=True)
    assert files, "the table still has b's file"
    for path in files:
        assert "a" not in pq.read_table(path).column("account_id").to_pylist()
    for log_file in glob.glob(os.path.join(lake.path("bronze.t"), "_delta_log", "*.json")):
        assert "a@x" not in open(log_file).read()  # no string statistics in the log


def test_stray_uncommitted_files_are_invisible(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1)), partition_by=["day"])
    stray_dir = os.path.join(lake.path("bronze.t"), "day=2026-11-01")
    rows(spark, ("zz", 1, 0, 99)).drop("day").coalesce(1).write.parquet("file://" + stray_dir + "/_tmp")
    for f in glob.glob(stray_dir + "/_tmp/*.parquet"):
        os.replace(f, os.path.join(stray_dir, "part-stray.parquet"))
    assert table_rows(lake, "bronze.t") == [("a", 1)]


def test_optimize_compacts_a_partition_into_one_file(spark, lake):
    for amount in range(3):
        lake.append("silver.t", rows(spark, (f"a{amount}", 1, 0, amount)), partition_by=["day"])
    assert len(lake.files("silver.t")) == 3
    lake.optimize("silver.t")
    assert len(lake.files("silver.t")) == 1
    assert table_rows(lake, "silver.t") == [("a0", 0), ("a1", 1), ("a2", 2)]


def test_erase_with_blank_nulls_the_columns_keeps_the_rows_and_reports_the_files(spark, lake):
    lake.append("bronze.t", rows(spark, ("a", 1, 0, 1), ("b", 1, 0, 2)), partition_by=["day"])
    before = {f["path"] for f in lake.files("bronze.t")}
    erased = lake.erase("bronze.t", "email = 'a@x'", blank=["email"])
    assert sorted((r["account_id"], r["email"]) for r in lake.read("bronze.t").collect()) == [("a", None), ("b", "b@x")]
    assert erased.rows == 1
    if lake.engine.name == "rs":
        assert {os.path.basename(p) for p in erased.files_removed} == {os.path.basename(p) for p in before}
    for path in glob.glob(os.path.join(lake.path("bronze.t"), "**", "*.parquet"), recursive=True):
        assert "a@x" not in pq.read_table(path).column("email").to_pylist()

"""The lake under real processes: a writer killed with SIGKILL, two writers at once."""

import glob
import os
import signal
import subprocess
import sys
import time

import pytest
from deltalake import DeltaTable

pytestmark = pytest.mark.integration
WRITER = os.path.join(os.path.dirname(__file__), "lake_writer.py")


def start_writer(lake_root, first_id, rows, *extra):
    return subprocess.Popen(
        [sys.executable, WRITER, str(lake_root), "bronze.events", str(first_id), str(rows), *extra],
        start_new_session=True,  # its own process group: the JVM dies with it
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def wait_for(path, process, seconds=180):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path):
        if process.poll() is not None:
            raise AssertionError(f"writer exited early: {process.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.1)


def event_ids(table_path):
    return sorted(DeltaTable(table_path).to_pyarrow_table(columns=["event_id"]).column("event_id").to_pylist())


def test_writer_killed_before_commit_leaves_previous_version_and_rerun_completes(tmp_path, spark):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    from tables import catalog_with_test_tables

    lake = Lake(spark, load_conf(overrides=[f"paths.lake={tmp_path}/lake", "lake.engine=rs"], environ={}), catalog_with_test_tables())
    lake.append("bronze.events", spark.range(0, 10).selectExpr("id AS event_id", "CAST(id % 3 AS STRING) AS day"), partition_by=["day"])
    table = lake.path("bronze.events")

    marker = tmp_path / "staged"
    writer = start_writer(tmp_path / "lake", 100, 50, "--pause-before-commit", str(marker))
    wait_for(marker, writer)
    os.killpg(writer.pid, signal.SIGKILL)
    writer.wait(timeout=60)

    committed = {os.path.basename(p) for p in DeltaTable(table).file_uris()}
    on_disk = {os.path.basename(p) for p in glob.glob(f"{table}/day=*/*.parquet")}
    assert on_disk - committed, "the killed writer had moved its data files into the table"
    assert DeltaTable(table).version() == 0
    assert lake.read("bronze.events").count() == 10

    lake.append("bronze.events", spark.range(100, 150).selectExpr("id AS event_id", "CAST(id % 3 AS STRING) AS day"), partition_by=["day"])
    assert event_ids(table) == list(range(10)) + list(range(100, 150))
    lake.vacuum("bronze.events", retention_hours=0)
    left = {os.path.basename(p) for p in glob.glob(f"{table}/day=*/*.parquet")}
    assert left == {os.path.basename(p) for p in DeltaTable(table).file_uris()}, "vacuum removes the stray files"


def test_two_processes_appending_at_once_both_land(tmp_path):
    go = tmp_path / "go"
    writers = [start_writer(tmp_path / "lake", first, 1000, "--wait-for", str(go)) for first in (0, 10_000)]
    time.sleep(1)
    open(go, "w").close()
    for writer in writers:
        assert writer.wait(timeout=300) == 0, writer.stderr.read().decode()[-2000:]
    table = str(tmp_path / "lake" / "bronze" / "events")
    assert event_ids(table) == list(range(1000)) + list(range(10_000, 11_000))
    assert DeltaTable(table).version() == 1  # one commit each, one of them first

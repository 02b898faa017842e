"""Organize loses nothing that acquire commits while it runs, on the landing zone of a retailer
that sells only in stores (every source is optional: the cluster test runs every stage on
such a zone)."""

import datetime as dt
import os
import shutil
import subprocess
import sys

import pytest

from crmlake.acquire import job as acquire
from crmlake.config import load_conf
from crmlake.generate.landing import write_landing
from crmlake.lake import Lake
from crmlake.organize import job as organize

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOT_DELIVERED = ("clickstream", "interactions", "campaign_events")


def test_organize_reads_the_snapshot_it_pinned_and_loses_nothing_a_concurrent_acquire_commits(spark, tmp_path):
    """Ten days acquired and organized; then organize pins its snapshot while a second process
    acquires the last ten days; then organize's next run for END picks up what was committed meanwhile."""
    write_landing(spark, str(tmp_path / "landing"), customers=80, days=20, end=END, seed=11, timezone="Asia/Taipei")
    for source in NOT_DELIVERED:
        shutil.rmtree(tmp_path / "landing" / source)
    paths = [f"paths.landing={tmp_path}/landing", f"paths.lake={tmp_path}/lake", f"paths.exports={tmp_path}/exports"]
    conf = load_conf(os.path.join(ROOT, "conf/local.yaml"), overrides=paths, environ={})
    lake = Lake(spark, conf)
    first_day = END - dt.timedelta(days=10)
    acquire.run(spark, conf, first_day)
    organize.run(spark, conf, first_day)
    changes = organize.Changes(lake, full_refresh=False)  # this run's snapshot is pinned here
    pinned = dict(changes.snapshot.versions)
    second = subprocess.run(
        [sys.executable, "-m", "crmlake.cli", "run", "--stage", "acquire", "--conf", os.path.join(ROOT, "conf/local.yaml"),
         "--date", str(END), *[a for pair in (*paths, "spark.master=local[1]") for a in ("--set", pair)]],
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": os.path.join(ROOT, "lib")}, capture_output=True, text=True, timeout=600,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert lake.version("bronze.orders") > pinned["bronze.orders"]  # committed meanwhile
    organize.organize(lake, conf, END, changes)
    state = {r["source"]: r["version_read"] for r in lake.read(organize.STATE).collect()}
    assert {source: state[source] for source in organize.BRONZE_SOURCES} == pinned  # the versions it read, not the live ones
    assert state[organize.PROFILES] == lake.version(organize.PROFILES)   # and the profiles it left, which the next run grows from
    assert lake.read("silver.order_lines").where(f"order_date > DATE'{first_day}'").count() == 0  # not in its snapshot
    assert lake.read("bronze.orders").where(f"order_date > DATE'{first_day}'").count() > 0

    assert organize.run(spark, conf, END)["mode"] == "incremental"
    bronze_lines = lake.read("bronze.orders").select("order_id", "line_no").distinct().count()
    assert lake.read("silver.order_lines").count() == bronze_lines  # every line, once, after the next run
    # every account, once (an erased one keeps its blanked row, which suppresses it)
    assert lake.read("silver.customers").count() == lake.read("bronze.customers").select("account_id").distinct().count()

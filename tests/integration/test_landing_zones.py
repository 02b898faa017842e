"""Landing zones other producers write: every source is optional, and organize loses nothing
that acquire commits while it runs."""

import datetime as dt
import json
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
SOURCES = ("clickstream", "orders", "customers", "interactions", "campaign_events")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def generated(spark, tmp_path_factory):
    """A small landing zone with all five sources, generated once for this module."""
    landing = tmp_path_factory.mktemp("generated") / "landing"
    write_landing(spark, str(landing), customers=120, days=40, end=END, seed=11, timezone="Asia/Taipei")
    return landing


def zone_conf(root, model_overrides, *extra):
    return load_conf(
        os.path.join(ROOT, "conf/local.yaml"),
        overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                   f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts",
                   "analyze.propensity.label_days=14", *model_overrides, *extra],
        environ={},
    )


def landing_with(generated, root, sources):
    for source in sources:
        shutil.copytree(generated / source, root / "landing" / source)


def run_every_stage(spark, conf) -> dict:
    """Run the four stages for END as a scheduler would; return their summaries."""
    from crmlake.runs import run_stage

    return {stage: run_stage(spark, conf, stage, END) for stage in ("acquire", "organize", "analyze", "decide")}


def assert_every_stage_ran_without(lake, summaries, delivered):
    missing = sorted(set(SOURCES) - set(delivered))
    for source in missing:  # an empty table of the source's schema, not an error
        assert lake.exists(f"bronze.{source}") and lake.read(f"bronze.{source}").count() == 0, source
    assert all(summary["sources_not_seen"] == missing for summary in summaries.values())
    runs = lake.read("gold.job_runs").collect()
    assert {r["job"] for r in runs} == {"acquire", "organize", "analyze", "decide"} and {r["outcome"] for r in runs} == {"succeeded"}
    assert all(json.loads(r["counts"])["sources_not_seen"] == missing for r in runs)
    assert lake.read("silver.order_lines").count() > 0
    assert lake.read("gold.customer_scores").where(f"score_date = DATE'{END}'").count() > 0
    assert summaries["decide"]["exports"]  # audiences are still selected from what there is


STORE_ONLY = ("orders", "customers")


@pytest.fixture(scope="module")
def store_only(spark, generated, tmp_path_factory, model_overrides):
    """A retailer that sells only in stores and has no service desk nor campaigns (orders and
    profiles only): ten days acquired and organized; then organize pins its snapshot while a
    second process acquires the last ten days; then every stage for END."""
    root = tmp_path_factory.mktemp("store-only")
    landing_with(generated, root, STORE_ONLY)
    conf = zone_conf(root, model_overrides)
    lake = Lake(spark, conf)
    first_day = END - dt.timedelta(days=10)
    acquire.run(spark, conf, first_day)
    organize.run(spark, conf, first_day)
    changes = organize.Changes(lake, full_refresh=False)  # this run's snapshot is pinned here
    pinned = dict(changes.snapshot.versions)
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "lib")}
    second = subprocess.run(
        [sys.executable, "-m", "crmlake.cli", "run", "--stage", "acquire", "--conf", os.path.join(ROOT, "conf/local.yaml"),
         "--date", str(END), *[a for pair in (f"paths.landing={root}/landing", f"paths.lake={root}/lake", "spark.master=local[1]") for a in ("--set", pair)]],
        cwd=root, env=env, capture_output=True, text=True, timeout=600,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    committed_meanwhile = lake.version("bronze.orders") > pinned["bronze.orders"]
    organize.organize(lake, conf, END, changes)
    state = {r["source"]: r["version_read"] for r in lake.read(organize.STATE).collect()}
    late_lines_organized = lake.read("silver.order_lines").where(f"order_date > DATE'{first_day}'").count()
    summaries = run_every_stage(spark, conf)  # the next runs pick up what was committed meanwhile
    return {"lake": lake, "summaries": summaries, "pinned": pinned, "state": state, "first_day": first_day,
            "committed_meanwhile": committed_meanwhile, "late_lines_organized": late_lines_organized}


def test_a_store_only_retailer_runs_every_stage(store_only):
    lake, summaries = store_only["lake"], store_only["summaries"]
    assert_every_stage_ran_without(lake, summaries, STORE_ONLY)
    assert lake.read("silver.sessions").count() == 0
    assert summaries["analyze"]["missing_inputs"] == ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]


def test_organize_reads_the_snapshot_it_pinned_and_loses_nothing_a_concurrent_acquire_commits(store_only):
    lake, first_day = store_only["lake"], store_only["first_day"]
    assert store_only["committed_meanwhile"]
    assert store_only["state"] == store_only["pinned"]  # the versions it read, not the live ones
    assert store_only["late_lines_organized"] == 0  # what was committed meanwhile was not in its snapshot
    assert lake.read("bronze.orders").where(f"order_date > DATE'{first_day}'").count() > 0
    bronze_lines = lake.read("bronze.orders").select("order_id", "line_no").distinct().count()
    assert lake.read("silver.order_lines").count() == bronze_lines  # every line, once, after the next run
    # every account, once (an erased one keeps its blanked row, which suppresses it)
    assert lake.read("silver.customers").count() == lake.read("bronze.customers").select("account_id").distinct().count()

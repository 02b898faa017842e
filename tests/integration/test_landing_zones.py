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
from crmlake.analyze import job as analyze
from crmlake.config import load_conf
from crmlake.decide import job as decide
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


@pytest.mark.parametrize(
    "delivered",
    [("orders", "customers"), ("clickstream", "orders", "customers", "campaign_events"), ("orders", "customers", "interactions", "campaign_events")],
    ids=["store-only", "no-service-desk", "no-clickstream"],
)
def test_every_stage_runs_on_a_landing_zone_with_only_some_sources(spark, generated, tmp_path, model_overrides, delivered):
    from crmlake.runs import run_stage

    landing_with(generated, tmp_path, delivered)
    conf = zone_conf(tmp_path, model_overrides)
    missing = sorted(set(SOURCES) - set(delivered))
    summaries = {stage: run_stage(spark, conf, stage, END) for stage in ("acquire", "organize", "analyze", "decide")}
    lake = Lake(spark, conf)
    for source in missing:  # an empty table of the source's schema, not an error
        assert lake.exists(f"bronze.{source}") and lake.read(f"bronze.{source}").count() == 0, source
    assert all(summary["sources_not_seen"] == missing for summary in summaries.values())
    runs = {r["job"]: r for r in lake.read("gold.job_runs").collect()}
    assert {job: r["outcome"] for job, r in runs.items()} == dict.fromkeys(("acquire", "organize", "analyze", "decide"), "succeeded")
    assert json.loads(runs["decide"]["counts"])["sources_not_seen"] == missing
    assert lake.read("silver.order_lines").count() > 0
    assert lake.read("gold.customer_scores").where(f"score_date = DATE'{END}'").count() > 0
    if "clickstream" not in delivered:
        assert lake.read("silver.sessions").count() == 0
        assert summaries["analyze"]["missing_inputs"] == ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]
    assert summaries["decide"]["exports"]  # audiences are still selected from what there is


def test_organize_reads_the_snapshot_it_pinned_and_loses_nothing_a_concurrent_acquire_commits(spark, generated, tmp_path, model_overrides):
    landing_with(generated, tmp_path, SOURCES)
    conf = zone_conf(tmp_path, model_overrides)
    lake = Lake(spark, conf)
    first_day = END - dt.timedelta(days=10)
    acquire.run(spark, conf, first_day)
    organize.run(spark, conf, first_day)
    changes = organize.Changes(lake, full_refresh=False)  # this run's snapshot is pinned here
    pinned = dict(changes.snapshot.versions)
    # A second process commits ten more days of every source while the run is under way.
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "lib")}
    second = subprocess.run(
        [sys.executable, "-m", "crmlake.cli", "run", "--stage", "acquire", "--conf", os.path.join(ROOT, "conf/local.yaml"),
         "--date", str(END), "--set", f"paths.landing={tmp_path}/landing", "--set", f"paths.lake={tmp_path}/lake",
         "--set", "spark.master=local[1]"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )
    assert second.returncode == 0, second.stderr[-2000:]
    assert lake.version("bronze.orders") > pinned["bronze.orders"]
    organize.organize(lake, conf, END, changes)
    state = {r["source"]: r["version_read"] for r in lake.read(organize.STATE).collect()}
    assert state == pinned  # the versions it read, not the live ones
    late_lines = lake.read("bronze.orders").where(f"order_date > DATE'{first_day}'").count()
    assert late_lines > 0
    assert lake.read("silver.order_lines").where(f"order_date > DATE'{first_day}'").count() == 0  # not in its snapshot

    organize.run(spark, conf, END)  # the next run picks up what was committed meanwhile
    bronze_lines = lake.read("bronze.orders").select("order_id", "line_no").distinct().count()
    assert lake.read("silver.order_lines").count() == bronze_lines  # every line, once
    # every account, once (an erased one keeps its blanked row, which suppresses it)
    assert lake.read("silver.customers").count() == lake.read("bronze.customers").select("account_id").distinct().count()

"""The daily run spark-submitted to a real standalone cluster on 127.0.0.1, with the packaged
library, on the landing zone of a retailer that sells only in stores: orders and profiles, no
clickstream, service desk nor campaigns (every source is optional).

Ten days are acquired and organized in this process first. Then organize pins its snapshot
while a second process, the cluster's application ``jobs/acquire.py``, acquires the last ten
days; organize runs from the snapshot it pinned, and loses nothing: the whole day then runs
on the cluster as one application (``jobs/all.py``), whose organize picks up what was
committed meanwhile."""

import datetime as dt
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from crmlake.acquire import job as acquire
from crmlake.cluster import SPARK_SUBMIT, package_zip, start, stop
from crmlake.generate.landing import write_landing
from crmlake.organize import job as organize

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
END = dt.date(2026, 11, 21)
FIRST_DAY = END - dt.timedelta(days=10)
STAGES = ("acquire", "organize", "analyze", "decide")
NOT_DELIVERED = ["campaign_events", "clickstream", "interactions"]


@pytest.fixture(scope="module")
def submitted(spark, tmp_path_factory, model_overrides):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    root = tmp_path_factory.mktemp("cluster")
    overrides = [f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                 f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db", f"mlflow.artifact_root={root}/artifacts", *model_overrides,
                 "analyze.propensity.label_days=14", "spark.conf.spark.sql.shuffle.partitions=2"]  # tiny data: two tasks per shuffle, not eight
    write_landing(spark, f"{root}/landing", customers=120, days=40, end=END, seed=11, timezone="Asia/Taipei")
    for source in NOT_DELIVERED:
        shutil.rmtree(root / "landing" / source)
    conf = load_conf(os.path.join(ROOT, "conf", "local.yaml"), overrides=overrides, environ={})
    lake = Lake(spark, conf)
    acquire.run(spark, conf, FIRST_DAY)
    organize.run(spark, conf, FIRST_DAY)
    changes = organize.Changes(lake, full_refresh=False)  # the next organize's snapshot is pinned here
    pinned = dict(changes.snapshot.versions)
    library = package_zip(str(root / "dist" / "crmlake.zip"))
    cluster = start(str(root / "cluster"), cores=2, memory="2g")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}

    def submit(job: str) -> subprocess.CompletedProcess:
        # Each stage's executor-side code runs from the zip; jobs/all.py pays the cluster's
        # start-up once for the four stages.
        command = [SPARK_SUBMIT, "--master", cluster.master_url, "--driver-memory", "1g", "--executor-memory", "1g",
                   "--py-files", library, os.path.join(ROOT, "jobs", f"{job}.py"),
                   "--conf", os.path.join(ROOT, "conf", "local.yaml"), "--date", str(END)]
        for pair in overrides:
            command += ["--set", pair]
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
        assert done.returncode == 0, f"jobs/{job}.py failed:\n{done.stderr[-3000:]}"
        return done

    try:
        submit("acquire")  # commits the last ten days while organize holds its pinned snapshot
        concurrent = {"orders_version": lake.version("bronze.orders"), "bronze_lines_after_first_day": lake.read("bronze.orders").where(f"order_date > DATE'{FIRST_DAY}'").count()}
        organize.organize(lake, conf, END, changes)
        pinned_run = {"versions_read": {r["source"]: r["version_read"] for r in lake.read(organize.STATE).collect()},
                      "silver_lines_after_first_day": lake.read("silver.order_lines").where(f"order_date > DATE'{FIRST_DAY}'").count()}
        submit("all")
    finally:
        stop(str(root / "cluster"))
    return {"conf": conf, "lake": lake, "app_dir": root / "cluster" / "work", "pinned": pinned, "concurrent": concurrent, "pinned_run": pinned_run}


def records_of(lake) -> dict:
    """Each cluster job's last run record for END: job -> its summary."""
    runs = sorted(lake.read("gold.job_runs").where(f"run_date = DATE'{END}'").collect(), key=lambda r: r["started_at"])
    return {r["job"]: json.loads(r["counts"]) for r in runs}


def test_organize_reads_the_snapshot_it_pinned_and_loses_nothing_a_concurrent_acquire_commits(submitted):
    lake, pinned = submitted["lake"], submitted["pinned"]
    assert submitted["concurrent"]["orders_version"] > pinned["bronze.orders"]            # committed meanwhile
    assert submitted["pinned_run"]["versions_read"] == pinned                              # the versions it read, not the live ones
    assert submitted["pinned_run"]["silver_lines_after_first_day"] == 0                    # not in its snapshot
    assert submitted["concurrent"]["bronze_lines_after_first_day"] > 0
    # The cluster's organize, the next run: every line, once.
    assert records_of(lake)["organize"]["mode"] == "incremental"
    bronze_lines = lake.read("bronze.orders").select("order_id", "line_no").distinct().count()
    assert lake.read("silver.order_lines").count() == bronze_lines
    # every account, once (an erased one keeps its blanked row, which suppresses it)
    assert lake.read("silver.customers").count() == lake.read("bronze.customers").select("account_id").distinct().count()


def test_every_stage_succeeds_on_the_cluster(submitted):
    runs = sorted((r["job"], r["outcome"]) for r in submitted["lake"].read("gold.job_runs").collect())
    assert runs == sorted([("acquire", "succeeded"), *((stage, "succeeded") for stage in STAGES)])  # jobs/acquire.py, then jobs/all.py
    assert any(submitted["app_dir"].iterdir()), "the worker ran executors for the application"


def test_the_sources_never_delivered_are_empty_tables_named_in_every_run_record(submitted):
    lake = submitted["lake"]
    for source in NOT_DELIVERED:  # an empty table of the source's schema, not an error
        assert lake.exists(f"bronze.{source}") and lake.read(f"bronze.{source}").count() == 0, source
    records = records_of(lake)
    assert {job: counts["sources_not_seen"] for job, counts in records.items()} == {stage: NOT_DELIVERED for stage in STAGES}
    assert lake.read("silver.sessions").count() == 0 and lake.read("silver.customer_360").where("service_contacts > 0").count() == 0
    assert records["analyze"]["missing_inputs"] == ["silver.sessions is empty (clickstream not delivered): visit features are 0 for every person"]


def test_the_cluster_run_scores_exports_and_registers_models(submitted):
    lake, conf = submitted["lake"], submitted["conf"]
    assert lake.read("silver.order_lines").count() > 0
    assert lake.read("gold.customer_scores").where(f"score_date = DATE'{END}'").count() > 0
    manifests = [json.load(open(path)) for path in glob.glob(os.path.join(conf.exports_root, "*", str(END), "manifest.json"))]
    assert manifests and any(m["row_count"] > 0 for m in manifests)  # audiences are still selected from what there is
    client = MlflowClient(tracking_uri=conf.get("mlflow.tracking_uri"), registry_uri=conf.get("mlflow.tracking_uri"))
    assert client.get_model_version_by_alias("crmlake-propensity", "champion") is not None

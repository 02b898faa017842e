"""The whole daily run (jobs/all.py) spark-submitted to a real standalone cluster on 127.0.0.1, with
the packaged library, on the landing zone of a retailer that sells only in stores: orders and
profiles, no clickstream, service desk nor campaigns (every source is optional)."""

import datetime as dt
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest
from mlflow import MlflowClient

from crmlake.cluster import SPARK_SUBMIT, package_zip, start, stop
from crmlake.generate.landing import write_landing

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
END = dt.date(2026, 11, 21)
STAGES = ("acquire", "organize", "analyze", "decide")
DELIVERED = ("orders", "customers")
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
    library = package_zip(str(root / "dist" / "crmlake.zip"))
    cluster = start(str(root / "cluster"), cores=2, memory="2g")
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}
    # The whole daily run as one application (jobs/all.py): each stage's executor-side code
    # runs from the zip, and the cluster's start-up is paid once rather than per stage.
    command = [SPARK_SUBMIT, "--master", cluster.master_url, "--driver-memory", "1g", "--executor-memory", "1g",
               "--driver-java-options", "-XX:-DontCompileHugeMethods", "--py-files", library, os.path.join(ROOT, "jobs", "all.py"),
               "--conf", os.path.join(ROOT, "conf", "local.yaml"), "--date", str(END)]
    for pair in overrides:
        command += ["--set", pair]
    try:
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=1200)
    finally:
        stop(str(root / "cluster"))
    conf = load_conf("conf/local.yaml", overrides=overrides, environ={})
    return {"done": done, "conf": conf, "lake": Lake(spark, conf), "app_dir": root / "cluster" / "work"}


def test_every_stage_succeeds_on_the_cluster(submitted):
    done = submitted["done"]
    assert done.returncode == 0, f"jobs/all.py failed:\n{done.stderr[-3000:]}"
    runs = {r["job"]: r["outcome"] for r in submitted["lake"].read("gold.job_runs").collect()}
    assert runs == {stage: "succeeded" for stage in STAGES}
    assert any(submitted["app_dir"].iterdir()), "the worker ran executors for the application"


def test_the_sources_never_delivered_are_empty_tables_named_in_every_run_record(submitted):
    lake = submitted["lake"]
    for source in NOT_DELIVERED:  # an empty table of the source's schema, not an error
        assert lake.exists(f"bronze.{source}") and lake.read(f"bronze.{source}").count() == 0, source
    records = {r["job"]: json.loads(r["counts"]) for r in lake.read("gold.job_runs").collect()}
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

"""The daily DAG (deploy/airflow/crmlake_daily.py) run by a real Airflow, ``airflow dags test``,
against a real standalone cluster on 127.0.0.1: each stage spark-submitted with the packaged
library, on the landing zone of a retailer that sells only in stores: orders and profiles, no
clickstream, service desk nor campaigns (every source is optional)."""

import datetime as dt
import glob
import json
import os
import shutil
import sys

import pytest
import yaml
from mlflow import MlflowClient

from airflow_home import airflow, airflow_home, airflow_json
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
    # crmlake laid out as the DAG finds it on an Airflow worker (the Variable crmlake_home): the
    # jobs, the package zip, and the environment's conf file, here this test's conf written whole.
    # Its lake engine is conf/local.yaml's delta-rs, so the DAG fetches no Delta jars (no --packages).
    home = root / "crmlake"
    (home / "conf").mkdir(parents=True)
    (home / "jobs").symlink_to(os.path.join(ROOT, "jobs"))
    package_zip(str(home / "dist" / "crmlake.zip"))
    (home / "conf" / "cluster.yaml").write_text(yaml.safe_dump(load_conf("conf/local.yaml", overrides=overrides, environ={}).model_dump(mode="json")))
    conf = load_conf(str(home / "conf" / "cluster.yaml"), environ={})
    cluster = start(str(root / "cluster"), cores=2, memory="2g")
    try:
        env = airflow_home(
            root / "airflow",
            variables={"crmlake_home": str(home), "crmlake_conf": "conf/cluster.yaml", "crmlake_spark_packages": ""},
            connections={"spark_crmlake": cluster.master_url},
            # The provider runs the spark-submit on the PATH: the project's pyspark's.
            environ={**os.environ, "PATH": f"{os.path.dirname(SPARK_SUBMIT)}:{os.environ['PATH']}", "PYSPARK_PYTHON": sys.executable,
                     "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"},
        )
        done = airflow(env, "dags", "test", "crmlake_daily", str(END), timeout=1200, check=False)
    finally:
        stop(str(root / "cluster"))
    tasks = airflow_json(env, "tasks", "states-for-dag-run", "crmlake_daily", str(END))
    return {"done": done, "tasks": tasks, "env": env, "home": home, "conf": conf, "lake": Lake(spark, conf),
            "app_dir": root / "cluster" / "work"}


def test_the_daily_dag_runs_every_stage_in_order_on_the_cluster(submitted):
    done = submitted["done"]
    assert done.returncode == 0, f"airflow dags test failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    # A run succeeds when its last task does (decide runs whatever analyze did): every task must.
    assert {t["task_id"]: t["state"] for t in submitted["tasks"]} == {stage: "success" for stage in STAGES}, done.stdout[-3000:]
    runs = sorted(submitted["lake"].read("gold.job_runs").collect(), key=lambda r: r["started_at"])
    assert [(r["job"], r["outcome"]) for r in runs] == [(stage, "succeeded") for stage in STAGES]
    assert len(list(submitted["app_dir"].iterdir())) == len(STAGES), "the worker ran one application per task"


def test_both_dags_load_in_airflow(submitted):
    env = submitted["env"]
    assert airflow_json(env, "dags", "list-import-errors") == []
    assert {dag["dag_id"] for dag in airflow_json(env, "dags", "list")} == {"crmlake_daily", "crmlake_maintain"}


def test_the_maintenance_dag_submits_jobs_maintain_with_the_same_settings(submitted):
    rendered = airflow(submitted["env"], "tasks", "render", "crmlake_maintain", "maintain", str(END)).stdout
    home = submitted["home"]
    assert f"{home}/jobs/maintain.py" in rendered and os.path.isfile(home / "jobs" / "maintain.py")
    assert f"['--conf', '{home}/conf/cluster.yaml']" in rendered


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
    client = MlflowClient(tracking_uri=conf.mlflow.tracking_uri, registry_uri=conf.mlflow.tracking_uri)
    assert client.get_model_version_by_alias("crmlake-propensity", "champion") is not None

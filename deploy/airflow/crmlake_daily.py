"""Airflow DAG: the four crmlake stages for each business date, in order, with spark-submit.

Copy to your DAGs folder; set the Airflow Variables ``crmlake_home`` (where the repo and
its conf live on the workers) and ``crmlake_conf`` (e.g. conf/cluster.yaml), and a Spark
connection ``spark_crmlake`` pointing at your cluster. Each task passes the run's logical
date as ``--date``, so a cleared task or a backfill reruns exactly that date
(every stage is idempotent for a date).
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.models import Variable
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

STAGES = ("acquire", "organize", "analyze", "decide")
HOME = Variable.get("crmlake_home", default_var="/opt/crmlake")
CONF = Variable.get("crmlake_conf", default_var="conf/cluster.yaml")

with DAG(
    dag_id="crmlake_daily",
    description="crmlake: acquire -> organize -> analyze -> decide for yesterday's business date",
    schedule="30 2 * * *",  # 02:30 in the scheduler's time zone: after the landing zone's daily drop
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["crmlake"],
) as dag:
    tasks = [
        SparkSubmitOperator(
            task_id=stage,
            conn_id="spark_crmlake",
            application=f"{HOME}/jobs/{stage}.py",
            py_files=f"{HOME}/dist/crmlake.zip",
            packages="io.delta:delta-spark_4.2_2.13:4.4.1",
            application_args=["--conf", f"{HOME}/{CONF}", "--date", "{{ ds }}"],
            name=f"crmlake-{stage}",
        )
        for stage in STAGES
    ]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream

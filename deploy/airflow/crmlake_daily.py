"""Airflow DAG: the four crmlake stages for each business date, in order, with spark-submit.

Copy to your DAGs folder; set the Airflow Variables ``crmlake_home`` (where the repo and
its conf live on the workers) and ``crmlake_conf`` (e.g. conf/cluster.yaml), and a Spark
connection ``spark_crmlake`` pointing at your cluster. Each task passes the run's logical
date as ``--date``, so a cleared task or a backfill reruns exactly that date
(every stage is idempotent for a date).

A stage that ran to its end but left some pieces undone (a model that could not train, an
audience that could not be built) exits 4 and fails its task, so that the run shows it; the
next stage still runs (``trigger_rule="all_done"``): each stage reads what the lake holds,
so decide publishes from the scores analyze did write. A stage that failed outright leaves
the lake as it was, and the next one works from that.
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
            trigger_rule="all_success" if stage == STAGES[0] else "all_done",
        )
        for stage in STAGES
    ]
    for upstream, downstream in zip(tasks, tasks[1:]):
        upstream >> downstream

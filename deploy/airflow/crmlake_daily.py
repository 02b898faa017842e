"""Airflow DAG: the four crmlake stages for each business date, in order, with spark-submit.

Copy to your DAGs folder. Where crmlake lives comes from Airflow Variables, read when a task
runs (templates, so the DAG processor makes no lookups and a changed Variable needs no reparse):

- ``crmlake_home`` (default ``/opt/crmlake``): the checkout on the Airflow workers, holding
  ``jobs/``, ``dist/crmlake.zip`` (``make package``) and the environment's conf file;
- ``crmlake_conf`` (default ``conf/cluster.yaml``): that conf file, relative to ``crmlake_home``;
- ``crmlake_spark_packages`` (default Delta's coordinates): what ``--packages`` fetches; set it
  empty where the cluster's Spark already has Delta's jars, or the lake uses delta-rs.

The Spark connection ``spark_crmlake`` names the master (``spark://host:7077``, ``yarn``, ...)
and the deploy mode; ``spark-submit`` must be on the worker's PATH. Each task passes the run's
logical date as ``--date``, so a cleared task or a backfill reruns exactly that date (every
stage is idempotent for a date).

A stage that ran to its end but left some pieces undone (a model that could not train, an
audience that could not be built) exits 4 and fails its task, so that the run shows it; the
next stage still runs (``trigger_rule="all_done"``): each stage reads what the lake holds,
so decide publishes from the scores analyze did write. A stage that failed outright leaves
the lake as it was, and the next one works from that.
"""

from __future__ import annotations

import datetime as dt

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

STAGES = ("acquire", "organize", "analyze", "decide")
HOME = "{{ var.value.get('crmlake_home', '/opt/crmlake') }}"
CONF = "{{ var.value.get('crmlake_conf', 'conf/cluster.yaml') }}"
PACKAGES = "{{ var.value.get('crmlake_spark_packages', 'io.delta:delta-spark_4.2_2.13:4.4.1') }}"

with DAG(
    dag_id="crmlake_daily",
    description="crmlake: acquire -> organize -> analyze -> decide for yesterday's business date",
    # 02:30 UTC, after the landing zone's daily drop. A data interval, not Airflow 3's default
    # trigger timetable: a run's logical date ({{ ds }}) is then the day before it starts, the
    # business date it processes, as crmlake's own default (yesterday) is.
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone="UTC"),
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 2, "retry_delay": dt.timedelta(minutes=10)},
    tags=["crmlake"],
) as dag:
    chain(*(
        SparkSubmitOperator(
            task_id=stage,
            conn_id="spark_crmlake",
            application=f"{HOME}/jobs/{stage}.py",
            py_files=f"{HOME}/dist/crmlake.zip",
            packages=PACKAGES,
            # spark-submit starts the driver's JVM before crmlake reads its conf: the JIT option
            # conf/base.yaml gives the executors goes here (README, spark-submit notes).
            conf={"spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods"},
            application_args=["--conf", f"{HOME}/{CONF}", "--date", "{{ ds }}"],
            name=f"crmlake-{stage}",
            trigger_rule="all_success" if stage == STAGES[0] else "all_done",
        )
        for stage in STAGES
    ))

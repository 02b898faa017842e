"""Airflow DAG: the four crmlake stages for each business date, in order, with spark-submit.

Copy to your DAGs folder. Where crmlake lives comes from Airflow Variables, read when a task
runs (templates, so the DAG processor makes no lookups and a changed Variable needs no reparse):

- ``crmlake_home`` (default ``/opt/crmlake``): the checkout on the Airflow workers, holding
  ``jobs/``, ``dist/crmlake.zip`` (``make package``) and the environment's conf file;
- ``crmlake_conf`` (default ``conf/cluster.yaml``): that conf file, relative to ``crmlake_home``;
- ``crmlake_spark_packages`` (default Delta's coordinates): what ``--packages`` fetches; set it
  empty where the cluster's Spark already has Delta's jars, or the lake uses delta-rs.

The Spark connection ``spark_crmlake`` names the master (``spark://host:7077``, ``yarn``, ...)
and the deploy mode; ``spark-submit`` must be on the worker's PATH.

Business dates are dates in crmlake's ``business.timezone``, which the schedule needs when the
DAG is parsed, before any Variable may be read: the environment variable
``CRMLAKE_BUSINESS_TIMEZONE`` of the DAG processor gives it (an IANA name; unset, Asia/Taipei,
the packaged default), and must equal ``business.timezone`` in the conf file ``crmlake_conf``
names. A run starts at 02:30 in that zone, after the landing zone's daily drop, and processes the
business date that ended at the midnight before. Each task passes as ``--date`` the run's logical
date read in that zone (not ``{{ ds }}``, its date in UTC),
so a cleared task or a backfill reruns exactly that date (every stage is idempotent for a date).
A date typed by hand (``airflow dags test crmlake_daily 2026-11-21``) is midnight in Airflow's
``default_timezone``, UTC unless set: west of UTC, set it to the business zone or give the
offset (``2026-11-21T00:00-08:00``), else the run is the day before's.

A stage that ran to its end but left some pieces undone (a model that could not train, an
audience that could not be built) exits 4 and fails its task, so that the run shows it; the
next stage still runs (``trigger_rule="all_done"``): each stage reads what the lake holds,
so decide publishes from the scores analyze did write. A stage that failed outright leaves
the lake as it was, and the next one works from that.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronDataIntervalTimetable, chain

STAGES = ("acquire", "organize", "analyze", "decide")
BUSINESS_TIMEZONE = os.environ.get("CRMLAKE_BUSINESS_TIMEZONE", "Asia/Taipei")
# A scheduled run's logical date is the start of its data interval, 02:30 on its business date.
BUSINESS_DATE = f"{{{{ logical_date.in_timezone('{BUSINESS_TIMEZONE}').strftime('%Y-%m-%d') }}}}"
HOME = "{{ var.value.get('crmlake_home', '/opt/crmlake') }}"
CONF = "{{ var.value.get('crmlake_conf', 'conf/cluster.yaml') }}"
PACKAGES = "{{ var.value.get('crmlake_spark_packages', 'io.delta:delta-spark_4.2_2.13:4.4.1') }}"

with DAG(
    dag_id="crmlake_daily",
    description="crmlake: acquire -> organize -> analyze -> decide for yesterday's business date",
    # 02:30 in the business zone, after the landing zone's daily drop. A data interval, not
    # Airflow 3's default trigger timetable: a run's logical date is then 02:30 the day before it
    # starts, on the business date it processes, as crmlake's own default (yesterday) is.
    schedule=CronDataIntervalTimetable("30 2 * * *", timezone=BUSINESS_TIMEZONE),
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
            application_args=["--conf", f"{HOME}/{CONF}", "--date", BUSINESS_DATE],
            name=f"crmlake-{stage}",
            trigger_rule="all_success" if stage == STAGES[0] else "all_done",
        )
        for stage in STAGES
    ))

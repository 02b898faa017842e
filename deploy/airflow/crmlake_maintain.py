"""Airflow DAG: weekly lake maintenance (``crmlake maintain``) with spark-submit.

Compacts small files and deletes the removed files and Delta log entries older than each
layer's ``lake.retention_days`` (the table catalog says which tables exist), so storage
stays bounded. Scheduled on Sunday after the daily run, never beside it: the same Airflow
Variables, Spark connection and business time zone (``CRMLAKE_BUSINESS_TIMEZONE``) as
``crmlake_daily`` (its docstring says what they are); ``max_active_runs=1``.
"""

from __future__ import annotations

import datetime as dt
import os

from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator
from airflow.sdk import DAG, CronTriggerTimetable

BUSINESS_TIMEZONE = os.environ.get("CRMLAKE_BUSINESS_TIMEZONE", "Asia/Taipei")
HOME = "{{ var.value.get('crmlake_home', '/opt/crmlake') }}"
CONF = "{{ var.value.get('crmlake_conf', 'conf/cluster.yaml') }}"
PACKAGES = "{{ var.value.get('crmlake_spark_packages', 'io.delta:delta-spark_4.2_2.13:4.4.1') }}"

with DAG(
    dag_id="crmlake_maintain",
    description="crmlake: optimize and vacuum every catalog table by lake.retention_days",
    # Sundays 05:30 in the business zone, as the daily run's 02:30: after it has finished.
    schedule=CronTriggerTimetable("30 5 * * 0", timezone=BUSINESS_TIMEZONE),
    start_date=dt.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    default_args={"retries": 1, "retry_delay": dt.timedelta(minutes=30)},
    tags=["crmlake"],
) as dag:
    SparkSubmitOperator(
        task_id="maintain",
        conn_id="spark_crmlake",
        application=f"{HOME}/jobs/maintain.py",
        py_files=f"{HOME}/dist/crmlake.zip",  # holds the defaults (crmlake/conf/base.yaml) too
        packages=PACKAGES,
        conf={"spark.driver.extraJavaOptions": "-XX:-DontCompileHugeMethods"},
        application_args=["--conf", f"{HOME}/{CONF}"],
        name="crmlake-maintain",
    )

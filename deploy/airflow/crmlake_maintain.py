"""Airflow DAG: weekly lake maintenance (``crmlake maintain``) with spark-submit.

Compacts small files and deletes the removed files and Delta log entries older than each
layer's ``lake.retention_days`` (the table catalog says which tables exist), so storage
stays bounded. Scheduled on Sunday after the daily run, never beside it: the same Airflow
Variables and Spark connection as ``crmlake_daily``; ``max_active_runs=1``.
"""

from __future__ import annotations

import datetime as dt

from airflow import DAG
from airflow.models import Variable
from airflow.providers.apache.spark.operators.spark_submit import SparkSubmitOperator

HOME = Variable.get("crmlake_home", default_var="/opt/crmlake")
CONF = Variable.get("crmlake_conf", default_var="conf/cluster.yaml")

with DAG(
    dag_id="crmlake_maintain",
    description="crmlake: optimize and vacuum every catalog table by lake.retention_days",
    schedule="30 5 * * 0",  # Sundays 05:30: after the 02:30 daily run has finished
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
        py_files=f"{HOME}/dist/crmlake.zip",
        files=f"{HOME}/conf/base.yaml",
        packages="io.delta:delta-spark_4.2_2.13:4.4.1",
        application_args=["--conf", f"{HOME}/{CONF}"],
        env_vars={"CRMLAKE_CONF_DIR": f"{HOME}/conf"},
        name="crmlake-maintain",
    )

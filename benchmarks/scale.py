"""Scale section: a model of each stage's time on P cores beyond this machine, fitted from
Spark's event logs, not a measurement of a bigger cluster. One generated landing zone is run
through the four stages, each spark-submitted as its own application with event logging on,
three times: on ``local[1]``, on ``local[2]`` and on a loopback standalone cluster of 2
workers x 1 core (executors in their own JVMs, shuffles fetched over the loopback network).
From each application's event log: its jobs, the seconds the driver worked alone (the
process's wall time outside every job: JVM and session start, planning, commits, model
registry), the executors' task time, and the shuffle bytes read per clickstream event.

The model, per stage: T(P) = driver + CPU/P + shuffle/(P * bandwidth), each input measured:
driver the cluster run's driver-alone seconds, CPU the task seconds of the ``local[1]`` run
(one core, nothing to wait for but the work), shuffle the bytes the cluster's tasks read, and
bandwidth the bytes they fetched from the other executor over the seconds they waited for
them ("not limiting" when they never waited). What the cluster run took beyond the model
at P = 2 is printed as the model's residual: the cost of scheduling tasks on executors in
other JVMs, which the model leaves out. Its predictions for 4 to 32 cores assume the work
divides evenly over the cores and the driver's share stays as measured; the README gives it
as a model with these inputs.
"""

from __future__ import annotations

import datetime as dt
import glob
import json
import os
import subprocess
import sys

import yaml
from pyspark.sql import SparkSession

from benchmarks.common import seconds
from crmlake.cli import STAGES
from crmlake.cluster import SPARK_SUBMIT, package_zip, start, stop
from crmlake.config import load_conf
from crmlake.lake import Lake

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETUPS = ("local[1]", "local[2]", "cluster 2x1")
PREDICTED_CORES = (1, 2, 4, 8, 16, 32)


def covered_seconds(intervals: list[tuple[float, float]]) -> float:
    """Return the seconds covered by the union of ``(start, end)`` intervals (overlaps once)."""
    covered, reach = 0.0, float("-inf")
    for begin, end in sorted(intervals):
        if end > reach:
            covered += end - max(begin, reach)
            reach = end
    return covered


def application_figures(event_log: str) -> dict:
    """Return what one application's event log (JSON lines, uncompressed) says: ``jobs``,
    ``job_seconds`` (the union of the jobs' spans), ``task_seconds`` (executor run time of
    every task), ``shuffle_read_bytes``, ``shuffle_write_bytes``, and of the bytes read
    ``remote_bytes_read`` (fetched from another executor) with ``fetch_wait_seconds`` (the
    tasks' time blocked on those fetches)."""
    spans: dict = {}
    figures = {"task_seconds": 0.0, "shuffle_read_bytes": 0, "shuffle_write_bytes": 0, "remote_bytes_read": 0, "fetch_wait_seconds": 0.0}
    with open(event_log, encoding="utf-8") as fh:
        for line in fh:
            event = json.loads(line)
            kind = event["Event"]
            if kind == "SparkListenerJobStart":
                spans[event["Job ID"]] = [event["Submission Time"] / 1000, None]
            elif kind == "SparkListenerJobEnd":
                spans[event["Job ID"]][1] = event["Completion Time"] / 1000
            elif kind == "SparkListenerTaskEnd" and event.get("Task Metrics"):
                metrics = event["Task Metrics"]
                read = metrics["Shuffle Read Metrics"]
                figures["task_seconds"] += metrics["Executor Run Time"] / 1000
                figures["shuffle_read_bytes"] += read["Remote Bytes Read"] + read["Local Bytes Read"]
                figures["shuffle_write_bytes"] += metrics["Shuffle Write Metrics"]["Shuffle Bytes Written"]
                figures["remote_bytes_read"] += read["Remote Bytes Read"]
                figures["fetch_wait_seconds"] += read["Fetch Wait Time"] / 1000
    finished = [(begin, end) for begin, end in spans.values() if end is not None]
    return {**figures, "jobs": len(spans), "job_seconds": covered_seconds(finished)}


def fitted_model(local_one: dict, cluster: dict) -> dict:
    """Fit T(P) = driver + cpu/P + shuffle/(P * bandwidth) for one stage; return its inputs.

    Takes the stage's figures on ``local[1]`` and on the 2-core cluster (each a dict of
    :func:`application_figures` plus ``wall_seconds``). ``bandwidth`` (bytes/s) is the
    cluster's remote bytes over its tasks' fetch wait, None when they never waited (shuffles
    did not limit it)."""
    driver = cluster["wall_seconds"] - cluster["job_seconds"]
    waited, remote = cluster["fetch_wait_seconds"], cluster["remote_bytes_read"]
    bandwidth = remote / waited if waited > 0 and remote > 0 else None
    return {"driver": driver, "cpu": local_one["task_seconds"], "shuffle": cluster["shuffle_read_bytes"], "bandwidth": bandwidth}


def modelled_seconds(model: dict, cores: int) -> float:
    """Return the model's T(P) for ``cores`` (see :func:`fitted_model`)."""
    network = model["shuffle"] / (cores * model["bandwidth"]) if model["bandwidth"] else 0.0
    return model["driver"] + model["cpu"] / cores + network


def _submit(master: str, stage: str, conf_file: str, run_date: dt.date, py_files: str | None) -> float:
    """spark-submit one stage's job to ``master``; return its wall seconds. A partial run (exit
    4: a model with too little data to train, say) is timed as it ran; any other failure raises."""
    command = [SPARK_SUBMIT, "--master", master, *(["--py-files", py_files] if py_files else []),
               "--driver-java-options", "-XX:-DontCompileHugeMethods", os.path.join(ROOT, "jobs", f"{stage}.py"),
               "--conf", conf_file, "--date", str(run_date), "--log-level", "WARNING"]
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "SPARK_LOCAL_IP": "127.0.0.1"}

    def run() -> None:
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        if done.returncode not in (0, 4):
            raise RuntimeError(f"{stage} on {master} exited {done.returncode}: {done.stderr[-2000:]}")

    return seconds(run)


def _setup_root(tmp: str, setup: str) -> str:
    """The folder of one setup's run (its lake, logs, conf and cluster)."""
    return f"{tmp}/scale/{setup.replace(' ', '-').replace('[', '').replace(']', '')}"


def _run_setup(setup: str, conf_file: str | None, tmp: str, landing: str, run_date: dt.date) -> dict:
    """Run the four stages on one setup, each its own application; return stage -> figures."""
    root = _setup_root(tmp, setup)
    logs = f"{root}/event-logs"
    os.makedirs(logs, exist_ok=True)
    conf = load_conf(conf_file, [f"paths.landing={landing}", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                                 f"paths.checkpoints={root}/checkpoints", f"mlflow.tracking_uri=sqlite:///{root}/mlflow.db",
                                 f"mlflow.artifact_root={root}/artifacts", "spark.conf.spark.eventLog.enabled=true",
                                 f"spark.conf.spark.eventLog.dir=file://{logs}", "spark.conf.spark.eventLog.compress=false",
                                 "spark.conf.spark.eventLog.rolling.enabled=false"], environ={})
    conf_path = f"{root}/conf.yaml"
    with open(conf_path, "w", encoding="utf-8") as fh:
        yaml.safe_dump(conf.model_dump(mode="json"), fh)
    cluster_state = f"{root}/cluster"
    if setup.startswith("cluster"):
        master, py_files = start(cluster_state, cores=1, memory="3g", workers=2).master_url, package_zip(f"{root}/crmlake.zip")
    else:
        master, py_files = setup, None
    figures = {}
    try:
        for stage in STAGES:
            before = set(glob.glob(f"{logs}/*"))
            wall = _submit(master, stage, conf_path, run_date, py_files)
            (event_log,) = set(glob.glob(f"{logs}/*")) - before
            figures[stage] = {**application_figures(event_log), "wall_seconds": wall}
    finally:
        stop(cluster_state)
    return figures


def bench_scale(spark: SparkSession, conf_file: str | None, tmp: str, customers: int, days: int) -> list[str]:
    """Run one generated zone of ``customers`` x ``days`` through the four stages on
    ``local[1]``, ``local[2]`` and a 2 x 1-core loopback cluster; fit each stage's T(P);
    return printable lines: the measured figures and the model's predictions."""
    from crmlake.generate.landing import write_landing

    run_date = dt.date(2026, 11, 21)
    landing = f"{tmp}/scale/landing"
    write_landing(spark, landing, customers, days, run_date, 17, load_conf(conf_file).business.timezone)
    measured = {setup: _run_setup(setup, conf_file, tmp, landing, run_date) for setup in SETUPS}
    first_lake = Lake(spark, load_conf(conf_file, [f"paths.lake={_setup_root(tmp, SETUPS[0])}/lake"]))
    events = first_lake.read("bronze.clickstream").count()
    lines = [f"zone                        : {customers:,} customers x {days} days, {events:,} clickstream events; each stage spark-submitted alone, event logs read"]
    models = {stage: fitted_model(measured["local[1]"][stage], measured["cluster 2x1"][stage]) for stage in STAGES}
    for stage, model in models.items():
        runs = {setup: measured[setup][stage] for setup in SETUPS}
        cluster = runs["cluster 2x1"]
        bandwidth = f"{model['bandwidth'] / 1e6:,.1f} MB/s" if model["bandwidth"] else "not limiting"
        lines += [
            f"{stage:<28}: " + ", ".join(f"{setup} {r['wall_seconds']:.1f}s ({r['jobs']} jobs, driver alone {r['wall_seconds'] - r['job_seconds']:.1f}s)"
                                          for setup, r in runs.items()),
            f"{'  inputs':<28}: driver {model['driver']:.1f}s, CPU {model['cpu']:.1f} task-s, shuffle read {model['shuffle'] / max(events, 1):,.0f} bytes/event"
            f" ({model['shuffle'] / 1e6:,.1f} MB), bandwidth {bandwidth}",
            f"{'  model T(P)':<28}: " + ", ".join(f"P={p} {modelled_seconds(model, p):.1f}s" for p in PREDICTED_CORES)
            + f" (measured: local[1] {runs['local[1]']['wall_seconds']:.1f}s, local[2] {runs['local[2]']['wall_seconds']:.1f}s against P=2's"
            f" {modelled_seconds(model, 2):.1f}s; the cluster {cluster['wall_seconds']:.1f}s, residual"
            f" {cluster['wall_seconds'] - modelled_seconds(model, 2):+.1f}s: scheduling on other JVMs, which the model leaves out)",
        ]
    whole = {setup: sum(measured[setup][s]["wall_seconds"] for s in STAGES) for setup in SETUPS}
    lines.append(f"{'four stages, model T(P)':<28}: " + ", ".join(f"P={p} {sum(modelled_seconds(m, p) for m in models.values()):.1f}s" for p in PREDICTED_CORES)
                 + "; measured " + ", ".join(f"{setup} {took:.1f}s" for setup, took in whole.items()))
    lines.append(f"{'  driver share':<28}: {sum(m['driver'] for m in models.values()) / whole['cluster 2x1']:.0%} of the cluster run: the part more cores do not shorten")
    return lines

"""The generated pipeline that several integration modules read (built once per test run),
tracked in a real MLflow server on loopback (the cluster test covers the embedded SQLite store)."""

import datetime as dt
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from crmlake.acquire import job as acquire
from crmlake.analyze import job as analyze
from crmlake.cluster import free_port
from crmlake.decide import job as decide
from crmlake.generate.landing import write_landing
from crmlake.organize import job as organize

END = dt.date(2026, 11, 21)
MIDWAY = END - dt.timedelta(days=12)


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """An ``mlflow server`` over its own SQLite store and artifact folder; yields its base URL."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=subprocess.DEVNULL, stderr=open(root / "server.log", "wb"), start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{base}/health", timeout=2) as reply:
                if reply.status == 200:
                    break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}")
            time.sleep(1)
    yield base
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:  # its graceful shutdown waits on idle keep-alive connections
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)


@pytest.fixture(scope="session")
def pipeline(spark, tmp_path_factory, model_overrides, mlflow_server):
    from crmlake.config import load_conf
    from crmlake.lake import Lake

    root = tmp_path_factory.mktemp("e2e")
    conf = load_conf(
        "conf/local.yaml",
        overrides=[f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports",
                   f"mlflow.tracking_uri={mlflow_server}", *model_overrides],
        environ={},
    )
    truth = write_landing(spark, conf.landing_root, customers=300, days=45, end=END, seed=3, timezone="Asia/Taipei")
    # Two runs, so that organize's second run is incremental (late files, status changes, erase).
    acquire.run(spark, conf, MIDWAY)
    organized_first = organize.run(spark, conf, MIDWAY)
    first = acquire.run(spark, conf, END)
    organized = organize.run(spark, conf, END)
    analyzed = analyze.run(spark, conf, END)
    decided = decide.run(spark, conf, END)
    return {
        "conf": conf, "lake": Lake(spark, conf), "truth": truth, "acquire": first, "analyze": analyzed, "decide": decided, "root": root,
        "organize": [organized_first, organized],
    }

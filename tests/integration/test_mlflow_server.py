"""analyze against a real MLflow tracking server on loopback; the models found through its REST API."""

import datetime as dt
import json
import os
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest

from crmlake.analyze import job as analyze
from crmlake.cluster import free_port

pytestmark = pytest.mark.integration
END = dt.date(2026, 11, 21)


def get(base, path, **params):
    with urllib.request.urlopen(f"{base}{path}?{urllib.parse.urlencode(params)}", timeout=10) as reply:
        return json.load(reply)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
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
    os.killpg(process.pid, 15)
    process.wait(timeout=30)


def test_analyze_registers_models_the_server_serves(spark, server, pipeline):
    # The generated lake of the end-to-end run, analyzed again with the server as tracking store.
    summary = analyze.run(spark, pipeline["conf"].with_overrides([f"mlflow.tracking_uri={server}"]), END)
    names = {m["name"] for m in get(server, "/api/2.0/mlflow/registered-models/search", max_results=100)["registered_models"]}
    assert {"crmlake-propensity", "crmlake-segmentation"} <= names
    champion = get(server, "/api/2.0/mlflow/registered-models/alias", name="crmlake-propensity", alias="champion")["model_version"]
    assert champion["version"] == str(summary["propensity"]["version"])
    run = get(server, "/api/2.0/mlflow/runs/get", run_id=champion["run_id"])["run"]
    assert "auc_holdout" in {m["key"] for m in run["data"]["metrics"]}

"""The end-to-end run's MLflow server on loopback: the models analyze registered, found through its REST API."""

import json
import urllib.parse
import urllib.request

import pytest

pytestmark = pytest.mark.integration


def get(base, endpoint, **params):
    with urllib.request.urlopen(f"{base}{endpoint}?{urllib.parse.urlencode(params)}", timeout=10) as reply:
        return json.load(reply)


def test_analyze_registers_models_the_server_serves(pipeline):
    # The end-to-end run tracked its analyze stage in the server: the models are found through its REST API.
    server = pipeline["conf"].mlflow.tracking_uri
    assert server.startswith("http://127.0.0.1:")
    names = {m["name"] for m in get(server, "/api/2.0/mlflow/registered-models/search", max_results=100)["registered_models"]}
    assert {"crmlake-propensity", "crmlake-segmentation"} <= names
    champion = get(server, "/api/2.0/mlflow/registered-models/alias", name="crmlake-propensity", alias="champion")["model_version"]
    assert champion["version"] == str(pipeline["analyze"]["propensity"]["version"])
    run = get(server, "/api/2.0/mlflow/runs/get", run_id=champion["run_id"])["run"]
    assert "auc_holdout" in {m["key"] for m in run["data"]["metrics"]}
    # The model's files went through the server's artifact proxy into its store.
    listed = get(server, "/api/2.0/mlflow-artifacts/artifacts", path=champion["source"].split("mlflow-artifacts:/", 1)[-1].lstrip("/"))
    assert any(f["path"] == "MLmodel" for f in listed.get("files", [])), (champion["source"], listed)

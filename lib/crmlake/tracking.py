"""MLflow at the edge: the tracking store from conf, model logging and registration."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator

from crmlake.config import Conf
from crmlake.log import get_logger

log = get_logger("tracking")
# Written into each logged model, so serving it elsewhere installs what scoring needs.
MODEL_REQUIREMENTS = ["pyspark==4.2.0", "mlflow==3.17.2"]
CHAMPION = "champion"


def configure(conf: Conf) -> str:
    """Point MLflow at conf's tracking store and experiment; return the experiment id."""
    import mlflow

    uri = conf.require("mlflow.tracking_uri")
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]) or ".", exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = conf.get("mlflow.experiment", "crmlake")
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = conf.get("mlflow.artifact_root")
    location = None
    if uri.startswith(("http://", "https://")):
        root = None  # a tracking server stores (or proxies) the artifacts where it was told to
    if root and "://" not in root:
        os.makedirs(root, exist_ok=True)
        location = "file://" + os.path.join(root, name)
    elif root:
        location = f"{root.rstrip('/')}/{name}"
    return mlflow.create_experiment(name, artifact_location=location)


@contextmanager
def tracked_run(conf: Conf, run_name: str, tags: dict | None = None) -> Iterator[object]:
    """Start an MLflow run in conf's experiment; yield the active run."""
    import mlflow

    experiment_id = configure(conf)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags or {}) as run:
        yield run


def log_spark_model(model, name: str, registered_name: str, sample_input, sample_output) -> str:
    """Log a fitted Spark ML pipeline with its signature, register it; return the new version."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(sample_input, sample_output)
    info = mlflow.spark.log_model(
        model,
        artifact_path=name,
        signature=signature,
        registered_model_name=registered_name,
        pip_requirements=MODEL_REQUIREMENTS,
    )
    version = str(info.registered_model_version)
    log.info("registered %s version %s", registered_name, version)
    return version


def ensure_champion(registered_name: str, version: str) -> str:
    """Give ``version`` the ``champion`` alias when the model has none yet; return the champion version."""
    from mlflow import MlflowClient

    client = MlflowClient()
    try:
        return str(client.get_model_version_by_alias(registered_name, CHAMPION).version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic error for a missing alias
        client.set_registered_model_alias(registered_name, CHAMPION, version)
        return version

"""MLflow at the edge: the tracking store from conf, model logging and registration, the
champion alias, and the fingerprints that make a rerun of a date register nothing new."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from typing import Iterator

from crmlake.config import Conf
from crmlake.log import get_logger

log = get_logger("tracking")
# Written into each logged model, so serving it elsewhere installs what scoring needs.
MODEL_REQUIREMENTS = ["pyspark==4.2.0", "mlflow==3.17.2"]
CHAMPION = "champion"
# Model version tag: what the version was trained from (see :func:`fingerprint`).
FINGERPRINT_TAG = "inputs_fingerprint"


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


def fingerprint(inputs: dict, settings: dict) -> str:
    """Return a hash of what a model is trained from: ``inputs`` (for example each input
    table's Delta version and the run date) and ``settings`` (its conf section)."""
    blob = json.dumps({"inputs": inputs, "settings": settings}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def version_with_fingerprint(registered_name: str, inputs_fingerprint: str) -> str | None:
    """Return the latest registered version of ``registered_name`` trained from exactly
    ``inputs_fingerprint``, or None: a rerun that finds one has nothing new to learn."""
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{registered_name}' AND tags.{FINGERPRINT_TAG} = '{inputs_fingerprint}'")
    return str(max(int(v.version) for v in found)) if found else None


def log_spark_model(model, name: str, registered_name: str, sample_input, sample_output, inputs_fingerprint: str) -> str:
    """Log a fitted Spark ML pipeline with its signature, register it with its inputs'
    fingerprint as a version tag; return the new version."""
    import mlflow
    from mlflow import MlflowClient
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
    MlflowClient().set_model_version_tag(registered_name, version, FINGERPRINT_TAG, inputs_fingerprint)
    mlflow.set_tag(FINGERPRINT_TAG, inputs_fingerprint)
    log.info("registered %s version %s", registered_name, version)
    return version


def champion_version(registered_name: str) -> str | None:
    """Return the version holding the ``champion`` alias, or None when there is none yet."""
    from mlflow import MlflowClient

    try:
        return str(MlflowClient().get_model_version_by_alias(registered_name, CHAMPION).version)
    except Exception:  # noqa: BLE001 - MLflow raises a generic error for a missing alias or model
        return None


def load_champion(registered_name: str):
    """Return (fitted Spark pipeline, version) of the version the ``champion`` alias points to.

    The alias is resolved once and that version loaded (``models:/name/<version>``), so the
    version recorded beside the scores is the one that made them even if another run moves
    the alias meanwhile. Raises LookupError when the model has no champion.

    The model's files are downloaded into a temporary folder that is removed once Spark has
    loaded them (Spark ML reads a model's data when it loads it): left to itself, MLflow
    downloads each load into a new folder under /tmp and never removes it.
    """
    import mlflow

    version = champion_version(registered_name)
    if version is None:
        raise LookupError(f"registered model {registered_name!r} has no {CHAMPION!r} alias")
    with tempfile.TemporaryDirectory(prefix="crmlake-model-") as local:
        return mlflow.spark.load_model(f"models:/{registered_name}/{version}", dst_path=local), version


def promote_if_better(registered_name: str, challenger: str, challenger_score: float, champion_score: float | None, margin: float) -> tuple[bool, str]:
    """Move ``champion`` to ``challenger`` when it beats the champion's score (same holdout) by
    ``margin``, or when there is no champion; return (moved, reason)."""
    current = champion_version(registered_name)
    if current is None or champion_score is None:
        moved, reason = True, f"no champion yet: version {challenger} becomes champion"
    elif challenger_score >= champion_score + margin:
        moved, reason = True, f"challenger v{challenger} {challenger_score:.4f} beats champion v{current} {champion_score:.4f} by >= {margin}"
    else:
        moved, reason = False, f"champion v{current} kept: challenger v{challenger} {challenger_score:.4f} < champion {champion_score:.4f} + margin {margin}"
    if moved:
        set_champion(registered_name, challenger, reason)
    else:
        log.info("%s: %s", registered_name, reason)
    return moved, reason


def set_champion(registered_name: str, version: str, reason: str) -> None:
    """Give ``version`` the ``champion`` alias, logging why."""
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(registered_name, CHAMPION, version)
    log.info("%s: champion -> v%s (%s)", registered_name, version, reason)

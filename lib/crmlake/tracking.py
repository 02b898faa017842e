"""MLflow at the edge: the tracking store from conf, model logging and registration, the
champion alias, and the fingerprints that make a rerun of a date register nothing new.

Registering a version and judging it (does it take the ``champion`` alias?) are two registry
writes, and a process can be killed between them. So each version is registered with its
inputs' fingerprint and its holdout score (version tags, written by the call that creates
the version), and the judge's decision is written last, as the version's
``champion_decision`` tag: a version without one was left by a killed run, and the next run
with the same fingerprint judges it from its recorded score instead of training again
(:func:`resume`).

A version serves either a model or its naive baseline (version tag ``served``: see
:mod:`crmlake.analyze.recipe`). A baseline takes the alias from a model champion that does
not beat it on the holdout, whatever the margin: a model that loses to its baseline is not served.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator

from crmlake.config import Conf
from crmlake.faults import crash_point
from crmlake.log import get_logger

log = get_logger("tracking")
# Written into each logged model, so serving it elsewhere installs what scoring needs.
MODEL_REQUIREMENTS = ["pyspark==4.2.0", "mlflow==3.17.2"]
CHAMPION = "champion"
# Model version tags: what the version was trained from (see :func:`fingerprint`), its score
# on the holdout it was judged by, and the judge's decision (the last write of a registration).
FINGERPRINT_TAG = "inputs_fingerprint"
SCORE_TAG = "holdout_score"
DECISION_TAG = "champion_decision"
# What a version serves: a fitted model, or the naive baseline it did not beat.
SERVED_TAG = "served"
MODEL, BASELINE = "model", "baseline"
# The form of a registered pipeline's inputs; bumped when it changes, so that no version of an
# older form is reused or judged against one of this form (2: preprocessing inside the pipeline).
FORMAT_TAG, MODEL_FORMAT = "model_format", "2"


def configure(conf: Conf) -> str:
    """Point MLflow at conf's tracking store and experiment; return the experiment id."""
    import mlflow

    uri = conf.mlflow.tracking_uri
    if uri.startswith("sqlite:///"):
        os.makedirs(os.path.dirname(uri[len("sqlite:///"):]) or ".", exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name = conf.mlflow.experiment
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = conf.mlflow.artifact_root
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
    blob = json.dumps({"inputs": inputs, "settings": settings, "model_format": MODEL_FORMAT}, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


@dataclass(frozen=True)
class RegisteredVersion:
    """A registered model version: its number, the holdout score it was registered with, the
    champion decision taken on it (None until it has been judged), and what it serves
    (:data:`MODEL` or :data:`BASELINE`)."""

    version: str
    score: float | None
    decision: str | None
    served: str = MODEL

    @property
    def awaiting_judgement(self) -> bool:
        """True when the run that registered it was killed before judging it. A version without a
        score was registered before scores were recorded, and was judged then."""
        return self.decision is None and self.score is not None


def version_with_fingerprint(registered_name: str, inputs_fingerprint: str) -> RegisteredVersion | None:
    """Return the latest registered version of ``registered_name`` trained from exactly
    ``inputs_fingerprint`` (its number, score and decision), or None: a rerun that finds one
    has nothing new to learn, at most a judgement to finish."""
    from mlflow import MlflowClient

    found = MlflowClient().search_model_versions(f"name = '{registered_name}' AND tags.{FINGERPRINT_TAG} = '{inputs_fingerprint}'")
    if not found:
        return None
    latest = max(found, key=lambda v: int(v.version))
    score = latest.tags.get(SCORE_TAG)
    return RegisteredVersion(str(latest.version), None if score is None else float(score), latest.tags.get(DECISION_TAG), latest.tags.get(SERVED_TAG, MODEL))


def log_spark_model(model, name: str, registered_name: str, sample_input, sample_output, inputs_fingerprint: str, score: float,
                    served: str = MODEL) -> str:
    """Log a fitted Spark ML pipeline with its signature under the active run's ``name`` and
    register it, tagged with its inputs' fingerprint, its holdout ``score`` and what it serves;
    return the new version."""
    import mlflow
    from mlflow.models import infer_signature

    signature = infer_signature(sample_input, sample_output)
    info = mlflow.spark.log_model(model, artifact_path=name, signature=signature, pip_requirements=MODEL_REQUIREMENTS)
    # The tags travel in the call that creates the version: no version exists without them.
    registered = mlflow.register_model(info.model_uri, registered_name, tags={FINGERPRINT_TAG: inputs_fingerprint, SCORE_TAG: repr(float(score)),
                                                                            SERVED_TAG: served, FORMAT_TAG: MODEL_FORMAT})
    version = str(registered.version)
    mlflow.set_tag(FINGERPRINT_TAG, inputs_fingerprint)
    log.info("registered %s version %s serving the %s (holdout score %.4f)", registered_name, version, served, score)
    return version


def register_and_judge(model, registered_name: str, sample_input, sample_output, inputs_fingerprint: str, score: float,
                       champion_score_of: Callable[[object], float], margin: float, served: str = MODEL,
                       baseline_score: Callable[[], float] | None = None) -> tuple[str, bool, str]:
    """Register a fitted Spark ML pipeline (:func:`log_spark_model`, in the active run), then judge
    it (:func:`judge`); return (version, moved, reason).

    Takes the pipeline, a few rows of its input and output (its signature), the fingerprint of
    what it was trained from, its ``score`` on the holdout, ``champion_score_of`` (the
    champion's fitted pipeline -> its score on the same holdout), the margin to beat, what the
    pipeline serves (:data:`MODEL` or :data:`BASELINE`) and ``baseline_score`` (see
    :func:`judge`). Killed between the two steps (crash point ``analyze.registered``), the
    version waits for the next run with the same fingerprint to judge it (:func:`resume`).
    """
    version = log_spark_model(model, "model", registered_name, sample_input, sample_output, inputs_fingerprint, score, served)
    crash_point("analyze.registered")
    moved, reason = judge(registered_name, version, score, champion_score_of, margin, baseline_score)
    return version, moved, reason


def judge(registered_name: str, version: str, score: float, champion_score_of: Callable[[object], float], margin: float,
          baseline_score: Callable[[], float] | None = None) -> tuple[bool, str]:
    """Move ``champion`` to ``version`` when its holdout ``score`` beats the champion's by
    ``margin`` (:func:`promote_if_better`), then record the decision as the version's and its
    run's ``champion_decision`` tag; return (moved, reason).

    ``champion_score_of`` takes the current champion's fitted pipeline and returns its score on
    the same holdout; it is called only when another version is champion. ``baseline_score()``,
    when given, is the naive baseline's score on that holdout: a champion serving the baseline
    scores that. A model that does not beat its baseline is not served, so no margin protects
    a champion serving a model that does not beat the baseline on this holdout (its data moved
    on since it was judged): a version serving the baseline, or a model that beats it, takes
    the alias from it by any score at least the champion's. Killed after the alias moved and
    before the decision is recorded (crash point ``analyze.promoted``), the next run finds the
    version champion already and records that.
    """
    from mlflow import MlflowClient

    client = MlflowClient()
    registered = client.get_model_version(registered_name, version)
    current = champion_version(registered_name)
    if current == version:
        # Its run was killed after moving the alias and before recording why.
        moved, reason = False, f"version {version} is champion already"
        log.info("%s: %s", registered_name, reason)
    else:
        champion_tags = {} if current is None else client.get_model_version(registered_name, current).tags
        champion_serves = None if current is None else champion_tags.get(SERVED_TAG, MODEL)
        if champion_serves is None or champion_tags.get(FORMAT_TAG) != MODEL_FORMAT:
            # No champion, or one whose pipeline takes inputs of an older form: it cannot be scored on this holdout.
            champion_score = None
        elif champion_serves == BASELINE and baseline_score is not None:
            champion_score = baseline_score()
        else:
            champion_score = champion_score_of(load_champion(registered_name)[0])
        if champion_serves == MODEL and champion_score is not None and (
                registered.tags.get(SERVED_TAG) == BASELINE or (baseline_score is not None and champion_score <= baseline_score())):
            margin = 0.0
        moved, reason = promote_if_better(registered_name, version, score, champion_score, margin)
        crash_point("analyze.promoted")
    run_id = registered.run_id
    if run_id:
        client.set_tag(run_id, DECISION_TAG, reason)
    client.set_model_version_tag(registered_name, version, DECISION_TAG, reason)  # last: the version is judged
    return moved, reason


def resume(registered_name: str, inputs_fingerprint: str, champion_score_of: Callable[[object], float], margin: float,
           baseline_score: Callable[[], float] | None = None) -> dict | None:
    """Return the facts of a rerun when a version of ``registered_name`` was already trained from
    ``inputs_fingerprint`` (same data, same conf): nothing is fitted or registered. A version its
    run left unjudged (killed after registering it) is judged now, from its recorded holdout
    score, against ``champion_score_of`` the champion (see :func:`judge`).

    Returns None when no version has this fingerprint; else version, ``reused``, served,
    champion_moved and champion_decision.
    """
    found = version_with_fingerprint(registered_name, inputs_fingerprint)
    if found is None:
        return None
    if not found.awaiting_judgement:
        return reused(registered_name, found, inputs_fingerprint)
    log.warning("%s: version %s was registered from %s by a run killed before judging it: judged now", registered_name, found.version, inputs_fingerprint)
    moved, reason = judge(registered_name, found.version, found.score, champion_score_of, margin, baseline_score)
    return {"version": found.version, "reused": True, "served": found.served, "champion_moved": moved, "champion_decision": reason}


def reused(registered_name: str, found: RegisteredVersion, inputs_fingerprint: str) -> dict:
    """Return the facts of a rerun that finds ``found``, judged already, trained from
    ``inputs_fingerprint``: version, ``reused``, served, champion_moved (False) and champion_decision."""
    reason = f"version {found.version} was trained from the same inputs and conf ({inputs_fingerprint}): nothing registered, champion unchanged"
    log.info("%s: %s", registered_name, reason)
    return {"version": found.version, "reused": True, "served": found.served, "champion_moved": False, "champion_decision": reason}


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


def champion(registered_name: str):
    """Return (fitted Spark pipeline, version) of the champion (:func:`load_champion`), or
    (None, None) while the model has none: none of its trainings has succeeded yet."""
    try:
        return load_champion(registered_name)
    except LookupError:
        return None, None


def promote_if_better(registered_name: str, challenger: str, challenger_score: float, champion_score: float | None, margin: float) -> tuple[bool, str]:
    """Move ``champion`` to ``challenger`` when it beats the champion's score (same holdout) by
    ``margin``, or when there is no champion to compare with (none, or ``champion_score`` None:
    one of an older model format); return (moved, reason)."""
    current = champion_version(registered_name)
    if current is None:
        moved, reason = True, f"no champion yet: version {challenger} becomes champion"
    elif champion_score is None:
        moved, reason = True, f"champion v{current} is of an older model format: version {challenger} becomes champion"
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

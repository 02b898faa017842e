"""One SparkSession for the whole test run, a fresh conf (lake, landing, exports, MLflow) per
test, and the generated pipeline that several integration and fault modules read (built once
per test run), tracked in a real MLflow server on loopback (the cluster test covers the
embedded SQLite store)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest

from crmlake.acquire import job as acquire
from crmlake.analyze import job as analyze
from crmlake.cluster import free_port
from crmlake.config import load_conf
from crmlake.decide import job as decide
from crmlake.generate.landing import write_landing
from crmlake.log import setup_logging
from crmlake.organize import job as organize
from crmlake.session import build_session, remove_checkpoints
from jvm_classes import driver_options

os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
# Every JVM the tests start (this session's, the CLI's, the cluster's) lives minutes on tiny data:
# C2's optimising compiler then costs more CPU than it saves (a third of a stage's CPU here,
# measured with the JVM's per-thread times), while C1 alone changes no result. C1 alone gets a
# 48 MB code cache by default, which Spark fills within the pipeline's first stages ("CodeCache
# is full. Compiler has been disabled."): the rest then runs interpreted. With 256 MB, the
# pipeline fixture (generator and six stage runs) took 376 JVM CPU-s, against 486 with the full
# cache and 510 with C2.
os.environ.setdefault("JAVA_TOOL_OPTIONS", "-XX:TieredStopAtLevel=1 -XX:ReservedCodeCacheSize=256m")
if os.environ.get("PYTEST_XDIST_WORKER") and not hasattr(sys.modules["__main__"], "__file__"):
    # An xdist worker's __main__ is "python -c": pyspark.sql.connect (imported by MLflow's
    # Spark flavour) takes such a process for a doctest run and calls sys.exit(0).
    sys.modules["__main__"].__file__ = "<pytest-xdist worker>"

# Expensive fixtures shared by several tests, longest first: under ``pytest -n`` (make test)
# the tests using one of them form one xdist group, so the fixture is built once, and the
# groups are queued first, so that each starts on its own worker before the small tests.
# Module fixtures count too: without a group, their tests could be spread over both workers,
# each building the fixture.
SHARED_FIXTURES = ("submitted", "pipeline", "scored", "identity_zone", "days", "landings", "acquired", "clean", "catalog")


def pytest_configure(config):
    # In the run's first process, before xdist starts its workers (they inherit the environment).
    if not os.environ.get("PYTEST_XDIST_WORKER") and "PYSPARK_SUBMIT_ARGS" not in os.environ:
        config._jvm_classes = tempfile.mkdtemp(prefix="crmlake-jvm-")
        os.environ["PYSPARK_SUBMIT_ARGS"] = driver_options(config._jvm_classes)


def pytest_unconfigure(config):
    if getattr(config, "_jvm_classes", None):
        shutil.rmtree(config._jvm_classes, ignore_errors=True)


@pytest.hookimpl(tryfirst=True)  # before xdist reads the groups into the test ids
def pytest_collection_modifyitems(config, items):
    def shared_fixture_rank(item) -> int:
        return next((rank for rank, name in enumerate(SHARED_FIXTURES) if name in item.fixturenames), len(SHARED_FIXTURES))

    for item in items:
        rank = shared_fixture_rank(item)
        if rank < len(SHARED_FIXTURES):
            item.add_marker(pytest.mark.xdist_group(SHARED_FIXTURES[rank]))
    items.sort(key=shared_fixture_rank)  # stable: collection order within each rank


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session):
    # A worker whose xdist no longer tags grouped test ids would build each shared fixture
    # once per worker (pytest-xdist#1386): stop rather than silently double the run.
    if getattr(session.config.option, "loadgroup", False):
        lost = [item.nodeid for item in session.items if item.get_closest_marker("xdist_group") and "@" not in item.nodeid]
        if lost:
            raise pytest.UsageError(f"pytest-xdist did not group {lost[0]} (and {len(lost) - 1} more): check the pytest/pytest-xdist pins")


@pytest.fixture(scope="session")
def spark(tmp_path_factory):
    setup_logging("INFO")
    checkpoints = tmp_path_factory.mktemp("checkpoints")
    # This machine's conf (conf/local.yaml: local disk), on two cores and two tasks per shuffle.
    conf = load_conf("conf/local.yaml", overrides=["spark.master=local[2]", "spark.conf.spark.sql.shuffle.partitions=2", f"paths.checkpoints={checkpoints}"])
    session = build_session(conf, "tests")
    yield session
    remove_checkpoints(session)
    session.stop()


@pytest.fixture(scope="session")
def model_overrides():
    """Smaller model searches for tiny test data (the stages' logic is the same; fewer fits)."""
    return ["analyze.segmentation.k_range=[3,4]", "analyze.propensity.trees=10", "analyze.propensity.max_iter=20",
            "analyze.next_best_category.max_iter=20"]


@pytest.fixture
def conf(tmp_path):
    """A configuration whose every location lives under this test's temporary directory."""
    return load_conf(
        "conf/local.yaml",
        overrides=[
            f"paths.landing={tmp_path}/landing",
            f"paths.lake={tmp_path}/lake",
            f"paths.exports={tmp_path}/exports",
            f"mlflow.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
            f"mlflow.artifact_root={tmp_path}/mlartifacts",
        ],
        environ={},
    )


@pytest.fixture
def lake(spark, conf):
    from crmlake.lake import Lake

    return Lake(spark, conf)


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
    # What this worker's earlier tests cached: each stage's own caches are told apart below.
    spark.catalog.clearCache()
    cache, left_cached = spark._jsparkSession.sharedState().cacheManager(), []

    def run(stage, day: dt.date) -> dict:
        summary = stage.run(spark, conf, day)
        if not cache.isEmpty():
            left_cached.append(f"{stage.__name__.split('.')[-2]} {day}")
            spark.catalog.clearCache()
        return summary

    # Two runs, so that organize's second run is incremental (late files, status changes, erase).
    run(acquire, MIDWAY)
    organized_first = run(organize, MIDWAY)
    first = run(acquire, END)
    organized = run(organize, END)
    analyzed = run(analyze, END)
    decided = run(decide, END)
    return {
        "conf": conf, "lake": Lake(spark, conf), "truth": truth, "acquire": first, "analyze": analyzed, "decide": decided, "root": root,
        "organize": [organized_first, organized], "left_cached": left_cached,
    }


def pipeline_copy(pipeline: dict, target, parts=("lake", "exports")):
    """Copy the pipeline's ``parts`` (of landing, lake, exports) under ``target`` and return its
    conf pointed at the copies, with an MLflow store of its own: a test that runs a stage on the
    copy changes nothing of the shared pipeline (its registry included)."""
    for part in parts:
        shutil.copytree(pipeline["root"] / part, target / part, symlinks=True)
    return pipeline["conf"].with_overrides([*(f"paths.{part}={target}/{part}" for part in parts),
                                            f"mlflow.tracking_uri=sqlite:///{target}/mlflow.db", f"mlflow.artifact_root={target}/artifacts"])

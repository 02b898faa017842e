"""One SparkSession for the whole test run, and a fresh conf (lake, landing, exports, MLflow) per test."""

from __future__ import annotations

import os

import pytest

from crmlake.config import load_conf
from crmlake.log import setup_logging
from crmlake.session import build_session

os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)


@pytest.fixture(scope="session")
def spark():
    setup_logging("INFO")
    conf = load_conf(overrides=["spark.master=local[2]", "spark.conf.spark.sql.shuffle.partitions=2"])
    session = build_session(conf, "tests")
    yield session
    session.stop()


@pytest.fixture(scope="session")
def model_overrides():
    """Smaller model searches for tiny test data (the stages' logic is the same; fewer fits)."""
    return ["analyze.segmentation.k_range=[3,4]", "analyze.propensity.trees=10", "analyze.propensity.max_iter=20"]


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

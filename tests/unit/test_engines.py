"""Engine selection; the delta-spark engine itself needs Delta's jars on the JVM classpath."""

import pytest

from crmlake.lake import EngineUnavailableError, make_engine
from crmlake.lake.rs import RsEngine
from crmlake.lake.spark_delta import delta_spark_available


def test_auto_picks_rs_without_delta_jars(spark, conf):
    if delta_spark_available(spark):
        pytest.skip("Delta's jars are on this classpath")
    assert isinstance(make_engine(spark, conf, "auto"), RsEngine)


def test_spark_engine_without_jars_says_what_to_do(spark, conf):
    if delta_spark_available(spark):
        pytest.skip("Delta's jars are on this classpath")
    with pytest.raises(EngineUnavailableError, match="--packages io.delta"):
        make_engine(spark, conf, "spark")


def test_unknown_engine_is_named(spark, conf):
    with pytest.raises(EngineUnavailableError, match="'duck'"):
        make_engine(spark, conf, "duck")

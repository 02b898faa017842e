import pytest

from crmlake.config import ConfigError, load_conf


def test_precedence_is_base_then_file_then_set_then_environment(tmp_path):
    env_file = tmp_path / "env.yaml"
    env_file.write_text("paths:\n  lake: from-file\nbusiness:\n  timezone: Europe/Paris\n")
    conf = load_conf(
        env_file,
        overrides=["paths.lake=from-set", "business.currency=EUR"],
        environ={"CRMLAKE__PATHS__LAKE": "from-env"},
        cwd=tmp_path,
    )
    assert conf.get("paths.lake") == str(tmp_path / "from-env")
    assert conf.get("business.timezone") == "Europe/Paris"
    assert conf.get("business.currency") == "EUR"
    assert conf.get("paths.landing") == str(tmp_path / "data/landing")  # base.yaml, made absolute


def test_spark_keys_with_dots_stay_one_key():
    conf = load_conf(overrides=["spark.conf.spark.sql.shuffle.partitions=3"], environ={})
    assert conf.get("spark.conf")["spark.sql.shuffle.partitions"] == 3


def test_table_paths_come_from_the_lake_root(tmp_path):
    conf = load_conf(overrides=[f"paths.lake={tmp_path}/lake"], environ={})
    assert conf.table("silver.sessions") == f"{tmp_path}/lake/silver/sessions"
    with pytest.raises(ConfigError, match="expected <bronze|silver|gold>"):
        conf.table("platinum.sessions")


def test_missing_file_and_bad_override_are_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml"):
        load_conf(tmp_path / "nope.yaml", environ={})
    with pytest.raises(ConfigError, match="expected key=value"):
        load_conf(overrides=["paths.lake"], environ={})

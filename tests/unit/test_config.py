"""Configuration: one documented precedence, a schema that names every wrong key, defaults in the package."""

import os
import subprocess
import sys
import zipfile

import pytest

from crmlake.cli import main
from crmlake.cluster import package_zip
from crmlake.config import ConfigError, load_conf


def test_precedence_is_defaults_then_file_then_set_then_environment(tmp_path):
    env_file = tmp_path / "env.yaml"
    env_file.write_text("paths:\n  lake: from-file\nbusiness:\n  timezone: Europe/Paris\n")
    conf = load_conf(
        env_file,
        overrides=["paths.lake=from-set", "business.currency=EUR"],
        environ={"CRMLAKE__PATHS__LAKE": "from-env"},
        cwd=tmp_path,
    )
    assert conf.paths.lake == str(tmp_path / "from-env")
    assert conf.business.timezone == "Europe/Paris"
    assert conf.business.currency == "EUR"
    assert conf.paths.landing == str(tmp_path / "data/landing")  # the packaged default, made absolute


def test_values_take_their_declared_types():
    conf = load_conf(overrides=["analyze.propensity.label_days=21", "spark.conf.spark.sql.shuffle.partitions=3"],
                     environ={"CRMLAKE__ANALYZE__PROPENSITY__HOLDOUT_SHARE": "0.3"})
    assert conf.analyze.propensity.label_days == 21
    assert conf.analyze.propensity.holdout_share == 0.3
    assert conf.spark.conf["spark.sql.shuffle.partitions"] == 3  # Spark's keys with dots stay one key


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


def test_misspelt_key_in_a_file_names_the_key_the_file_and_the_nearest_key(tmp_path):
    local = tmp_path / "local.yaml"
    local.write_text("analyze:\n  propensity:\n    lable_days: 30\n")
    with pytest.raises(ConfigError) as error:
        load_conf(local, environ={})
    message = str(error.value)
    assert "'analyze.propensity.lable_days'" in message
    assert str(local) in message
    assert "did you mean 'analyze.propensity.label_days'" in message


@pytest.mark.parametrize("moved, now", [
    ("organize.identity.default_phone_region=TW", "business.default_phone_region"),
    ("decide.attribution_days=7", "campaigns.attribution_days"),
    ("decide.audiences=[]", "campaigns.audiences"),
])
def test_a_key_given_where_it_no_longer_lives_names_where_it_lives(moved, now):
    with pytest.raises(ConfigError, match=f"unknown configuration key '{moved.split('=')[0]}'.*did you mean '{now}'"):
        load_conf(overrides=[moved], environ={})


def test_the_stages_read_the_validated_model_and_a_variant_is_a_validated_copy():
    conf = load_conf(environ={})
    assert conf.campaigns.audiences[0].name == "likely_buyers" and conf.campaigns.audiences[0].target == "persons"   # an entry's left-out key
    variant = conf.with_overrides(["lake.engine=spark", "campaigns.attribution_days=7"])
    assert (variant.lake.engine, variant.campaigns.attribution_days, variant.lake_root) == ("spark", 7, conf.lake_root)
    assert (conf.lake.engine, conf.campaigns.attribution_days) == ("auto", 14)   # the original is left as it was
    with pytest.raises(ConfigError, match="'lake.target_file_rows' = 'many'"):
        conf.with_overrides(["lake.target_file_rows=many"])
    with pytest.raises(ValueError, match="frozen"):
        conf.lake.engine = "rs"


def test_misspelt_environment_variable_is_named():
    with pytest.raises(ConfigError, match="environment variable CRMLAKE__LAKE__ENGNE.*did you mean 'lake.engine'"):
        load_conf(environ={"CRMLAKE__LAKE__ENGNE": "rs"})


@pytest.mark.parametrize(
    "arguments, named",
    [
        (["--set", "analyze.propensity.lable_days=30"], "did you mean 'analyze.propensity.label_days'"),
        (["--set", "lake.engine=duck"], "'lake.engine' = 'duck' (from --set lake.engine=duck)"),
        (["--set", "business.timezone=Mars/Olympus"], "'business.timezone' = 'Mars/Olympus'"),
        (["--set", "analyze.propensity.label_days=thirty"], "'analyze.propensity.label_days' = 'thirty'"),
        (["--set", "campaigns.audiences=[{name: a, rule: 'frequency > 0', channel: fax}]"], "'campaigns.audiences.0.channel' = 'fax'"),
        (["--set", "analyze.uplift.min_group_persons=0"], "'analyze.uplift.min_group_persons' = 0"),
    ],
)
def test_bad_configuration_exits_2_naming_the_key(capsys, arguments, named):
    assert main(["run", "--stage", "acquire", *arguments]) == 2
    err = capsys.readouterr().err
    assert named in err
    assert "Traceback" not in err


def test_a_section_emptied_in_a_file_exits_2_naming_it(capsys, tmp_path):
    local = tmp_path / "local.yaml"
    local.write_text("analyze:\n  propensity:\n")  # YAML null: the whole section is gone
    assert main(["run", "--stage", "analyze", "--conf", str(local)]) == 2
    err = capsys.readouterr().err
    assert "'analyze.propensity'" in err and str(local) in err


def test_bad_log_level_exits_2(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--log-level", "foo", "run"])
    assert exit_info.value.code == 2
    assert "--log-level" in capsys.readouterr().err


def test_the_package_zip_carries_its_defaults_and_loads_them_anywhere(tmp_path):
    archive = package_zip(str(tmp_path / "crmlake.zip"))
    assert "crmlake/conf/base.yaml" in zipfile.ZipFile(archive).namelist()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    probe = "from crmlake.config import load_conf; print(load_conf(environ={}).analyze.propensity.label_days)"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRMLAKE")} | {"PYTHONPATH": archive}
    # -S: no site-packages, so crmlake can only come from the zip (its dependencies are added back by path)
    site = [p for p in sys.path if p.endswith("site-packages")]
    code = f"import sys; sys.path[1:1] = {site!r}; sys.path.insert(0, {archive!r}); " + probe
    out = subprocess.run([sys.executable, "-S", "-c", code], cwd=elsewhere, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "30"


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "Big Audience", "", "a" * 65])
def test_an_audience_name_that_is_not_a_slug_is_refused_at_load_naming_the_key(name):
    entry = f"campaigns.audiences=[{{name: '{name}', rule: 'true', channel: email}}]"
    with pytest.raises(ConfigError, match=r"'campaigns\.audiences\.0\.name'") as error:
        load_conf(overrides=[entry], environ={})
    assert repr(name) in str(error.value)


def test_crmlake_run_with_a_path_for_an_audience_name_exits_2(capsys):
    assert main(["run", "--stage", "acquire", "--set", "campaigns.audiences=[{name: ../x, rule: 'true', channel: email}]"]) == 2
    assert "'campaigns.audiences.0.name' = '../x'" in capsys.readouterr().err


def test_a_slug_audience_name_loads():
    conf = load_conf(overrides=["campaigns.audiences=[{name: win_back-2, rule: 'true', channel: email}]"], environ={})
    assert [a.name for a in conf.campaigns.audiences] == ["win_back-2"]

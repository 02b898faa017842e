"""The scheduler files, for what running them does not show. That both DAGs load in a real
Airflow and that crmlake_daily runs the stages in order for its date is tested by running it
(tests/integration/test_cluster.py), and the business date each run passes, in zones east and
west of UTC, by rendering it (test_deploy_dates.py); a run that succeeds cannot show the trigger
rules."""

import ast
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_the_daily_dag_runs_each_stage_after_the_first_whatever_the_one_before_did():
    tree = ast.parse(open(os.path.join(ROOT, "deploy", "airflow", "crmlake_daily.py")).read())
    stages = next(n.value for n in ast.walk(tree) if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "STAGES")
    [operator] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "SparkSubmitOperator"]
    rule = compile(ast.Expression(next(k.value for k in operator.keywords if k.arg == "trigger_rule")), "trigger_rule", "eval")
    names = {"STAGES": ast.literal_eval(stages)}
    # A stage left partial (exit 4) does not keep the next from publishing what was done.
    assert {stage: eval(rule, {**names, "stage": stage}) for stage in names["STAGES"]} == {
        "acquire": "all_success", "organize": "all_done", "analyze": "all_done", "decide": "all_done"}


def test_every_stage_and_the_whole_run_have_a_spark_submit_entry_point():
    for stage in ("acquire", "organize", "analyze", "decide", "all"):
        tree = ast.parse(open(os.path.join(ROOT, "jobs", f"{stage}.py")).read())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "stage_main"]
        assert [c.args[0].value for c in calls] == [stage]


def test_maintenance_is_scheduled_by_cron_through_the_maintain_command():
    job = ast.parse(open(os.path.join(ROOT, "jobs", "maintain.py")).read())
    calls = [n for n in ast.walk(job) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "main"]
    assert [c.args[0].elts[0].value for c in calls] == ["maintain"]
    cron = open(os.path.join(ROOT, "deploy", "cron", "crmlake.cron")).read()
    assert "crmlake maintain --conf" in cron


def test_the_dags_business_zone_defaults_to_the_packaged_business_timezone():
    base = yaml.safe_load(open(os.path.join(ROOT, "lib", "crmlake", "conf", "base.yaml")))
    for name in ("crmlake_daily", "crmlake_maintain"):
        tree = ast.parse(open(os.path.join(ROOT, "deploy", "airflow", f"{name}.py")).read())
        [lookup] = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and ast.unparse(n.func) == "os.environ.get"]
        assert [ast.literal_eval(a) for a in lookup.args] == ["CRMLAKE_BUSINESS_TIMEZONE", base["business"]["timezone"]], name

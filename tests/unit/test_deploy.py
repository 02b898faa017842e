"""The scheduler files: the Airflow DAG parses and chains the four stages in order."""

import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_airflow_dag_submits_every_stage_in_order():
    source = open(os.path.join(ROOT, "deploy", "airflow", "crmlake_daily.py")).read()
    tree = ast.parse(source)
    stages = next(
        node.value for node in ast.walk(tree)
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "STAGES"
    )
    assert [e.value for e in stages.elts] == ["acquire", "organize", "analyze", "decide"]
    operators = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "SparkSubmitOperator"]
    assert len(operators) == 1  # one operator built per stage in a comprehension
    arguments = {k.arg for k in operators[0].keywords}
    assert {"task_id", "application", "py_files", "application_args"} <= arguments
    assert "upstream >> downstream" in source and "zip(tasks, tasks[1:])" in source
    assert '"--date", "{{ ds }}"' in source
    # A stage left partial (exit 4) does not keep the next from publishing what was done.
    assert "trigger_rule" in arguments and '"all_done"' in source


def test_every_stage_and_the_whole_run_have_a_spark_submit_entry_point():
    for stage in ("acquire", "organize", "analyze", "decide", "all"):
        tree = ast.parse(open(os.path.join(ROOT, "jobs", f"{stage}.py")).read())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "stage_main"]
        assert [c.args[0].value for c in calls] == [stage]


def test_maintenance_is_scheduled_by_cron_and_airflow_through_the_maintain_command():
    dag = open(os.path.join(ROOT, "deploy", "airflow", "crmlake_maintain.py")).read()
    ast.parse(dag)
    assert 'application=f"{HOME}/jobs/maintain.py"' in dag
    job = ast.parse(open(os.path.join(ROOT, "jobs", "maintain.py")).read())
    calls = [n for n in ast.walk(job) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "main"]
    assert [c.args[0].elts[0].value for c in calls] == ["maintain"]
    cron = open(os.path.join(ROOT, "deploy", "cron", "crmlake.cron")).read()
    assert "crmlake maintain --conf" in cron

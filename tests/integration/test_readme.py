"""The README's commands work as written: the cheap ones run here, every other one is parsed
by the very parser it will meet (crmlake, jobs/*.py, the bench, make, MLproject, Airflow), so
the README cannot drift from the code again."""

import glob
import json
import os
import re
import shlex
import subprocess
import sys

import pytest
import yaml

from benchmarks.__main__ import bench_parser   # the repository root is on the path: python -m pytest from it
from crmlake.cli import STAGES, build_parser
from crmlake.jobs import job_parser

pytestmark = pytest.mark.integration
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
VENV_BIN = os.path.join(ROOT, ".venv", "bin")


def readme_commands() -> list[list[str]]:
    """Return every command of the README's bash blocks as argv lists (continuations joined, comments dropped)."""
    text = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            argv = shlex.split(line, comments=True)
            if argv:
                commands.append(argv)
    return commands


def program(argv: list[str]) -> str:
    return os.path.basename(argv[0])


def test_the_readme_shows_commands_of_every_kind():
    kinds = {program(a) for a in readme_commands()}
    assert {"make", "crmlake", "spark-submit", "mlflow"} <= kinds


def test_every_readme_command_parses_with_the_parser_it_meets(capsys, tmp_path):
    unchecked, airflow_commands = [], []
    for argv in readme_commands():
        name, args = program(argv), argv[1:]
        if name == "make":
            dry = subprocess.run(["make", "-n", *args], cwd=ROOT, capture_output=True, text=True, timeout=60)
            assert dry.returncode == 0, f"{' '.join(argv)}: {dry.stderr}"
        elif name == "crmlake":
            build_parser().parse_args(args)
        elif name == "spark-submit":
            script = next(a for a in args if a.endswith(".py"))
            assert os.path.isfile(os.path.join(ROOT, script)), script
            job_parser(os.path.basename(script)[:-3]).parse_args(args[args.index(script) + 1:])
        elif name in ("python", "python3") and args[:2] == ["-m", "benchmarks"]:
            bench_parser().parse_args(args[2:])
        elif name == "mlflow":
            project = yaml.safe_load(open(os.path.join(ROOT, args[1], "MLproject")))
            entry = project["entry_points"][args[args.index("-e") + 1]]
            given = {args[i + 1].split("=")[0] for i, a in enumerate(args) if a == "-P"}
            assert given <= set(entry["parameters"]), (argv, entry["parameters"])
        elif name == "airflow":
            airflow_commands.append(args)
        elif name == "export":
            # The Airflow Variables and connections set for the DAGs are ones they read.
            dags = "".join(open(path).read() for path in glob.glob(os.path.join(ROOT, "deploy", "airflow", "*.py")))
            for name_value in args:
                variable = re.match(r"AIRFLOW_(?:VAR|CONN)_(\w+)=", name_value)
                assert variable is None or f"'{variable[1].lower()}'" in dags or f'"{variable[1].lower()}"' in dags, name_value
        else:
            unchecked.append(argv)
    assert unchecked == []  # a new kind of command in the README needs a check here
    # Airflow's commands, by Airflow's own parser in its virtualenv (make airflow-venv).
    parse = "import sys, json; from airflow.cli.cli_parser import get_parser\nfor a in json.loads(sys.argv[1]): get_parser().parse_args(a)"
    done = subprocess.run([os.path.join(ROOT, ".venv-airflow", "bin", "python"), "-c", parse, json.dumps(airflow_commands)],
                          env={**os.environ, "AIRFLOW_HOME": str(tmp_path)}, capture_output=True, text=True, timeout=120)
    assert airflow_commands and done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("command", ["generate", "run", "backfill", "serve"])
def test_crmlake_help_of_each_command(capsys, command):
    with pytest.raises(SystemExit) as done:
        build_parser().parse_args([command, "--help"])
    assert done.value.code == 0
    assert f"usage: crmlake {command}" in capsys.readouterr().out


@pytest.mark.parametrize("stage", [*STAGES, "all"])
def test_every_job_entry_point_has_help(stage):
    out = subprocess.run([sys.executable, os.path.join(ROOT, "jobs", f"{stage}.py"), "--help"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and f"usage: jobs/{stage}.py" in out.stdout, out.stderr


def test_make_bench_passes_its_arguments_through_as_the_readme_says():
    argv = next(a for a in readme_commands() if a[:2] == ["make", "bench"] and any(x.startswith("ARGS=") for x in a))
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "crmlake bench: lake" in done.stdout
    assert "crmlake bench: acquire" not in done.stdout  # --only lake reached the bench


def test_mlflow_run_runs_a_stage_with_the_venv_as_the_readme_says(tmp_path):
    argv = next(a for a in readme_commands() if program(a) == "mlflow")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CRMLAKE", "MLFLOW"))} | {
        "CRMLAKE__PATHS__LANDING": str(tmp_path / "landing"), "CRMLAKE__PATHS__LAKE": str(tmp_path / "lake"),
        "CRMLAKE__PATHS__EXPORTS": str(tmp_path / "exports"), "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "CRMLAKE__SPARK__MASTER": "local[1]",
    }
    (tmp_path / "landing").mkdir()   # an empty landing zone (one that is not there is a configuration error)
    done = subprocess.run([os.path.join(VENV_BIN, "mlflow"), *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert os.path.isdir(tmp_path / "lake" / "bronze" / "orders")  # the stage ran: an empty landing zone gives empty tables

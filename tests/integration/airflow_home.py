"""A throwaway Airflow for the tests: the real one of ``.venv-airflow`` (``make airflow-venv``), run
through its command line as an operator would, with its own AIRFLOW_HOME, a SQLite metadata
database and ``deploy/airflow/`` as its DAGs folder."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
AIRFLOW = os.path.join(ROOT, ".venv-airflow", "bin", "airflow")

# A cluster policy, Airflow's way for a deployment to change tasks without touching the DAG
# files: here a failed task fails at once instead of waiting out the DAG's retry delays.
NO_RETRIES = "def task_policy(task):\n    task.retries = 0\n"


def airflow_home(path, variables: dict[str, str], connections: dict[str, str], environ: dict[str, str]) -> dict[str, str]:
    """Create an Airflow home in ``path`` (metadata database migrated, no retries) whose Airflow
    Variables and connections (URIs) are the given ones; return the environment to run it in."""
    if not os.access(AIRFLOW, os.X_OK):
        pytest.fail(f"{AIRFLOW} is missing: make airflow-venv builds Airflow's virtualenv")
    os.makedirs(os.path.join(path, "config"))
    with open(os.path.join(path, "config", "airflow_local_settings.py"), "w") as fh:
        fh.write(NO_RETRIES)
    env = {
        **environ,
        "AIRFLOW_HOME": str(path),
        "AIRFLOW__CORE__DAGS_FOLDER": os.path.join(ROOT, "deploy", "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        **{f"AIRFLOW_VAR_{name.upper()}": value for name, value in variables.items()},
        **{f"AIRFLOW_CONN_{name.upper()}": uri for name, uri in connections.items()},
    }
    airflow(env, "db", "migrate")
    return env


def airflow(env: dict[str, str], *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    """Run ``airflow *args`` in ``env``; fail the test with its output if it fails and ``check``."""
    done = subprocess.run([AIRFLOW, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        pytest.fail(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def airflow_json(env: dict[str, str], *args: str) -> list | dict:
    """Return what ``airflow *args -o json`` prints (its last line: warnings come before it)."""
    return json.loads(airflow(env, *args, "-o", "json").stdout.strip().splitlines()[-1])

"""The Airflow DAGs' business dates, in the real Airflow of ``.venv-airflow`` (no Spark): for a
business zone east of UTC and one west of it (``CRMLAKE_BUSINESS_TIMEZONE``, as the DAG
processor reads it), the runs Airflow makes of crmlake_daily's schedule (a backfill's, which
follow the timetable as the scheduler's do) start at 02:30 local after their business date has
ended, and their first task is rendered with that date as ``--date``."""

import datetime as dt
import json
import os
import re
import subprocess
from zoneinfo import ZoneInfo

import pytest

from integration.airflow_home import AIRFLOW, ROOT, airflow_home

# Airflow's command line, its commands run one after the other in one process of its virtualenv
# as its ``airflow`` entry point runs one (a process per command costs three seconds); prints
# what each printed, as a JSON list.
COMMANDS = """
import contextlib, io, json, sys
from airflow.cli import cli_parser
from airflow.cli.utils import redirect_stdout_log_handlers_to_stderr

parser = cli_parser.get_parser()
redirect_stdout_log_handlers_to_stderr()
printed = []
for argv in json.load(sys.stdin):
    with contextlib.redirect_stdout(io.StringIO()) as out:
        args = parser.parse_args(argv)
        args.func(args)
    printed.append(out.getvalue())
print(json.dumps(printed))
"""

# Logical dates Airflow backfills, midnight UTC to midnight UTC: around 8 March 2026, when Los
# Angeles moves its clocks from 02:00 to 03:00 (Taipei keeps UTC+8 all year).
DAILY_FROM, DAILY_TO = "2026-03-06", "2026-03-10"
WEEKLY_FROM, WEEKLY_TO = "2026-02-28", "2026-03-10"

# Run start, local time -> the --date it passes; by hand from each zone's offset.
DAILY_RUNS = {
    "Asia/Taipei": {
        "2026-03-08T02:30:00+08:00": "2026-03-07",
        "2026-03-09T02:30:00+08:00": "2026-03-08",
        "2026-03-10T02:30:00+08:00": "2026-03-09",
        "2026-03-11T02:30:00+08:00": "2026-03-10",
    },
    "America/Los_Angeles": {
        "2026-03-07T02:30:00-08:00": "2026-03-06",
        "2026-03-08T03:30:00-07:00": "2026-03-07",  # there is no 02:30 that morning
        "2026-03-09T02:30:00-07:00": "2026-03-08",  # a day of 23 hours
        "2026-03-10T02:30:00-07:00": "2026-03-09",
    },
}
# The weekly maintenance's starts, local time: Sundays 05:30, three hours after the daily run.
WEEKLY_RUNS = {
    "Asia/Taipei": ["2026-03-01T05:30:00+08:00", "2026-03-08T05:30:00+08:00"],
    "America/Los_Angeles": ["2026-03-01T05:30:00-08:00", "2026-03-08T05:30:00-07:00"],
}


def airflow_commands(env: dict[str, str], *commands: list[str]) -> list[str]:
    """Run the Airflow ``commands`` (argv lists) in order in ``env``; return what each printed."""
    done = subprocess.run([os.path.join(os.path.dirname(AIRFLOW), "python"), "-c", COMMANDS], input=json.dumps(commands),
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        pytest.fail(f"airflow {commands} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def printed_json(printed: str) -> list | dict:
    """Return what a command run with ``-o json`` printed (its last line: warnings come before it)."""
    return json.loads(printed.strip().splitlines()[-1])


@pytest.fixture(scope="module", params=sorted(DAILY_RUNS))
def scheduled(request, tmp_path_factory):
    """For one business zone, in an Airflow whose DAG processor has it as
    ``CRMLAKE_BUSINESS_TIMEZONE``: the import errors and DAGs Airflow lists, and each DAG's
    backfilled runs, start in that zone -> run id."""
    zone = request.param
    # An Airflow of the test's own: none of the caller's settings (a default_timezone would move
    # the backfills' dates).
    environ = {name: value for name, value in os.environ.items() if not name.startswith("AIRFLOW")}
    env = airflow_home(tmp_path_factory.mktemp("airflow"), variables={}, connections={},
                       environ={**environ, "CRMLAKE_BUSINESS_TIMEZONE": zone})
    *_, errors, dags, daily, weekly = airflow_commands(
        env, ["dags", "reserialize"],
        ["backfill", "create", "--dag-id", "crmlake_daily", "--from-date", DAILY_FROM, "--to-date", DAILY_TO],
        ["backfill", "create", "--dag-id", "crmlake_maintain", "--from-date", WEEKLY_FROM, "--to-date", WEEKLY_TO],
        ["dags", "list-import-errors", "-o", "json"], ["dags", "list", "-o", "json"],
        ["dags", "list-runs", "crmlake_daily", "-o", "json"], ["dags", "list-runs", "crmlake_maintain", "-o", "json"])
    runs = {dag_id: {dt.datetime.fromisoformat(run["run_after"]).astimezone(ZoneInfo(zone)).isoformat(): run["run_id"]
                     for run in printed_json(printed)}
            for dag_id, printed in (("crmlake_daily", daily), ("crmlake_maintain", weekly))}
    return {"zone": zone, "env": env, "errors": printed_json(errors), "dags": printed_json(dags), "runs": runs}


def test_both_dags_load_with_the_business_zone(scheduled):
    assert scheduled["errors"] == []
    assert {dag["dag_id"] for dag in scheduled["dags"]} == {"crmlake_daily", "crmlake_maintain"}


def test_each_daily_run_starts_at_0230_local_and_passes_the_business_date_just_ended(scheduled):
    starts, run_ids = zip(*scheduled["runs"]["crmlake_daily"].items())
    rendered = airflow_commands(scheduled["env"], *(["tasks", "render", "crmlake_daily", "acquire", run_id] for run_id in run_ids))
    dates = [re.findall(r"'--date', '([^']*)'", printed) for printed in rendered]
    assert dict(zip(starts, dates)) == {start: [date] for start, date in DAILY_RUNS[scheduled["zone"]].items()}


def test_the_weekly_maintenance_starts_on_sunday_at_0530_local(scheduled):
    assert sorted(scheduled["runs"]["crmlake_maintain"]) == WEEKLY_RUNS[scheduled["zone"]]

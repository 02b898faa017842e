"""What every spark-submit entry point in jobs/ does: parse --conf/--set/--date, run one stage
(jobs/<stage>.py) or all four in order in one Spark application (jobs/all.py).

Exit codes follow the CLI: 0 success, 1 the job failed (reason on one line), 2 misuse,
3 the lake busy with another writer, 4 done but some pieces failed (named).
"""

from __future__ import annotations

import argparse
from crmlake.cli import STAGES, add_log_level_argument, add_run_arguments, business_yesterday, exit_code_of, finish, run_stages
from crmlake.config import load_conf
from crmlake.log import setup_logging


def job_parser(stage: str) -> argparse.ArgumentParser:
    """Return the argument parser of ``jobs/<stage>.py`` (a stage, or "all")."""
    if stage not in (*STAGES, "all"):
        raise ValueError(f"unknown stage {stage!r}")
    what = f"{' -> '.join(STAGES)} in one Spark application (a failed stage stops the rest)" if stage == "all" else f"{stage} stage"
    parser = argparse.ArgumentParser(
        prog=f"jobs/{stage}.py",
        description=f"crmlake {what} as a spark-submit job: spark-submit jobs/{stage}.py --conf conf/local.yaml --date YYYY-MM-DD",
    )
    add_run_arguments(parser)
    add_log_level_argument(parser)
    return parser


def stage_main(stage: str, argv: list[str] | None = None) -> int:
    """Run ``stage`` (or "all": every stage in order, one application) as a spark-submit job; return the exit code."""
    stages = list(STAGES) if stage == "all" else [stage]
    args = job_parser(stage).parse_args(argv)
    setup_logging(args.log_level)

    def run() -> int:
        conf = load_conf(args.conf, args.overrides)
        return finish(conf, *run_stages(conf, stages, args.date or business_yesterday(conf), app=stage), f"crmlake {stage}")

    return exit_code_of(run, f"crmlake {stage}")

"""What every section of the bench shares: the first day of its synthetic data, a stopwatch, and
the steps and records a stage reported.
"""

from __future__ import annotations

import datetime as dt
import re
import time

FIRST_DAY = dt.date(2026, 10, 1)
RUN_DATE_SUFFIX = re.compile(r" (for|up to) \d{4}-\d{2}-\d{2}$")  # a step's name ends with its run date


def seconds(action) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def listed_steps(steps: list[tuple[str, float]]) -> str:
    """The steps a stage logged (see :func:`crmlake.log.step_times`), each with its seconds, without the run date."""
    return ", ".join(f"{RUN_DATE_SUFFIX.sub('', step)} {took:.1f}s" for step, took in steps)


def records_read(facts: dict) -> int:
    """Records one source's acquire read, from its facts: accepted, quarantined and duplicates."""
    return facts["accepted"] + facts["quarantined"] + facts["duplicates"]

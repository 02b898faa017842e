"""Daily section: the scheduled day after a short and a long history (3 and 15 days by default),
each history built day by day as the schedule builds it, every day at one volume (about 30,000
clickstream events a day by default). The defaults keep the section within about 25 minutes on
two cores: a day's acquire and organize take about 50 s even at 25,000 events, so 10 and 60 days
(or days of 300,000 events, about 2.5 min each) would take over an hour. One landing zone is
simulated for the longest history and the timed day (crmlake.generate: about 70% of the members
signed up before its first day, the other 30% join on days spread over it, so the members grow day
by day). Each history day is acquired and organized by its own runs, so the lake holds the files
and Delta log of real daily merges. A shorter history starts on a later day of the same zone: its
clicks, orders, interactions and campaign events from that day on, and the members' profiles
delivered before it in its first run (a lake started that day loads the CRM's members), so the
timed day's files are the same after either history (they carry the erase request the simulation
plants on its last day, so that day's organize erases an account and rebuilds the identity map).
The timed day is then acquired and organized three times, each on its own copy of the lake its
history left; per stage, the median (min-max) and the steps of the median run are printed, and
the ratio long / short (aim for organize: <= 1.10).
"""

from __future__ import annotations

import datetime as dt
import os
import shutil
from dataclasses import dataclass

from pyspark.sql import SparkSession

from benchmarks.common import listed_steps, records_read, seconds
from crmlake.config import Conf, load_conf
from crmlake.generate.landing import SOURCES, write_landing
from crmlake.lake import Lake
from crmlake.log import step_times

END = dt.date(2026, 11, 21)  # the timed day
EVENTS_PER_MEMBER_DAY = 1.85  # the simulation's clickstream events per member on the timed day (a Saturday: weekends bring 25% more)


@dataclass(frozen=True)
class StageRun:
    """One timed run of a stage: its seconds and the steps it logged."""

    seconds: float
    steps: list[tuple[str, float]]


@dataclass(frozen=True)
class History:
    """A lake built day by day: its days, the clickstream events and members it holds, and the
    seconds its days took (acquire and organize)."""

    days: int
    events: int
    members_first_day: int
    members: int
    seconds: float


def bench_daily(spark: SparkSession, conf_file: str | None, tmp: str, daily_events: int, history_days: list[int], repeats: int = 3) -> list[str]:
    """Time the day after each length of history in ``history_days`` (about ``daily_events``
    clickstream events every day), ``repeats`` times per stage; return printable lines with the
    ratio of each stage's median after the longest history to after the shortest."""
    world = f"{tmp}/daily-world"
    customers = max(100, round(daily_events / EVENTS_PER_MEMBER_DAY))
    write_landing(spark, world, customers, max(history_days) + 1, END, 13, load_conf(conf_file).business.timezone)
    lines, medians = [], {}
    for days in sorted(set(history_days)):
        root = f"{tmp}/daily-{days}"
        link_landing(world, f"{root}/landing", END - dt.timedelta(days=days))
        history = build_history(spark, daily_conf(conf_file, root, "lake"), days)
        acquires, organizes, events = timed_day(spark, conf_file, root, repeats)
        medians[days] = (median_run(acquires).seconds, median_run(organizes).seconds)
        lines += [
            f"{f'history of {days} days':<28}: built day by day, {history.seconds / days:.1f}s a day; {history.events:,} events, "
            f"members {history.members_first_day:,} after its first day, {history.members:,} after its last",
            f"{f'day after {days} days':<28}: {events:,} events; acquire {spread(acquires)}, organize {spread(organizes)} (median of {repeats}, min-max)",
            f"{'  acquire steps (median)':<28}: {listed_steps(median_run(acquires).steps)}",
            f"{'  organize steps (median)':<28}: {listed_steps(median_run(organizes).steps)}",
        ]
    short, long = min(history_days), max(history_days)
    if short != long:
        lines.append(
            f"{f'ratio {long} / {short} days':<28}: acquire {medians[long][0] / medians[short][0]:.2f}, "
            f"organize {medians[long][1] / medians[short][1]:.2f} (aim: organize <= 1.10)"
        )
    return lines


def daily_conf(conf_file: str | None, root: str, lake: str) -> Conf:
    """Return the conf of the history under ``root``: its landing zone and exports, and the lake folder ``lake`` in it."""
    return load_conf(conf_file, [f"paths.landing={root}/landing", f"paths.lake={root}/{lake}", f"paths.exports={root}/exports"])


def link_landing(world: str, landing: str, first_day: dt.date) -> None:
    """Hard-link the landing zone ``world`` into ``landing`` as a lake started on ``first_day``
    receives it: every customers file, and the other sources' files dated from ``first_day`` on."""
    for source in SOURCES:
        for folder in sorted(os.listdir(os.path.join(world, source))):
            if source == "customers" or dt.date.fromisoformat(folder.removeprefix("dt=")) >= first_day:
                shutil.copytree(os.path.join(world, source, folder), os.path.join(landing, source, folder), copy_function=os.link)


def build_history(spark: SparkSession, conf: Conf, days: int) -> History:
    """Acquire and organize each of the ``days`` days before the timed day in its own runs, as the
    schedule does; return what the lake holds after them."""
    from crmlake.acquire import job as acquire
    from crmlake.organize import job as organize

    lake, took, members_first_day = Lake(spark, conf), 0.0, 0
    for day in (END - dt.timedelta(days=days - n) for n in range(days)):
        took += seconds(lambda: (acquire.run(spark, conf, day), organize.run(spark, conf, day)))
        members_first_day = members_first_day or lake.read("silver.customers").count()
    return History(days, lake.read("bronze.clickstream").count(), members_first_day, lake.read("silver.customers").count(), took)


def timed_day(spark: SparkSession, conf_file: str | None, root: str, repeats: int) -> tuple[list[StageRun], list[StageRun], int]:
    """Acquire and organize the timed day ``repeats`` times, each on a fresh copy of the lake
    ``<root>/lake`` (its history); return the acquire runs, the organize runs and the day's events."""
    from crmlake.acquire import job as acquire
    from crmlake.organize import job as organize

    acquires, organizes, acquired = [], [], {}
    for n in range(repeats):
        shutil.copytree(f"{root}/lake", f"{root}/lake-{n}")
        conf = daily_conf(conf_file, root, f"lake-{n}")
        with step_times() as steps:
            took = seconds(lambda: acquired.update(acquire.run(spark, conf, END)))
        acquires.append(StageRun(took, steps))
        with step_times() as steps:
            took = seconds(lambda: organize.run(spark, conf, END))
        organizes.append(StageRun(took, steps))
        shutil.rmtree(f"{root}/lake-{n}")
    return acquires, organizes, records_read(acquired["clickstream"])


def median_run(runs: list[StageRun]) -> StageRun:
    """Return the run of the median seconds (the lower middle one of an even count)."""
    return sorted(runs, key=lambda run: run.seconds)[(len(runs) - 1) // 2]


def spread(runs: list[StageRun]) -> str:
    """Return the runs' median seconds with their min and max, e.g. "12.3s (11.9-13.0)"."""
    took = [run.seconds for run in runs]
    return f"{median_run(runs).seconds:.1f}s ({min(took):.1f}-{max(took):.1f})"

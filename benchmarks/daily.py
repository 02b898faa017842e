"""Daily section: one scheduled day at a constant daily volume after a short and a long history
(30 and 120 days by default). The same customers are simulated over each history plus one
day; the history is acquired and organized in one catch-up run (not timed), then the last
day is acquired and organized as the daily schedule would, each stage timed. The ratio
long / short says whether a day's cost follows the day's data or the lake's age; each
stage's steps are printed with their seconds.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import SparkSession

from benchmarks.common import listed_steps, records_read, seconds
from crmlake.config import load_conf
from crmlake.lake import Lake
from crmlake.log import step_times


def bench_daily(spark: SparkSession, conf_file: str | None, tmp: str, daily_events: int, history_days: list[int]) -> list[str]:
    """Time one day's acquire and organize after each length of history in ``history_days``
    (about ``daily_events`` clickstream events that day); return printable lines with the
    ratio of each stage's time after the longest history to after the shortest."""
    from crmlake.acquire import job as acquire
    from crmlake.generate.landing import write_landing
    from crmlake.organize import job as organize

    end = dt.date(2026, 11, 21)
    customers = max(100, daily_events * 60 // 75)  # the simulation: about 75 events per person over 60 days
    lines, took = [], {}
    for days in history_days:
        root = f"{tmp}/daily-{days}"
        conf = load_conf(conf_file, [f"paths.landing={root}/landing", f"paths.lake={root}/lake", f"paths.exports={root}/exports"])
        write_landing(spark, conf.landing_root, customers, days + 1, end, 13, conf.business.timezone)
        acquire.run(spark, conf, end - dt.timedelta(days=1))  # the history, caught up in one run
        organize.run(spark, conf, end - dt.timedelta(days=1))
        acquired: dict = {}
        with step_times() as steps:
            took[days] = (seconds(lambda: acquired.update(acquire.run(spark, conf, end))), seconds(lambda: organize.run(spark, conf, end)))
        day_events = records_read(acquired["clickstream"])
        history_events = Lake(spark, conf).read("bronze.clickstream").count() - acquired["clickstream"]["accepted"]
        lines += [f"day after {days:>3} days history : {day_events:,} events that day ({history_events:,} in the history); "
                  f"acquire {took[days][0]:.1f}s, organize {took[days][1]:.1f}s",
                  f"{'  its steps':<28}: {listed_steps(steps)}"]
    short, long = min(history_days), max(history_days)
    if short != long:
        lines.append(f"{f'ratio {long} / {short} days':<28}: acquire {took[long][0] / took[short][0]:.2f}, organize {took[long][1] / took[short][1]:.2f} (aim <= 1.15)")
    return lines

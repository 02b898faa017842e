"""``make bench`` (``python -m benchmarks`` from the repository root): figures measured against a
peer in the same run (never asserted in tests). One module per section; each module's first
paragraph says what it measures, and ``--help`` prints them all.

The bench sits outside the runtime package: it may import any stage's internals to time them,
and nothing in ``lib/crmlake`` imports it (tests/unit/test_house.py).
"""

from __future__ import annotations

import argparse
import tempfile

from benchmarks import acquire, analyze, daily, identity, lake, organize, scale
from crmlake.config import load_conf
from crmlake.log import setup_logging
from crmlake.session import spark_session

DESCRIPTION = "\n\n".join(
    ["``make bench``: figures measured against a peer in the same run (never asserted in tests)."]
    + [section.__doc__.strip() for section in (acquire, organize, identity, daily, analyze, lake, scale)]
)


def bench_parser() -> argparse.ArgumentParser:
    """Return the argument parser of ``python -m benchmarks`` (``make bench ARGS="..."``)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--conf", default=None, help="environment file (e.g. conf/local.yaml)")
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows per write (default 2,000,000)")
    parser.add_argument("--days", type=int, default=30, help="date partitions the rows spread over (default 30)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each write (default 3)")
    parser.add_argument("--events", default="1000000,10000000", help="clickstream sizes for the acquire bench, comma-separated (default 1M and 10M)")
    parser.add_argument("--edges", default="1000000,5000000", help="identity graph sizes for the organize bench, comma-separated (default 1M and 5M)")
    parser.add_argument("--session-events", type=int, default=10_000_000, help="events sessionized in the organize bench (default 10,000,000; 0: none)")
    parser.add_argument("--daily-events", type=int, default=300_000, help="clickstream events a day in the daily-run bench, on its history's days and its timed day (default 300,000, the volume of organize's aim; a day costs 3-4 minutes on 2 cores)")
    parser.add_argument("--history-days", default="2,6", help="days of history built day by day before the daily-run bench's timed day, comma-separated (default 2 and 6)")
    parser.add_argument("--daily-repeats", type=int, default=3, help="timed runs of the daily-run bench's day after each history, median printed (default 3)")
    parser.add_argument("--ltv-persons", default="10000,100000,1000000", help="persons for the lifetime-value fit bench, comma-separated")
    parser.add_argument("--analyze-persons", default="100000,1000000", help="persons for the analyze-stage bench, comma-separated (default 100k and 1M)")
    parser.add_argument("--analyze-sample", type=int, default=6_000, help="customers generated for the analyze-stage bench before scaling (default 6,000: enough contacted and control persons for two audiences' uplift models to train on the sample)")
    parser.add_argument("--identity-customers", type=int, default=3_000, help="customers generated for the identity bench (crmlake against Splink; default 3,000)")
    parser.add_argument("--identity-days", type=int, default=30, help="days of activity generated for the identity bench (default 30)")
    parser.add_argument("--scale-customers", type=int, default=1_000, help="customers generated for the scale model's runs (default 1,000)")
    parser.add_argument("--scale-days", type=int, default=14, help="days generated for the scale model's runs (default 14)")
    parser.add_argument("--only", choices=("lake", "acquire", "daily", "organize", "identity", "analyze", "scale"), default=None, help="run one section only")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks and print figures with ratios against their peers."""
    args = bench_parser().parse_args(argv)
    setup_logging("WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        conf = load_conf(args.conf, [f"paths.lake={tmp}/lake"])
        with spark_session(conf, "bench") as spark:
            if args.only in (None, "lake"):
                print("\n".join(["", "crmlake bench: lake", *lake.bench_lake(spark, args.conf, tmp, args.rows, args.days, args.repeats)]), flush=True)
                print("\n".join(["", "crmlake bench: lake, every row in one day", *lake.bench_one_day(spark, args.conf, tmp, args.rows, args.repeats)]), flush=True)
            if args.only in (None, "acquire"):
                for events in (int(e) for e in args.events.split(",") if e.strip()):
                    print("\n".join(["", f"crmlake bench: acquire, about {events:,} events", *acquire.bench_acquire(spark, args.conf, tmp, events)]), flush=True)
            if args.only in (None, "daily"):
                histories = [int(d) for d in args.history_days.split(",") if d.strip()]
                print("\n".join(["", f"crmlake bench: a daily run, about {args.daily_events:,} events a day", *daily.bench_daily(spark, args.conf, tmp, args.daily_events, histories, args.daily_repeats)]), flush=True)
            if args.only in (None, "organize"):
                edge_counts = [int(e) for e in args.edges.split(",") if e.strip()]
                print("\n".join(["", "crmlake bench: organize", *organize.bench_organize(spark, args.conf, tmp, edge_counts, args.session_events)]), flush=True)
            if args.only in (None, "identity"):
                print("\n".join(["", "crmlake bench: identity, crmlake against Splink", *identity.bench_identity_quality(spark, args.conf, tmp, args.identity_customers, args.identity_days)]), flush=True)
            if args.only in (None, "analyze"):
                persons = [int(p) for p in args.ltv_persons.split(",") if p.strip()]
                if persons:
                    print("\n".join(["", "crmlake bench: analyze, lifetime-value fit", *analyze.bench_lifetime_value(spark, persons)]), flush=True)
                scaled = [int(p) for p in args.analyze_persons.split(",") if p.strip()]
                if scaled:
                    print("\ncrmlake bench: analyze stage", flush=True)
                    for lines in analyze.bench_analyze(spark, args.conf, tmp, scaled, args.analyze_sample, 60):
                        print("\n".join(lines), flush=True)
            if args.only in (None, "scale"):
                print("\n".join(["", "crmlake bench: scale model, T(P) from event logs", *scale.bench_scale(spark, args.conf, tmp, args.scale_customers, args.scale_days)]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

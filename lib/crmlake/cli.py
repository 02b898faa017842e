"""The ``crmlake`` command: generate sample data, run stages, print where outputs are.

Exit codes: 0 success, 1 a job failed (the reason on one line), 2 misuse (bad arguments,
configuration or input that names the file or key), 3 another writer held the lake's lease
longer than ``lake.lease.wait_seconds`` (named on stderr), 4 the stages ran to their end but
some pieces failed (a model, an audience, an erasure: named on stderr, recorded in
gold.job_runs as ``partial``; the next run tries them again).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from contextlib import contextmanager
from typing import Iterator
from zoneinfo import ZoneInfo

from crmlake.config import Conf, ConfigError, load_conf
from crmlake.generate.landing import LandingExistsError, write_landing
from crmlake.isolation import reason_of
from crmlake.lease import LeaseHeldError, lake_lease
from crmlake.log import get_logger, setup_logging

STAGES = ("acquire", "organize", "analyze", "decide")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
log = get_logger("cli")


class UsageError(ValueError):
    """The command line is wrong; the message says how."""


def business_yesterday(conf: Conf) -> dt.date:
    """Return yesterday's date in the business time zone (the default run date)."""
    return dt.datetime.now(ZoneInfo(conf.business.timezone)).date() - dt.timedelta(days=1)


def parse_date(text: str) -> dt.date:
    """Parse YYYY-MM-DD for argparse, with an error that shows the expected form."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date of the form YYYY-MM-DD") from None


def add_log_level_argument(parser: argparse.ArgumentParser) -> None:
    """Add --log-level (crmlake's own logs; Spark's is conf spark.log_level), shared by the CLI and jobs."""
    parser.add_argument("--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS,
                        help="how much crmlake logs: DEBUG, INFO, WARNING or ERROR (default INFO)")


def add_conf_arguments(parser: argparse.ArgumentParser) -> None:
    """Add --conf and --set, shared by every command and job."""
    parser.add_argument("--conf", default=None, help="environment file merged over the packaged defaults (conf/base.yaml), e.g. conf/local.yaml")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="override one configuration key, e.g. --set paths.lake=/data/lake (repeatable; env CRMLAKE__PATHS__LAKE also works)",
    )


def add_subject_arguments(parser: argparse.ArgumentParser, account: str, email: str) -> None:
    """Add --conf/--set and the privacy request's subject: --account or --email (one of them,
    required), with the command's own ``account`` and ``email`` help."""
    add_conf_arguments(parser)
    subject = parser.add_mutually_exclusive_group(required=True)
    subject.add_argument("--account", help=account)
    subject.add_argument("--email", help=f"{email}; an email several persons' accounts hold (a family mailbox) is refused: then name the member by --account")


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the arguments of a stage run: --date (and --conf/--set)."""
    add_conf_arguments(parser)
    parser.add_argument("--date", type=parse_date, default=None, help="business date processed, YYYY-MM-DD (default: yesterday in business.timezone)")
    parser.add_argument(
        "--full-refresh", dest="overrides", action="append_const", const="organize.full_refresh=true",
        help="organize: rebuild the silver tables from all of bronze instead of merging only what changed since the last run",
    )


def run_stages(conf: Conf, stages: list[str], run_dates: list[dt.date] | dt.date, app: str) -> tuple[dict, dict]:
    """Run ``stages`` in order for each of ``run_dates`` in one Spark session; return the last
    date's summaries, and every piece that failed on any date (``"<stage> <date>: <piece>"`` ->
    why; :mod:`crmlake.isolation`)."""
    from crmlake.runs import run_stage
    from crmlake.session import spark_session

    dates = run_dates if isinstance(run_dates, list) else [run_dates]
    summaries, failed = {}, {}
    with spark_session(conf, app) as spark, writing(spark, conf, f"run {','.join(stages)}"):
        for run_date in dates:
            summaries = {stage: run_stage(spark, conf, stage, run_date) for stage in stages}
            failed.update({f"{stage} {run_date}: {piece}": why for stage, summary in summaries.items() for piece, why in (summary.get("failed") or {}).items()})
    return summaries, failed


def finish(conf: Conf, summaries: dict, failed: dict, label: str = "crmlake") -> int:
    """Print where the outputs are, and the pieces that failed; return the exit code: 0, or 4
    when some pieces failed (the rest ran; the next run tries them again)."""
    print_outputs(conf, summaries)
    for piece, why in failed.items():
        print(f"{label}: not done: {piece}: {why}", file=sys.stderr)
    return 4 if failed else 0


@contextmanager
def writing(spark, conf: Conf, owner: str) -> Iterator[None]:
    """Hold the lake's lease (:mod:`crmlake.lease`) while the block writes, after removing
    what killed runs left (staged files, checkpoints): the start of every writing command."""
    from crmlake.lake import Lake

    with lake_lease(conf, owner):
        removed = Lake(spark, conf).remove_leftovers()
        if any(removed.values()):
            log.info("removed the leftovers of killed runs: %s", removed)
        yield


def print_outputs(conf: Conf, summaries: dict) -> None:
    """Print where a run's outputs are: tables, MLflow, exports."""
    print("\ncrmlake outputs")
    print(f"  Delta tables : {conf.lake_root}/{{bronze,silver,gold}}/<table>")
    print(f"  MLflow       : {conf.mlflow.tracking_uri}  (mlflow ui --backend-store-uri {conf.mlflow.tracking_uri})")
    for path in (summaries.get("decide") or {}).get("exports", []):
        print(f"  audience     : {path}")
    for path in (summaries.get("analyze") or {}).get("reports", []):
        print(f"  report       : {path}")


def cmd_generate(args) -> int:
    conf = load_conf(args.conf, args.overrides)
    landing = args.landing or conf.landing_root
    end = args.end or business_yesterday(conf)
    if args.skip_if_present and any(os.path.isdir(f"{landing}/{s}") for s in ("clickstream", "orders", "customers")):
        print(f"sample data already in {landing}; leaving it (crmlake generate --force replaces it)")
        return 0
    from crmlake.session import spark_session

    with spark_session(conf, "generate") as spark:
        summary = write_landing(spark, landing, args.customers, args.days, end, args.seed, conf.business.timezone, force=args.force)
    print(json.dumps({"landing": landing, **{k: summary[k] for k in ("start", "end", "accounts", "sessions", "defects")}}, indent=2))
    return 0


def cmd_run(args) -> int:
    conf = load_conf(args.conf, args.overrides)
    run_date = args.date or business_yesterday(conf)
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    return finish(conf, *run_stages(conf, stages, run_date, app=args.stage))


def cmd_backfill(args) -> int:
    if args.date_to < args.date_from:
        raise UsageError(f"--to {args.date_to} is before --from {args.date_from}")
    conf = load_conf(args.conf, args.overrides)
    days = (args.date_to - args.date_from).days + 1
    dates = [args.date_from + dt.timedelta(days=i) for i in range(days)]
    stages = list(STAGES) if args.stage == "all" else [args.stage]
    return finish(conf, *run_stages(conf, stages, dates, app="backfill"))


def cmd_serve(args) -> int:
    from crmlake.serve import serve

    conf = load_conf(args.conf, args.overrides)
    server = serve(conf.exports_root, args.host, args.port)
    print(f"crmlake page: http://{args.host}:{server.server_address[1]}/  (exports: {conf.exports_root}; Ctrl-C stops)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def cmd_erase(args) -> int:
    from crmlake.lake import Lake
    from crmlake.privacy import apply_erasures, pending_accounts_with_email, request_erasure
    from crmlake.subjects import SharedMailboxError, one_subject
    from crmlake.session import spark_session

    conf = load_conf(args.conf, args.overrides)
    with spark_session(conf, "erase") as spark, writing(spark, conf, "erase"):
        lake = Lake(spark, conf)
        # An erasure a killed run left half done no longer shows in the tables; its plan does.
        try:
            accounts = [args.account] if args.account else one_subject(lake, args.email) or pending_accounts_with_email(conf.lake_root, args.email)
        except SharedMailboxError as exc:
            raise UsageError(str(exc)) from exc
        if not accounts:
            raise UsageError(f"no account in bronze.customers holds the email {args.email!r}")
        request_erasure(lake, accounts, dt.datetime.now(dt.timezone.utc))
        done = apply_erasures(lake, conf)
        if done["failed"]:
            raise RuntimeError("; ".join(f"{piece}: {why}" for piece, why in done["failed"].items()))
        receipts = lake.read("gold.erasure_log").orderBy("erased_at", ascending=False).limit(done["erased_accounts"])
        # Safe to collect: this run's receipts, one per account erased.
        print(json.dumps([r.asDict(recursive=True) for r in receipts.collect()], indent=2, default=str))
    print(f"erased {len(accounts)} account(s); the next organize run marks them erased in silver.customers", file=sys.stderr)
    return 0


def cmd_subject_access(args) -> int:
    from crmlake.lake import Lake
    from crmlake.subjects import SharedMailboxError, subject_access
    from crmlake.session import spark_session

    conf = load_conf(args.conf, args.overrides)
    with spark_session(conf, "subject-access") as spark:
        try:
            counts = subject_access(Lake(spark, conf), args.out, email=args.email, account=args.account)
        except SharedMailboxError as exc:
            raise UsageError(str(exc)) from exc
    if not counts:
        raise UsageError(f"no account holds the email {args.email!r}" if args.email else f"no account {args.account!r} in silver.customers")
    print(json.dumps({"out": args.out, "rows": counts}, indent=2))
    return 0


def cmd_maintain(args) -> int:
    from crmlake.lake import Lake
    from crmlake.session import spark_session

    conf = load_conf(args.conf, args.overrides)
    with spark_session(conf, "maintain") as spark, writing(spark, conf, "maintain"):
        lake = Lake(spark, conf)
        done = {table: lake.maintain(table) for table in lake.catalog.tables if lake.exists(table)}
    print(json.dumps(done, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``crmlake`` command."""
    parser = argparse.ArgumentParser(
        prog="crmlake",
        description="Big-data CRM mining on Spark, Delta and MLflow. Stages: acquire (landing -> bronze), "
        "organize (bronze -> silver), analyze (silver -> gold, models, reports), decide (audiences).",
    )
    add_log_level_argument(parser)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    gen = commands.add_parser("generate", help="write a sample landing zone (all five sources, with real-world defects)",
                              description="Simulate members, visits, orders, service contacts and campaigns and write them as the landing-zone contract describes, with planted defects and a documented truth under <landing>/_truth/.")
    add_conf_arguments(gen)
    gen.add_argument("--landing", default=None, help="landing directory (default: paths.landing)")
    gen.add_argument("--customers", type=int, default=2000, help="number of persons (default 2000)")
    gen.add_argument("--days", type=int, default=60, help="days of history (default 60)")
    gen.add_argument("--end", type=parse_date, default=None, help="last business date, YYYY-MM-DD (default: yesterday)")
    gen.add_argument("--seed", type=int, default=7, help="random seed; the same seed gives the same files (default 7)")
    gen.add_argument("--force", action="store_true", help="replace an existing landing zone")
    gen.add_argument("--skip-if-present", action="store_true", help="do nothing when the landing zone already holds data")
    gen.set_defaults(func=cmd_generate)

    run = commands.add_parser("run", help="run one stage or all four for a business date",
                              description="Run crmlake stages in one Spark session. acquire for date D takes every landing file with dt <= D not yet ingested; each later stage reads only tables the earlier ones wrote. Reruns of a date are idempotent.")
    add_run_arguments(run)
    run.add_argument("--stage", choices=(*STAGES, "all"), default="all", help="stage to run (default: all, in order)")
    run.set_defaults(func=cmd_run)

    backfill = commands.add_parser("backfill", help="run stages for every date of a range, in order",
                                   description="Run the stages for each business date from --from to --to (inclusive), oldest first, in one Spark session. Each date's run is idempotent, so a backfill can be rerun or resumed after a failure.")
    add_conf_arguments(backfill)
    backfill.add_argument("--from", dest="date_from", type=parse_date, required=True, help="first business date, YYYY-MM-DD")
    backfill.add_argument("--to", dest="date_to", type=parse_date, required=True, help="last business date, YYYY-MM-DD")
    backfill.add_argument("--stage", choices=(*STAGES, "all"), default="all", help="stage to run (default: all, in order)")
    backfill.set_defaults(func=cmd_backfill)

    catalog = commands.add_parser("serve", help="serve the read-only page marketers and managers open",
                                  description="Serve what is under paths.exports as one read-only web page: audiences by date with their counts at every contact-policy step, definition, score histogram and downloads; campaign results (lift with its 95% interval) as a table and a chart; segments and value tiers; links to every report. Reads files only (no Spark). Binds to 127.0.0.1 unless --host says otherwise; Ctrl-C stops it.")
    add_conf_arguments(catalog)
    catalog.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    catalog.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 picks a free one)")
    catalog.set_defaults(func=cmd_serve)

    erase = commands.add_parser("erase", help="erase a member everywhere, now (privacy officer)",
                                description="Record an erase request for the account (or every account holding the email) and apply it at once: the account's rows leave every table whose catalog subject rule is not none (deleted, or their personal columns blanked, as the rule says) and every audience export on disk (files rewritten, manifests amended), the files that held it are deleted, and a receipt goes to gold.erasure_log (printed). Erasure is final: later upserts of the account are refused. The next organize run marks the account erased in silver.customers.")
    add_subject_arguments(erase, account="the account_id to erase",
                          email="erase every account whose profile holds this email (trimmed, any case), when they are one person's")
    erase.set_defaults(func=cmd_erase)

    access = commands.add_parser("subject-access", help="write everything held about a member (privacy officer)",
                                 description="Write everything crmlake holds about one person (named by account or by an email only they hold) under --out: their rows of every table whose catalog subject rule is not none, as <table>.json and <table>.csv (silver.customers, silver.order_lines with guest checkouts under an email only they hold, silver.sessions, gold.customer_scores, ...), identifiers of anyone else in them blanked; index.json lists the accounts, persons, rows per table and why each other table holds no one's rows.")
    add_subject_arguments(access, account="the member's account_id: their person's every account is included",
                          email="the member's email (trimmed, any case)")
    access.add_argument("--out", required=True, help="folder to write the files to (created)")
    access.set_defaults(func=cmd_subject_access)

    maintain = commands.add_parser("maintain", help="compact and vacuum every table by the catalog and the retention conf",
                                   description="For every table in the catalog that exists: compact small files, delete the removed files and Delta log entries older than the table's layer's lake.retention_days. Schedule it (deploy/cron, deploy/airflow/crmlake_maintain.py) after the daily run; it must not overlap a stage run.")
    add_conf_arguments(maintain)
    maintain.set_defaults(func=cmd_maintain)
    return parser


def exit_code_of(action, label: str = "crmlake") -> int:
    """Run ``action``; map misuse to exit 2, a lake held by another writer to exit 3 and
    failures to exit 1 with the reason on one line."""
    try:
        return action()
    except (ConfigError, UsageError, LandingExistsError) as exc:
        print(f"{label}: error: {exc}", file=sys.stderr)
        return 2
    except LeaseHeldError as exc:
        print(f"{label}: busy: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:   # Ctrl-C, or the lease's heartbeat stopping a writer that lost it
        log.exception("interrupted")
        print(f"{label}: interrupted (see the log above)", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001 - a job failure: one line for the scheduler, the trace in the log
        log.exception("failed")
        print(f"{label}: failed: {reason_of(exc)}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``crmlake`` console script; returns the exit code."""
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return exit_code_of(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())

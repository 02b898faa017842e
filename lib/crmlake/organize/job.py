"""The organize stage: bronze -> silver, incremental by default.

Each run pins the bronze tables' versions when it starts and reads that snapshot only, so
rows that acquire commits meanwhile wait for the next run instead of being skipped. It
reads only the bronze files committed after the versions the last run read (kept in
``silver.organize_state``) and merges what they change:

* ``silver.customers`` (latest profile and consent per account) and
  ``silver.customer_history`` (SCD type 2) for the accounts touched;
* ``silver.order_lines`` (latest status per line) by merge on the line key;
* ``silver.sessions`` within a gap of the new events (those sessions are rebuilt whole, so
  a late event joins or splits the right session) and ``silver.funnel`` for the dates touched;
* ``silver.identity_links`` (cookie and account seen together with tracking consent).

``silver.identity_map`` is then grown from silver: the persons the run's links and
accounts reach are recomputed, the rest kept, and person ids stay stable across runs (see
:mod:`crmlake.organize.identity`); ``silver.customer_360`` is written from silver, its
behaviour recomputed for the persons the run reached only, and ``silver.companies`` (B2B) last
(:mod:`crmlake.organize.companies`). ``organize.full_refresh`` (``--full-refresh``) rebuilds
every table from all of bronze and gives the same tables.

Erase requests are applied first (:mod:`crmlake.privacy`): the account's personal data goes
from every table the catalog says holds it and from the exports, with the old files that
held it; a later upsert of an erased account is erased on arrival and counted as refused.
An erase rewrites bronze files, so the snapshot is pinned again after it. Every bronze
source is optional: acquire creates an empty table for a source never delivered. The
customers, order lines and sessions steps need nothing of each other and run side by side
(``organize.steps_at_once``, :func:`crmlake.isolation.side_by_side`).
"""

from __future__ import annotations

import datetime as dt
from functools import partial

from pyspark.sql import DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.business_days import business_date
from crmlake.config import Conf
from crmlake.config_schema import Business
from crmlake.faults import crash_point
from crmlake.interactions import latest_contacts
from crmlake.isolation import side_by_side
from crmlake.lake import Lake, Snapshot
from crmlake.lake.frames import counted, maybe_broadcast
from crmlake.orders import latest_order_lines, lines_without_rate
from crmlake.log import get_logger, timed
from crmlake.organize.companies import companies
from crmlake.organize.customer360 import (
    Refresh, behaviour_from_history, customer_360, customer_history, funnel_by_day, identifiers_touched, persons_to_refresh,
)
from crmlake.organize.persons import identity_figures, organize_identity
from crmlake.organize.transforms import (
    CONSENT_WITHDRAWING_EVENTS, consent_choices, latest_profiles, session_reach, session_spans, sessionize, with_consent_state, with_session_date, within_spans,
)
from crmlake.people import ACCOUNT, with_person_id, with_phone_sha256
from crmlake.privacy import apply_erasures

log = get_logger("organize")
STATE = "silver.organize_state"
STATE_SCHEMA = "source string, version_read long, run_date date, updated_at timestamp"
# The state's row of silver.customers: its version when the last complete run ended, the profiles the next run's map grows from.
PROFILES = "silver.customers"
BRONZE_SOURCES = ("bronze.customers", "bronze.orders", "bronze.clickstream", "bronze.campaign_events", "bronze.interactions")


class Changes:
    """The bronze snapshot this run reads (versions pinned at its start), and which of its
    rows are new: those committed after the versions the last run read (all on a full refresh)."""

    def __init__(self, lake: Lake, full_refresh: bool):
        self.lake = lake
        self.snapshot: Snapshot = lake.pin(BRONZE_SOURCES)
        self.previous = {} if full_refresh or not lake.exists(STATE) else {
            # Safe to collect: one row per bronze source.
            r["source"]: r["version_read"] for r in lake.read(STATE).collect()
        }
        self.full = not self.previous
        self._identity_links: DataFrame | None = None

    def all(self, table: str) -> DataFrame:
        """Return every row of ``table`` as pinned."""
        return self.snapshot.read(table)

    def new(self, table: str) -> DataFrame:
        """Return the rows of ``table`` committed since the last run read it."""
        return self.snapshot.read_added(table, self.previous.get(table))

    def repin(self, tables) -> None:
        """Pin ``tables`` again at their current version: an erase rewrote them and removed the
        files the old version read."""
        self.snapshot.versions.update({t: self.lake.version(t) for t in tables if t in self.snapshot.versions})
        self.release()

    def new_identity_links(self) -> DataFrame:
        """Return the cookie-account pairs seen together with tracking consent in the new
        clicks, with the last time seen: the rows merged into silver.identity_links, whose ends
        the identity map grows from. Built once and cached (the sessions and people steps both
        read it) from the snapshot as pinned when first asked: after the erase step's repin."""
        if self._identity_links is None:
            # An erased account is linked to no cookie again, whether its clicks are new or replayed by a full refresh.
            erased = self.all("bronze.customers").where("op = 'erase'").select("account_id")
            self._identity_links = (
                self.new("bronze.clickstream")
                .where(F.col("tracking_consent") & F.col("account_id").isNotNull())
                .join(erased, "account_id", "left_anti")
                .groupBy("anonymous_id", "account_id")
                .agg(F.max("event_time").alias("last_seen_at"))
                .cache()
            )
        return self._identity_links

    def release(self) -> None:
        """Drop what the run cached from the snapshot (its files may be gone after a repin)."""
        if self._identity_links is not None:
            self._identity_links.unpersist()
            self._identity_links = None

    def profiles_before(self) -> int | None:
        """Return the version of silver.customers this run's identity map grows from: the one the
        last complete run left (as the state records it; a state from before that record: the
        current version). None, and the map is rebuilt whole, on a first run or when the table
        was written after the last complete run: a run killed between merging the profiles and
        the people step (its rerun must not take its own merge for "before", or the keys the
        changed accounts left would go unseen), or an erasure."""
        if not self.lake.exists(PROFILES):
            return None
        current = self.lake.version(PROFILES)
        recorded = self.previous.get(PROFILES, current)
        if recorded != current:
            log.info("organize: %s was written after the last complete run (version %d, then %d): the identity map is rebuilt whole",
                     PROFILES, current, recorded)
            return None
        return current

    def state(self, run_date: dt.date) -> DataFrame:
        """Return what to store after this run: the version of each bronze table it read, and
        silver.customers' version as this run leaves it (:meth:`profiles_before` of the next)."""
        now = dt.datetime.now(dt.timezone.utc)
        versions = {**self.snapshot.versions, PROFILES: self.lake.version(PROFILES)}
        rows = [(table, version, run_date, now) for table, version in versions.items()]
        return self.lake.spark.createDataFrame(rows, STATE_SCHEMA)


def erase_due_accounts(lake: Lake, conf: Conf, changes: Changes) -> dict:
    """Apply the erase requests due (:func:`crmlake.privacy.apply_erasures`); return its counts
    (accounts erased, upserts refused, late records found, failed erasures).

    Only requests in the pinned snapshot are applied. An account erased earlier is due again
    when the run's new rows of the other bronze sources (those that exist) hold records of it,
    a stale system re-sending them: apply_erasures is given those new rows and reads their
    account ids only. An erasure rewrites bronze files and removes the old ones at once, so
    the bronze snapshot is then pinned again at the current versions (what acquire committed
    meanwhile is then read in this run, not lost).
    """
    others = {table: changes.new(table) for table in BRONZE_SOURCES if table != "bronze.customers" and table in changes.snapshot.versions}
    facts = apply_erasures(lake, conf, changes.all("bronze.customers"), others)
    if facts["erased_accounts"] or facts["failed"]:   # a failed erasure may have rewritten bronze files before it failed
        changes.repin(BRONZE_SOURCES)
    return facts


def _erase_requested(changes: Changes) -> bool:
    """Return True when the run's new bronze.customers rows hold an erase request."""
    # Safe to collect: one row at most.
    return bool(changes.new("bronze.customers").where("op = 'erase'").limit(1).collect())


def _accounts_touched(changes: Changes) -> DataFrame:
    profile_changes = changes.new("bronze.customers").select("account_id")
    withdrawals = changes.new("bronze.campaign_events").where(F.col("event").isin(*CONSENT_WITHDRAWING_EVENTS)).select("account_id")
    return profile_changes.unionByName(withdrawals).where(F.col("account_id").isNotNull()).distinct()


def _write(lake: Lake, table: str, rows: DataFrame, full: bool, keys: list[str], order_by: str, partition_by=()) -> int:
    """Overwrite ``table`` on a full refresh, else merge ``rows`` into it; return rows written."""
    if full or not lake.exists(table):
        return lake.overwrite(table, rows, partition_by=partition_by).rows_written
    return lake.merge(table, rows, keys=keys, order_by=order_by, partition_by=partition_by).rows_written


def organize_accounts(lake: Lake, changes: Changes, default_phone_region: str) -> dict:
    """Merge the touched accounts' latest profile, consent state and history into silver; the
    profiles with their phone's hash (:func:`~crmlake.people.with_phone_sha256`, the phone
    read in ``default_phone_region``), parsed once here rather than by every identity run.

    Consent is the member's latest own choice among every upsert and withdrawal the account
    ever had (:func:`~crmlake.organize.transforms.with_consent_state`), so the touched
    accounts' whole history is read, not only the run's new rows.
    """
    bronze = changes.all("bronze.customers")
    events = changes.all("bronze.campaign_events")
    touched = None if changes.full else _accounts_touched(changes).cache()
    if touched is not None:
        bronze, events = bronze.join(touched, "account_id", "left_semi"), events.join(touched, "account_id", "left_semi")
    # The history feeds the latest profile, the consent choices and the SCD versions: read once.
    bronze = bronze.cache()
    try:
        profiles = with_phone_sha256(with_consent_state(latest_profiles(bronze), consent_choices(bronze, events)), default_phone_region)
        return {
            "accounts": _write(lake, "silver.customers", profiles, changes.full, ["account_id"], "profile_updated_at"),
            "profile_versions": _write(lake, "silver.customer_history", customer_history(bronze), changes.full, ["account_id", "valid_from"], "valid_from"),
        }
    finally:
        for cached in (bronze, touched):
            if cached is not None:
                cached.unpersist()


def organize_order_lines(lake: Lake, changes: Changes, business: Business) -> dict:
    """Merge the latest status of every changed order line into silver.order_lines, its money
    in ``business.currency``; return the rows written and ``lines_without_rate`` (currency ->
    new line versions whose currency has no rate: null money), warned about when any."""
    new = changes.new("bronze.orders")
    unconverted = lines_without_rate(new, business)   # the currency column alone
    if unconverted:
        log.warning("order lines in currencies without a rate to %s (business.exchange_rates), their money null: %s", business.currency,
                    ", ".join(f"{code} {n:,}" for code, n in sorted(unconverted.items())))
    lines = latest_order_lines(new, business)
    return {"order_lines": _write(lake, "silver.order_lines", lines, changes.full, ["order_id", "line_no"], "updated_time", ["order_date"]),
            "lines_without_rate": unconverted}


def organize_sessions(lake: Lake, changes: Changes, gap_minutes: int, timezone: str) -> dict:
    """Rebuild the sessions that new clicks can change (inside the spans of
    :func:`~crmlake.organize.transforms.session_spans`: a day's clicks read that day's
    sessions and clicks, not the visitors' whole history), the funnel of the dates they
    touch, and the consented cookie-account links; return row counts."""
    new_clicks = changes.new("bronze.clickstream")
    links = changes.new_identity_links()
    facts = {"identity_links": _write(lake, "silver.identity_links", links, changes.full, ["anonymous_id", "account_id"], "last_seen_at")}
    if changes.full:
        sessions = with_session_date(sessionize(changes.all("bronze.clickstream"), gap_minutes), timezone)
        facts["sessions"] = lake.overwrite("silver.sessions", sessions, partition_by=["session_date"]).rows_written
        facts["funnel_rows"] = lake.overwrite("silver.funnel", funnel_by_day(sessions), partition_by=["session_date"]).rows_written
        return facts
    # Safe to collect: one value (in microseconds: exact, whatever the driver's time zone).
    first_new = new_clicks.agg(F.min(F.unix_micros("event_time"))).first()[0]
    if first_new is None:
        return {**facts, "sessions": 0}
    # Only sessions ending after a gap before the first new click can change: the rest of the
    # table is skipped by its files' statistics.
    before = lake.read("silver.sessions").where(F.col("session_end") >= F.timestamp_micros(F.lit(first_new)) - session_reach(gap_minutes))
    spans = session_spans(new_clicks, before, gap_minutes).cache()
    # Safe to collect: one row per business date the spans cover. Only those partitions of the clicks are read.
    span_days = F.sequence(*(business_date(edge, timezone) for edge in ("span_start", "span_end")))
    click_dates = [r["day"] for r in spans.select(F.explode(span_days).alias("day")).distinct().collect()]
    clicks = changes.all("bronze.clickstream").where(F.col("event_date").isin(*click_dates))
    rebuilt = with_session_date(sessionize(within_spans(clicks, spans, "event_time", "event_time"), gap_minutes), timezone).cache()
    # Sessions inside the spans that no longer exist (a late click joined them to another or changed their id) are deleted.
    vanished = within_spans(before, spans, "session_start", "session_end").join(rebuilt.select("session_id"), "session_id", "left_anti")
    upserts = rebuilt.withColumn("_gone", F.lit(False)).unionByName(vanished.withColumn("_gone", F.lit(True)))
    facts["sessions"] = lake.merge("silver.sessions", upserts, keys=["session_id"], order_by="session_end", delete_when="_gone", partition_by=["session_date"]).rows_written
    # Safe to collect: one row per business date touched.
    dates = [r["session_date"] for r in upserts.select("session_date").distinct().collect()]
    if dates:
        predicate = "session_date IN (" + ", ".join(f"DATE'{d}'" for d in dates) + ")"
        day_sessions = lake.read("silver.sessions").where(predicate)
        facts["funnel_rows"] = lake.overwrite_where("silver.funnel", funnel_by_day(day_sessions), predicate, partition_by=["session_date"]).rows_written
    spans.unpersist()
    rebuilt.unpersist()
    return facts


def organize_people(
    lake: Lake, changes: Changes, conf: Conf, run_date: dt.date, graph_changed: bool, erased_accounts: int, profiles_before: int | None
) -> dict:
    """Update who is one person (:func:`~crmlake.organize.persons.organize_identity`) when
    ``graph_changed`` (accounts or cookie links written this run, or an account erased) or
    when the map, its pairs or its weights are not there yet; then write silver.customer_360 for ``run_date``
    (:func:`organize_customer_360`); return the identity figures, how the map was updated and
    the persons written.

    The map is grown from what this run changed: the links it wrote and the accounts it
    merged, as silver.customers held them at version ``profiles_before`` (before this run
    wrote it) and holds them now. It is rebuilt whole on a full refresh and after an erasure
    (``erased_accounts`` erased by this run, or an erase request new in this run: ``crmlake
    erase`` applies one at once, before organize sees it).
    """
    # A lake persons were never weighed in (no pairs or weights yet, say one an older crmlake wrote) is rebuilt too.
    rebuild = graph_changed or not all(lake.exists(t) for t in ("silver.identity_map", "silver.identity_pairs", "silver.identity_weights"))
    previous, facts = None, {"identity_rebuilt": rebuild}
    if rebuild:
        erased = bool(erased_accounts or _erase_requested(changes))
        previous, how = organize_identity(lake, conf, run_date, changes.full, erased, profiles_before, _accounts_touched(changes), changes.new_identity_links())
        facts.update(how)
    identity_map = lake.read("silver.identity_map")
    # The cookies' share is of this run's clicks (all of them on a full refresh): no scan of the history.
    facts.update(identity_figures(lake, conf, run_date, identity_map, changes.new("bronze.clickstream")))
    return {**facts, **organize_customer_360(lake, changes, conf, run_date, identity_map, previous)}


def organize_customer_360(lake: Lake, changes: Changes, conf: Conf, run_date: dt.date, identity_map: DataFrame, previous_map: DataFrame | None) -> dict:
    """Write silver.customer_360 for ``run_date``; return the persons written and those whose
    behaviour was recomputed.

    Declared attributes, consent and referrals come from silver.customers for every person.
    The behaviour columns (from the whole history of order lines, sessions and service
    contacts) are recomputed for everyone on a full refresh or when the table's columns are not
    the catalog's; else only for the persons
    :func:`~crmlake.organize.customer360.persons_to_refresh` gives (``previous_map``: the
    identity map before this run, None when the run left it as it was), whose history is read
    through a broadcast of their identifiers; every other person keeps its behaviour.
    """
    timezone = conf.business.timezone
    broadcast_max_rows = conf.organize.identity.broadcast_max_rows
    # An incremental run reads these twice (whom to refresh, then the rows written): joined to the map once.
    accounts = with_person_id(lake.read("silver.customers"), identity_map, (ACCOUNT, F.col("account_id"))).cache()
    interactions = latest_contacts(changes.all("bronze.interactions"))
    refresh = None
    before = None if changes.full or not lake.exists("silver.customer_360") else lake.read("silver.customer_360")
    if before is not None and before.columns == list(lake.catalog.spec("silver.customer_360").columns):
        touched = identifiers_touched(changes.new("bronze.orders"), changes.new("bronze.clickstream"), changes.new("bronze.interactions"))
        live_persons = accounts.where(~F.col("erased") & F.col("person_id").isNotNull())
        persons, refreshed = counted(persons_to_refresh(identity_map, touched, live_persons, before, previous_map))
        held, held_count = counted(identity_map.join(maybe_broadcast(persons, refreshed <= broadcast_max_rows), "person_id", "left_semi"))
        refresh = Refresh(before, persons, held, held_count <= broadcast_max_rows)
    behaviour = behaviour_from_history(lake.read("silver.order_lines"), lake.read("silver.sessions"), interactions, identity_map, timezone, refresh)
    people = customer_360(accounts, behaviour, run_date, timezone, conf.organize.customer_360)
    written = lake.overwrite("silver.customer_360", people).rows_written
    accounts.unpersist()
    return {"persons_360": written, "persons_360_refreshed": written if refresh is None else refreshed}


def organize_companies(lake: Lake) -> dict:
    """Rebuild silver.companies (B2B customer companies) from silver.customers and
    silver.order_lines; return its row count."""
    rows = companies(lake.read("silver.customers"), lake.read("silver.order_lines"))
    return {"companies": lake.overwrite("silver.companies", rows).rows_written}


def run(spark: SparkSession, conf: Conf, run_date: dt.date) -> dict:
    """Bring silver up to date with bronze for ``run_date``; return row counts and quality figures."""
    lake = Lake(spark, conf)
    return organize(lake, conf, run_date, Changes(lake, conf.organize.full_refresh))


def organize(lake: Lake, conf: Conf, run_date: dt.date, changes: Changes) -> dict:
    """Merge ``changes`` (the bronze snapshot pinned for this run) into silver; store the
    versions read, so the next run starts where this one's snapshot ended."""
    tz = conf.business.timezone
    facts: dict = {"mode": "full_refresh" if changes.full else "incremental", "bronze_versions_read": changes.snapshot.versions}
    log.info("organize for %s: %s", run_date, facts["mode"])
    # The profiles as the last complete run left them: the identity map grows from what this run changes in them.
    profiles_before = changes.profiles_before()
    # Steps in order; the steps of one group need nothing of each other and run side by side.
    groups = [
        {"erase": lambda: erase_due_accounts(lake, conf, changes)},
        {
            "customers": lambda: organize_accounts(lake, changes, conf.business.default_phone_region),
            "order lines": lambda: organize_order_lines(lake, changes, conf.business),
            "sessions": lambda: organize_sessions(lake, changes, conf.organize.session_gap_minutes, tz),
        },
        # The identity graph is silver.customers + silver.identity_links: unchanged when neither was
        # written nor erased from (an erased account's hashed email and phone must leave the map).
        {"people": lambda: organize_people(
            lake, changes, conf, run_date, changes.full or bool(facts["erased_accounts"] or facts["accounts"] or facts["identity_links"]), facts["erased_accounts"], profiles_before
        )},
        {"companies": lambda: organize_companies(lake)},
    ]

    def step(name: str, work) -> dict:
        with timed(log, f"organize {name} for {run_date}") as f:
            f.update(work())
        crash_point(f"organize.{name.replace(' ', '_')}")   # the fault suite kills a run here, after each step
        return dict(f)

    try:
        for group in groups:
            done = side_by_side(lake.spark, {name: partial(step, name, work) for name, work in group.items()}, lake.writers_at_once(conf.organize.steps_at_once))
            for f in done.values():
                facts.update(f)
    finally:
        changes.release()
    lake.overwrite(STATE, changes.state(run_date))
    return facts

"""The simulated touchpoints: campaign sends and responses, service contacts, and what our own contacts cause.

Campaign days (every 7th day) bring sends to live members and responses whose conversion
rises with the member's purchase rate (:func:`campaign_events`); campaigns differ in appeal
(CAMPAIGN_APPEAL: the share of recipients who open and click). About 0.4% of member-days
bring a service contact (:func:`interactions`); one channel (SLOW_CHANNEL) takes
SLOW_CHANNEL_FACTOR times longer to close, and ratings differ by channel
(CHANNEL_SATISFACTION).

Heterogeneous campaign effects (:func:`response_types`, :func:`campaign_responses`): how our
own contacts move each person is planted too, so that an uplift model has something to find:
frequent buyers buy anyway (sure things), rarer buyers browsing at the time of a contact buy
because of it (persuadables), the rest do not buy either way. Nothing of it is generated
unless contacts are given.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.generate.draws import choice, normal, uniform
from crmlake.generate.world import CAMPAIGN_EVERY_DAYS, HOUR_WEIGHTS, HOURS, Plan, day_date, list_price, local_time, member_days, person_no_of_account

# The n-th campaign's appeal is CAMPAIGN_APPEAL[n % 3]: it scales the shares of recipients who
# open (30% at 1.0) and of openers who click (30% at 1.0); the first campaign is the plain one.
CAMPAIGN_APPEAL = (1.0, 1.6, 0.4)
SLOW_CHANNEL = "email"          # its contacts take SLOW_CHANNEL_FACTOR times the hours to close
SLOW_CHANNEL_FACTOR = 3
CHANNEL_SATISFACTION = {"email": -1, "store": 1}   # added to a rating on the channel (kept within 1-5)


def campaign_events(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per campaign event: sends on campaign days to live members, and their responses."""
    s = plan.seed
    targets = member_days(people, plan).where((F.col("day") % CAMPAIGN_EVERY_DAYS) == 3)
    ids = ("person_no", "day")
    targets = targets.where(uniform(s, "targeted", *ids) < 0.35)
    appeal = F.element_at(F.array(*[F.lit(a) for a in CAMPAIGN_APPEAL]), (F.floor(F.col("day") / CAMPAIGN_EVERY_DAYS) % len(CAMPAIGN_APPEAL) + 1).cast("int"))
    bounced = uniform(s, "bounce", *ids) < 0.03
    opened = ~bounced & (uniform(s, "open", *ids) < 0.3 * appeal)
    unsubscribed = opened & (uniform(s, "unsubscribe", *ids) < 0.02)
    clicked = opened & ~unsubscribed & (uniform(s, "click", *ids) < 0.3 * appeal)
    converted = clicked & (uniform(s, "convert", *ids) < F.least(F.lit(0.9), 0.05 + F.col("daily_purchase_rate") * 8))
    open_minutes = 60 + F.floor(uniform(s, "open_delay", *ids) * 29 * 60)

    def event(name, when, minutes):
        return F.when(when, F.struct(F.lit(name).alias("event"), minutes.cast("long").alias("minutes")))

    events = F.filter(
        F.array(
            event("sent", F.lit(True), F.lit(0)),
            event("bounced", bounced, F.lit(1)),
            event("delivered", ~bounced, F.lit(1)),
            event("opened", opened, open_minutes),
            event("unsubscribed", unsubscribed, open_minutes + 2),
            event("clicked", clicked, open_minutes + 1),
            event("converted", converted, open_minutes + 120),
        ),
        lambda e: e.isNotNull(),
    )
    sent_at = local_time(plan, day_date(plan, F.col("day")), F.lit(10 * 3600))
    exploded = targets.select("*", F.explode(events).alias("e"))
    return exploded.select(
        F.format_string("c-%s", F.date_format(day_date(plan, F.col("day")), "yyyyMMdd")).alias("campaign_id"),
        F.format_string("A%08d", F.col("person_no") * 2).alias("account_id"),
        F.col("e.event").alias("event"),
        F.timestamp_seconds(F.unix_timestamp(sent_at) + F.col("e.minutes") * 60).alias("event_time"),
        F.when(F.col("e.event") == "converted", F.round(F.exp(7 + 0.6 * normal(s, "revenue", *ids)), 2)).alias("revenue"),
    )


def interactions(people: DataFrame, plan: Plan) -> DataFrame:
    """One row per service contact (about 0.4% of member-days): 1 to 72 hours to close (times
    SLOW_CHANNEL_FACTOR on SLOW_CHANNEL), 85% closed, 70% of those rated (complaints 1-2, the
    rest 3-5, shifted by CHANNEL_SATISFACTION)."""
    s = plan.seed
    ids = ("person_no", "day")
    contacts = member_days(people, plan).where(uniform(s, "contact", *ids) < 0.004)
    kind = choice(uniform(s, "type", *ids), ["inquiry", "complaint", "praise", "return_request", "technical"], [0.45, 0.15, 0.1, 0.2, 0.1])
    channel = choice(uniform(s, "channel", *ids), ["phone", "email", "chat", "message_board", "store"])
    opened = local_time(plan, day_date(plan, F.col("day")), F.floor(uniform(s, "opened", *ids) * 86400))
    closed = uniform(s, "closed", *ids) < 0.85
    hours = (1 + F.floor(uniform(s, "duration", *ids) * 72)) * F.when(channel == SLOW_CHANNEL, SLOW_CHANNEL_FACTOR).otherwise(1)
    shift = F.lit(0)
    for name, points in CHANNEL_SATISFACTION.items():
        shift = F.when(channel == name, F.lit(points)).otherwise(shift)
    rating = F.when(kind == "complaint", 1 + F.floor(uniform(s, "sat", *ids) * 2)).otherwise(3 + F.floor(uniform(s, "sat", *ids) * 3))
    satisfaction = F.least(F.greatest(rating + shift, F.lit(1)), F.lit(5))
    return contacts.select(
        F.format_string("I%d-%d", "person_no", "day").alias("interaction_id"),
        F.format_string("A%08d", F.col("person_no") * 2).alias("account_id"),
        channel.alias("channel"),
        kind.alias("type"),
        opened.alias("opened_time"),
        F.when(closed, F.timestamp_seconds(F.unix_timestamp(opened) + hours * 3600)).alias("closed_time"),
        F.when(closed & (uniform(s, "rated", *ids) < 0.7), satisfaction.cast("int").cast("string")).alias("satisfaction"),
        F.format_string("agent%d", (1 + F.floor(uniform(s, "agent", *ids) * 40)).cast("int")).alias("agent_id"),
    )


# How a contact (an exported audience member, not its control group) moves each person.
RESPONSE_TYPES = ("persuadable", "sure_thing", "lost_cause")
SURE_THING_RATE = 0.03      # daily purchase rate from which a member buys whether contacted or not
BROWSING_DAYS = 30          # a rarer buyer who visited on at least ...
PERSUADABLE_VISIT_DAYS = 3  # ... this many of the BROWSING_DAYS up to a contact is persuadable by it
RESPONSE_RATE = 0.7         # a contacted persuadable buys because of it with this probability ...
RESPONSE_DAYS = 7           # ... on one of the days after the contact


def response_types(people: DataFrame, visits: DataFrame, on: DataFrame) -> DataFrame:
    """Return (person_no, day, response_type): how a contact on ``day`` moves the person,
    planted from their latent purchase rate and their visits then.

    Takes persons (:func:`crmlake.generate.members.persons`), visits (:func:`crmlake.generate.behaviour.sessions`) and (person_no, day) pairs.

    * ``sure_thing``: buys often (``daily_purchase_rate`` >= SURE_THING_RATE): converts as
      much contacted or not: a high propensity and no uplift;
    * ``persuadable``: a rarer buyer browsing now: visited on at least
      PERSUADABLE_VISIT_DAYS of the BROWSING_DAYS up to ``day`` (in the market, not buying);
      contacted, buys with RESPONSE_RATE in the RESPONSE_DAYS after
      (:func:`campaign_responses`); not contacted, only at their own rate;
    * ``lost_cause``: everyone else; a contact changes nothing.
    """
    visited = visits.where(F.col("account").isNotNull()).select(person_no_of_account(F.col("account")).alias("person_no"), F.col("day").alias("_visit_day"))
    recent = (F.col("_visit_day") <= F.col("day")) & (F.col("_visit_day") > F.col("day") - BROWSING_DAYS)
    browsing = on.join(visited, "person_no").where(recent).groupBy("person_no", "day").agg(F.countDistinct("_visit_day").alias("_visit_days"))
    kind = (
        F.when(F.col("daily_purchase_rate") >= SURE_THING_RATE, F.lit("sure_thing"))
        .when(F.coalesce("_visit_days", F.lit(0)) >= PERSUADABLE_VISIT_DAYS, F.lit("persuadable"))
        .otherwise(F.lit("lost_cause"))
    )
    return on.join(people.select("person_no", "daily_purchase_rate"), "person_no").join(browsing, ["person_no", "day"], "left").select(
        "person_no", "day", kind.alias("response_type")
    )


def campaign_responses(people: DataFrame, visits: DataFrame, contacts: DataFrame, plan: Plan) -> DataFrame:
    """Return the order lines our contacts caused, as :func:`crmlake.generate.behaviour.order_lines` (one line per order).

    Takes persons (:func:`crmlake.generate.members.persons`), visits (:func:`crmlake.generate.behaviour.sessions`) and contact rows (account_id,
    contact_date, group: treatment or control), e.g. gold.contact_history. A persuadable
    (:func:`response_types`) contacted on a date (in the treatment group of any audience)
    buys with RESPONSE_RATE on one of the RESPONSE_DAYS after it, in their favourite
    category, from the contacted account. Control persons, sure things and lost causes buy
    nothing more than they would anyway; responses after ``plan.end`` have not happened and
    are left out.
    """
    s = plan.seed
    contacted = contacts.where(F.col("group") == "treatment").select(
        person_no_of_account(F.col("account_id")).alias("person_no"), "account_id", F.datediff("contact_date", F.lit(plan.start)).alias("day"),
    ).groupBy("person_no", "day").agg(F.min("account_id").alias("account_id"))
    persuadable = response_types(people, visits, contacted.select("person_no", "day")).where(F.col("response_type") == "persuadable")
    ids = ("person_no", "contact_day")
    responding = (
        contacted.join(persuadable, ["person_no", "day"]).join(people.select("person_no", "favourite_category"), "person_no")
        .withColumnRenamed("day", "contact_day").where(uniform(s, "responds", *ids) < RESPONSE_RATE)
        .withColumn("day", F.col("contact_day") + 1 + F.floor(uniform(s, "response_day", *ids) * RESPONSE_DAYS).cast("int"))
    )
    order_time = local_time(plan, day_date(plan, F.col("day")), choice(uniform(s, "response_hour", *ids), HOURS, HOUR_WEIGHTS) * 3600
                     + F.floor(uniform(s, "response_second", *ids) * 3600))
    unit_price = F.round(list_price(F.col("favourite_category")) * F.exp(0.4 * normal(s, "response_price", *ids)), 0)
    return responding.where(F.col("day") <= plan.days - 1).select(
        F.format_string("O-r%d-%d", "person_no", "contact_day").alias("order_id"),
        F.lit(1).alias("line_no"),
        order_time.alias("order_time"),
        "account_id",
        F.lit(None).cast("string").alias("guest_email"),
        F.lit("web").alias("channel"),
        F.lit(None).cast("string").alias("store_id"),
        F.format_string("%s-%d", F.col("favourite_category").substr(1, 3), F.floor(uniform(s, "response_product", *ids) * 500).cast("int")).alias("product_id"),
        F.col("favourite_category").alias("category"),
        F.lit(1).alias("quantity"),
        unit_price.alias("unit_price"),
        F.lit(0.0).alias("discount"),
        F.lit("TWD").alias("currency"),
        F.lit("completed").alias("status"),
        order_time.alias("updated_time"),
    )

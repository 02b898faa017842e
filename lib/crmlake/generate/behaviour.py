"""The simulated behaviour: members' and anonymous visitors' visits, their clicks and orders.

A member visits on live days (:func:`crmlake.generate.world.member_days`) at their latent
rates, lifted by 25% at weekends, at hours that follow the day curve; campaign days bring
utm-tagged visits. 60% of a member's visits and order lines are in their favourite category.
A lapsing member's visits and orders fade over the FADE_DAYS days up to their last day
(:func:`crmlake.generate.members.activity_fade`: visits to VISIT_FADE_FLOOR of their rate, orders
more gently, to PURCHASE_FADE_FLOOR).

Bargain hunters (:func:`bargain_hunter`, BARGAIN_HUNTER_SHARE of members) put every line after
an order's first in BARGAIN_CATEGORY (electronics: dear, and thin-margin in the shipped conf),
get a BARGAIN_DISCOUNT on BARGAIN_DISCOUNTED_SHARE of their lines and return
BARGAIN_RETURNED_SHARE of them: much revenue, little profit, so their rank by profit falls
far below their rank by revenue.
"""

from __future__ import annotations

from pyspark.sql import Column, DataFrame, SparkSession
from pyspark.sql import functions as F

from crmlake.generate.draws import choice, geometric, normal, uniform
from crmlake.generate.members import (
    ACQUISITION_SOURCES, HOUSEHOLD_COOKIE_SHARE, PURCHASE_FADE_FLOOR, SHARED_DEVICE_SHARE, VISIT_FADE_FLOOR, activity_fade, signup_time,
)
from crmlake.generate.world import (
    CAMPAIGN_EVERY_DAYS, CATEGORIES, HOUR_WEIGHTS, HOURS, Plan, day_date, list_price, local_time, member_days, person_no_of_account,
)

BARGAIN_HUNTER_SHARE = 0.1
BARGAIN_CATEGORY = "electronics"
BARGAIN_DISCOUNT, BARGAIN_DISCOUNTED_SHARE = 0.2, 0.6   # others: 10% off 20% of lines
BARGAIN_RETURNED_SHARE = 0.15                           # others: 4% returned, 2% cancelled


def bargain_hunter(seed: int, account: Column) -> Column:
    """Column: True for the bargain hunters' accounts (a draw per person: BARGAIN_HUNTER_SHARE of members; never a guest)."""
    return account.isNotNull() & (uniform(seed, "bargain_hunter", person_no_of_account(account)) < BARGAIN_HUNTER_SHARE)


def sessions(spark: SparkSession, people: DataFrame, plan: Plan) -> DataFrame:
    """One row per visit: members' visits (some buying) and anonymous visitors'.

    A member visits as one of their accounts (the second only from its signup day on), on one
    of its three cookies "ck-A<account>-<n>"; SHARED_DEVICE_SHARE of a second account's
    visits are on the first account's first cookie (the person's laptop), and
    HOUSEHOLD_COOKIE_SHARE of a household member's visits on the household's cookie
    "ck-H<household>", logged in as any visit. A member joining in the window first visits
    the evening before their signup day, logged out, on their first account's first cookie:
    its ``acquisition_source`` (:data:`~crmlake.generate.members.ACQUISITION_SOURCES`) gives
    its ``utm_source``, ``utm_medium`` and ``referrer_url`` (null on every other visit); they
    sign up in a visit on that cookie starting 1 to 30 minutes before.
    """
    s = plan.seed
    days = member_days(people, plan)
    date = day_date(plan, F.col("day"))
    boost = F.when(F.dayofweek(date).isin(1, 7), 1.25).otherwise(1.0)
    ids = ("person_no", "day")
    orders = geometric(F.col("daily_purchase_rate") * activity_fade(PURCHASE_FADE_FLOOR) * boost, uniform(s, "orders", *ids))
    visits = F.greatest(geometric(F.col("daily_visit_rate") * activity_fade(VISIT_FADE_FLOOR) * boost, uniform(s, "visits", *ids)), orders)
    counted = days.select("*", orders.alias("n_orders"), visits.alias("n_visits")).where("n_visits > 0")
    member = counted.select("*", F.explode(F.sequence(F.lit(0), F.col("n_visits") - 1)).alias("visit"))
    vid = ("person_no", "day", "visit")
    second = (F.col("accounts") > 1) & (F.col("day") >= F.col("second_signup_day"))
    member = member.withColumn("_k", F.when(second, F.floor(uniform(s, "which_account", *vid) * 2)).otherwise(F.lit(0)).cast("long"))
    account_no = F.col("person_no") * 2 + F.col("_k")
    cookie_no = F.floor(uniform(s, "cookie", *vid) * 3).cast("int")
    cookie = (
        F.when(F.col("household").isNotNull() & (uniform(s, "household_cookie", *vid) < HOUSEHOLD_COOKIE_SHARE), F.format_string("ck-H%08d", "household"))
        .when((F.col("_k") == 1) & (uniform(s, "shared_device", *vid) < SHARED_DEVICE_SHARE), F.format_string("ck-A%08d-0", F.col("person_no") * 2))
        .otherwise(F.format_string("ck-A%08d-%d", account_no, cookie_no))
    )
    buys = F.col("visit") < F.col("n_orders")
    member = member.select(
        F.format_string("m%d-%d-%d", "person_no", "day", "visit").alias("session_key"),
        "day",
        F.format_string("A%08d", account_no).alias("account"),
        cookie.alias("anonymous_id"),
        (buys | (uniform(s, "login", *vid) < 0.6)).alias("logged_in"),
        buys.alias("buys"),
        "favourite_category",
    )
    anonymous = spark.range(int(plan.customers * 0.05) * plan.days).select(
        F.format_string("a%d", "id").alias("session_key"),
        (F.col("id") % plan.days).cast("int").alias("day"),
        F.lit(None).cast("string").alias("account"),
        F.format_string("ck-anon-%d", "id").alias("anonymous_id"),
        F.lit(False).alias("logged_in"),
        (uniform(s, "anon_buys", "id") < 0.05).alias("buys"),
        F.lit(None).cast("string").alias("favourite_category"),
    )
    # A member joining in the window: a first visit the evening before (where they came from),
    # then the visit in which they sign up, both on their first account's first cookie.
    joining = people.where(F.col("acquisition_source").isNotNull()).select("*", F.explode(F.array(F.lit(0), F.lit(1))).alias("_signs_up"))
    signs_up = F.col("_signs_up") == 1
    evening_before = local_time(plan, day_date(plan, F.col("signup_day")), -(600 + F.floor(uniform(s, "first_visit", "person_no") * 3 * 3600)))
    before_signup = F.timestamp_seconds(
        F.unix_timestamp(signup_time(plan, F.col("signup_day"), "person_no", F.lit(0))) - 60 * (1 + F.floor(uniform(s, "signup_visit", "person_no") * 30))
    )
    joining = joining.select(
        F.format_string("j%d-%d", "person_no", "_signs_up").alias("session_key"),
        (F.col("signup_day") - 1 + F.col("_signs_up")).alias("day"),
        F.format_string("A%08d", F.col("person_no") * 2).alias("account"),
        F.format_string("ck-A%08d-0", F.col("person_no") * 2).alias("anonymous_id"),
        signs_up.alias("logged_in"),
        F.lit(False).alias("buys"),
        "favourite_category",
        F.when(signs_up, before_signup).otherwise(evening_before).alias("_start"),
        F.when(~signs_up, F.col("acquisition_source")).alias("acquisition_source"),
    )
    both = member.unionByName(anonymous).unionByName(joining, allowMissingColumns=True)
    k = ("session_key",)
    hour = choice(uniform(s, "hour", *k), HOURS, HOUR_WEIGHTS)
    campaign_day = (F.col("day") % CAMPAIGN_EVERY_DAYS) == 3
    tagged = campaign_day & F.col("acquisition_source").isNull() & (uniform(s, "utm", *k) < 0.3)
    device = choice(uniform(s, "device", *k), ["desktop", "mobile", "tablet", "app"], [0.3, 0.45, 0.05, 0.2])
    carts = F.col("buys") | (uniform(s, "cart", *k) < 0.15)
    return both.select(
        *[c for c in both.columns if c != "_start"],
        F.coalesce("_start", local_time(plan, day_date(plan, F.col("day")), hour * 3600 + F.floor(uniform(s, "second", *k) * 3600))).alias("session_start"),
        *[_acquisition_field(field).alias(field) for field in ("utm_source", "utm_medium", "referrer_url")],
        (uniform(s, "consent", *k) < 0.9).alias("tracking_consent"),
        device.alias("device"),
        F.when(tagged, F.format_string("c-%s", F.date_format(day_date(plan, F.col("day")), "yyyyMMdd"))).alias("utm_campaign"),
        F.when(F.col("favourite_category").isNotNull() & (uniform(s, "in_favourite", *k) < 0.6), F.col("favourite_category"))
        .otherwise(choice(uniform(s, "category", *k), CATEGORIES)).alias("category"),
        (1 + F.floor(uniform(s, "views", *k) * 4)).cast("int").alias("product_views"),
        (uniform(s, "search", *k) < 0.4).alias("searched"),
        carts.alias("carted"),
        (F.col("buys") | (carts & (uniform(s, "checkout", *k) < 0.3))).alias("checked_out"),
    )


def _acquisition_field(field: str) -> Column:
    """Column: the ACQUISITION_SOURCES ``field`` of a visit's ``acquisition_source`` (null for the other visits)."""
    value = F.lit(None).cast("string")
    for source, acquired in ACQUISITION_SOURCES.items():
        value = F.when(F.col("acquisition_source") == source, F.lit(getattr(acquired, field)).cast("string")).otherwise(value)
    return value


def _steps(visits: DataFrame) -> DataFrame:
    empty = F.array().cast("array<string>")
    steps = F.concat(
        F.array(F.lit("page_view")),
        F.when(F.col("searched"), F.array(F.lit("search"))).otherwise(empty),
        F.array_repeat(F.lit("product_view"), F.col("product_views")),
        F.when(F.col("carted"), F.array(F.lit("add_to_cart"))).otherwise(empty),
        F.when(F.col("checked_out"), F.array(F.lit("checkout_start"))).otherwise(empty),
        F.when(F.col("buys"), F.array(F.lit("purchase"))).otherwise(empty),
    )
    return visits.withColumn("steps", steps)


def clicks(visits: DataFrame, plan: Plan) -> DataFrame:
    """One row per click event of every visit, fields as the contract names them."""
    s = plan.seed
    exploded = _steps(visits).select("*", F.posexplode("steps").alias("step_no", "event_type"))
    e = ("session_key", "step_no")
    event_time = F.timestamp_micros(
        F.unix_micros(F.col("session_start")) + (F.col("step_no") * 90 + F.floor(uniform(s, "gap", *e) * 60)) * 1_000_000 + F.floor(uniform(s, "ms", *e) * 1000) * 1000
    )
    product = F.col("event_type").isin("product_view", "add_to_cart")
    return exploded.select(
        F.concat(F.lit("e-"), F.col("session_key"), F.lit("-"), F.col("step_no")).alias("event_id"),
        event_time.alias("event_time"),
        F.timestamp_micros(F.unix_micros(event_time) + (50 + F.floor(uniform(s, "lag", *e) * 3950)).cast("long") * 1000).alias("received_time"),
        "event_type",
        "anonymous_id",
        F.when(F.col("logged_in"), F.col("account")).alias("account_id"),
        "tracking_consent",
        F.format_string("/%s?c=%s", F.regexp_replace("event_type", "_", "-"), F.col("category")).alias("page_url"),
        F.when(F.col("step_no") == 0, F.col("referrer_url")).alias("referrer_url"),
        F.when(product, F.format_string("%s-%d", F.col("category").substr(1, 3), F.floor(uniform(s, "product", *e) * 500).cast("int"))).alias("product_id"),
        F.when(product, F.col("category")).alias("category"),
        F.when(product, F.format_string("%.2f", list_price(F.col("category")).cast("double"))).alias("price"),
        F.when(F.col("event_type") == "purchase", F.concat(F.lit("O-"), F.col("session_key"))).alias("order_id"),
        F.when(F.col("event_type") == "search", F.col("category")).alias("search_query"),
        F.coalesce("utm_source", F.when(F.col("utm_campaign").isNotNull(), F.lit("newsletter"))).alias("utm_source"),
        F.coalesce("utm_medium", F.when(F.col("utm_campaign").isNotNull(), F.lit("email"))).alias("utm_medium"),
        "utm_campaign",
        "device",
        F.lit("TW").alias("country"),
    )


def order_lines(visits: DataFrame, plan: Plan) -> DataFrame:
    """One row per order line version: every buying visit's lines, and later status changes."""
    s = plan.seed
    buying = _steps(visits.where("buys"))
    lines = buying.select("*", F.explode(F.sequence(F.lit(1), (1 + F.floor(uniform(s, "lines", "session_key") * 3)).cast("int"))).alias("line_no"))
    l_ids = ("session_key", "line_no")
    # Later lines follow the member's taste as their visits do: the favourite 60% of the time.
    favourite = F.col("favourite_category").isNotNull() & (uniform(s, "line_in_favourite", *l_ids) < 0.6)
    hunter = F.col("_hunter")
    category = (
        F.when(F.col("line_no") == 1, F.col("category"))
        .when(hunter, F.lit(BARGAIN_CATEGORY))
        .when(favourite, F.col("favourite_category"))
        .otherwise(choice(uniform(s, "line_category", *l_ids), CATEGORIES))
    )
    # Drawn once as columns: the price (a branch per category) and the columns below refer to
    # them, so no expression repeats the category's draw (the formatted lines' plan: 107k -> 61k
    # characters, optimised in 0.19 s instead of 0.67 s).
    drawn = lines.withColumn("_hunter", bargain_hunter(s, F.col("account"))).withColumn("_category", category).withColumn(
        "_unit_price", F.round(list_price(F.col("_category")) * F.exp(0.4 * normal(s, "unit_price", *l_ids)), 0)
    ).withColumn("_quantity", (1 + F.floor(uniform(s, "quantity", *l_ids) * 2)).cast("int"))
    category, unit_price, quantity = F.col("_category"), F.col("_unit_price"), F.col("_quantity")
    order_time = F.timestamp_seconds(F.unix_timestamp("session_start") + (F.size("steps") - 1) * 90 + 60)
    guest = F.col("account").isNull()
    first = drawn.select(
        F.concat(F.lit("O-"), F.col("session_key")).alias("order_id"),
        "line_no",
        order_time.alias("order_time"),
        F.when(~guest, F.col("account")).alias("account_id"),
        F.when(guest, F.format_string("guest%d@mail.example", F.floor(uniform(s, "guest", "session_key") * 1e6).cast("int"))).alias("guest_email"),
        F.when(F.col("device") == "app", "app").otherwise("web").alias("channel"),
        F.lit(None).cast("string").alias("store_id"),
        F.format_string("%s-%d", category.substr(1, 3), F.floor(uniform(s, "line_product", *l_ids) * 500).cast("int")).alias("product_id"),
        category.alias("category"),
        quantity.alias("quantity"),
        unit_price.alias("unit_price"),
        F.when(uniform(s, "discount", *l_ids) < F.when(hunter, BARGAIN_DISCOUNTED_SHARE).otherwise(0.2),
               F.round(unit_price * quantity * F.when(hunter, BARGAIN_DISCOUNT).otherwise(0.1), 2)).otherwise(F.lit(0.0)).alias("discount"),
        F.lit("TWD").alias("currency"),
        F.lit("completed").alias("status"),
        order_time.alias("updated_time"),
        uniform(s, "status_change", *l_ids).alias("_change"),
        uniform(s, "change_delay", *l_ids).alias("_delay"),
        "_hunter",
    )
    returned = F.col("_change") < F.when(hunter, BARGAIN_RETURNED_SHARE).otherwise(0.04)
    changed = first.where(returned | (F.col("_change") < 0.06)).withColumn("status", F.when(returned, "returned").otherwise("cancelled")).withColumn(
        "updated_time", F.timestamp_seconds(F.unix_timestamp("order_time") + (1 + F.floor(F.col("_delay") * 8)) * 86400 + F.floor(F.col("_delay") * 97) * 431)
    )
    return first.unionByName(changed).drop("_change", "_delay", "_hunter")

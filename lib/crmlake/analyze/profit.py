"""Who is profitable: ``gold.customer_profitability``, per person and score date, what each
person brought and cost over the last ``analyze.lifetime_value.horizon_days`` up to the run date
(the window of ``current_value`` in ``gold.customer_scores``), and the Pareto curve and value
tiers on profit beside those on revenue.

Every person scored that date has a row (one who did nothing in the window has zeros). Order
lines are as they stood at the end of the run date and count by their order date; service
contacts (:func:`crmlake.analyze.service.contacts_as_of`) by their opening date; marketing
contacts (``gold.contact_history``, treatment group only: the control group is not contacted) by
their contact date, each with today's person of its account. Money is in ``business.currency``;
margins and unit costs are conf (``analyze.profit``; a marketing contact costs
``campaigns.cost_per_contact`` of its channel). The columns: :data:`DEFINITIONS`, each stated
once, for any report to reuse.

``gold.profit_pareto`` is the Pareto curve (:func:`crmlake.analyze.value.pareto_curve`) over
the persons with a positive profit, written beside ``gold.pareto`` (revenue to date) with its
chart; the stage's summary gives the share of the profit the top 20% of them bring.
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.analyze.value import with_value_tier
from crmlake.analyze.writers import pareto
from crmlake.config import Conf
from crmlake.config_analyze import Profit, Value
from crmlake.lake import Lake
from crmlake.people import ACCOUNT, with_person_id

CUSTOMER_PROFITABILITY = "gold.customer_profitability"
PROFIT_PARETO = "gold.profit_pareto"
CONTACT_HISTORY = "gold.contact_history"

DEFINITIONS = {
    "revenue": "the line amounts (quantity x unit price - discount) of the completed lines ordered in the window: current_value of the scores",
    "gross_margin": "revenue minus the cost of goods; a line's cost of goods is its list price (quantity x unit price) x (1 - its category's margin), "
                    "so a discount comes off the margin in full",
    "discounts": "the discounts given on those lines (already out of revenue and gross margin)",
    "returned_lines": "the lines ordered in the window and returned by the run date (no revenue)",
    "return_costs": "returned lines x the handling cost of a returned line",
    "service_contacts": "the service contacts the person opened in the window",
    "service_costs": "service contacts x the cost of a service contact",
    "marketing_contacts": "the times the person was in a treatment group of gold.contact_history in the window",
    "marketing_costs": "each marketing contact at the cost per contact of its channel",
    "profit": "gross margin - return costs - service costs - marketing costs",
    "predicted_profit": "predicted_value of the scores (lifetime value over the next horizon) x the person's profit / revenue; null without revenue",
    "profit_tier": "the value tiers of analyze.value on profit: profit for current value, predicted profit for predicted value (margin 1: it is profit)",
}
FIGURES = ("revenue", "gross_margin", "discounts", "returned_lines", "return_costs", "service_contacts", "service_costs",
           "marketing_contacts", "marketing_costs", "profit")   # customer_profitability's columns, in order
COUNTS = ("returned_lines", "service_contacts", "marketing_contacts")


def _in_window(date: Column, run_date: dt.date, horizon_days: int) -> Column:
    """Column: True for a ``date`` in the ``horizon_days`` up to and including ``run_date``."""
    return (date > F.lit(run_date - dt.timedelta(days=horizon_days))) & (date <= F.lit(run_date))


def category_margin(category: Column, rules: Profit) -> Column:
    """Column: the margin of ``category`` (``analyze.profit.category_margin``, else ``default_margin``)."""
    margin = F.lit(rules.default_margin)
    for name, share in sorted(rules.category_margin.items()):
        margin = F.when(category == F.lit(name), F.lit(share)).otherwise(margin)
    return margin


def contact_cost(channel: Column, cost_per_contact: dict[str, float]) -> Column:
    """Column: what one marketing contact on ``channel`` costs (``campaigns.cost_per_contact``; null for a channel without a cost)."""
    cost = F.lit(None).cast("double")
    for name, each in sorted(cost_per_contact.items()):
        cost = F.when(channel == F.lit(name), F.lit(float(each))).otherwise(cost)
    return cost


def person_sales(order_lines: DataFrame, run_date: dt.date, horizon_days: int, rules: Profit) -> DataFrame:
    """Return (person_id, revenue, gross_margin, discounts, returned_lines) of the lines ordered in
    the window (definitions: :data:`DEFINITIONS`); persons with no line then are not in it.

    Takes order lines with person_id (as :func:`crmlake.analyze.features.order_lines_as_of`).
    """
    lines = order_lines.where(F.col("person_id").isNotNull() & _in_window(F.col("order_date"), run_date, horizon_days))
    completed = F.col("status") == "completed"
    cost_of_goods = F.col("quantity") * F.col("unit_price") * (1 - category_margin(F.col("category"), rules))
    return lines.groupBy("person_id").agg(
        F.sum(F.when(completed, F.col("line_amount"))).cast("double").alias("revenue"),
        F.sum(F.when(completed, F.col("line_amount") - cost_of_goods)).cast("double").alias("gross_margin"),
        F.sum(F.when(completed, F.col("discount"))).cast("double").alias("discounts"),
        F.sum((F.col("status") == "returned").cast("int")).cast("bigint").alias("returned_lines"),
    )


def person_service_contacts(person_contacts: DataFrame, run_date: dt.date, horizon_days: int) -> DataFrame:
    """Return (person_id, service_contacts) opened in the window. Takes
    :func:`crmlake.analyze.service.contacts_as_of` with person_id."""
    opened = person_contacts.where(F.col("person_id").isNotNull() & _in_window(F.col("opened_date"), run_date, horizon_days))
    return opened.groupBy("person_id").agg(F.count(F.lit(1)).alias("service_contacts"))


def person_marketing_contacts(contact_history: DataFrame, identity_map: DataFrame, run_date: dt.date, horizon_days: int,
                              cost_per_contact: dict[str, float]) -> DataFrame:
    """Return (person_id, marketing_contacts, marketing_costs): the treatment-group contacts of
    the window, each with today's person of its account, and what they cost by channel.

    Takes gold.contact_history (contact_date, channel, account_id, group) and silver.identity_map.
    """
    treated = contact_history.where((F.col("group") == "treatment") & _in_window(F.col("contact_date"), run_date, horizon_days))
    owned = with_person_id(treated, identity_map, (ACCOUNT, F.col("account_id"))).where(F.col("person_id").isNotNull())
    return owned.groupBy("person_id").agg(
        F.count(F.lit(1)).alias("marketing_contacts"), F.sum(contact_cost(F.col("channel"), cost_per_contact)).alias("marketing_costs"),
    )


def customer_profitability(persons: DataFrame, sales: DataFrame, service_contacts: DataFrame, marketing_contacts: DataFrame,
                           rules: Profit) -> DataFrame:
    """Return one row per person of ``persons`` with the figures of :data:`DEFINITIONS` up to
    ``profit`` (money rounded to cents; a person without a figure has 0).

    Takes persons (person_id, ...: their other columns are kept), :func:`person_sales`,
    :func:`person_service_contacts` and :func:`person_marketing_contacts`.
    """
    joined = persons.join(sales, "person_id", "left").join(service_contacts, "person_id", "left").join(marketing_contacts, "person_id", "left")
    counts = {c: F.coalesce(F.col(c), F.lit(0)).cast("bigint") for c in COUNTS}
    money = {c: F.coalesce(F.col(c), F.lit(0.0)) for c in ("revenue", "gross_margin", "discounts", "marketing_costs")}
    return_costs = counts["returned_lines"] * F.lit(rules.return_cost)
    service_costs = counts["service_contacts"] * F.lit(rules.service_contact_cost)
    profit = money["gross_margin"] - return_costs - service_costs - money["marketing_costs"]
    figures = {**money, "return_costs": return_costs, "service_costs": service_costs, "profit": profit}
    return joined.select(*persons.columns, *[counts[c].alias(c) if c in COUNTS else F.round(figures[c], 2).alias(c) for c in FIGURES])


def with_profit_tier(persons: DataFrame, rules: Value, accuracy: int) -> DataFrame:
    """Add ``predicted_profit`` and ``profit_tier`` (:data:`DEFINITIONS`): the tiers of
    :func:`crmlake.analyze.value.with_value_tier` with profit for value.

    Takes :func:`customer_profitability` rows with ``predicted_value`` (revenue predicted over the next horizon).
    """
    predicted_profit = F.when(F.col("revenue") > 0, F.col("predicted_value") * F.col("profit") / F.col("revenue"))
    predicted = persons.withColumn("predicted_profit", F.round(predicted_profit, 2))
    on_profit = predicted.select("person_id", F.col("profit").alias("current_value"), F.col("predicted_profit").alias("predicted_value"))
    # Margin 1: predicted profit is a margin already.
    tiers = with_value_tier(on_profit, rules.model_copy(update={"margin": 1.0}), accuracy)
    return predicted.join(tiers.select("person_id", F.col("value_tier").alias("profit_tier")), "person_id")


def write_customer_profitability(lake: Lake, conf: Conf, scores: DataFrame, order_lines: DataFrame, person_contacts: DataFrame,
                                 identity_map: DataFrame, run_date: dt.date, report_dir: str) -> dict:
    """Write gold.customer_profitability and gold.profit_pareto (and its chart) for ``run_date``;
    return the persons written, the tiers on profit, total profit, the loss-making persons and
    ``profit_share_of_top_20pct``.

    Takes the run date's scores (person_id, value_tier, predicted_value), order lines with
    person_id and :func:`crmlake.analyze.service.contacts_as_of` with person_id, both as of the
    run date, and silver.identity_map.
    """
    horizon, rules = conf.analyze.lifetime_value.horizon_days, conf.analyze.profit
    if lake.exists(CONTACT_HISTORY):
        marketing = person_marketing_contacts(lake.read(CONTACT_HISTORY), identity_map, run_date, horizon, conf.campaigns.cost_per_contact.model_dump())
    else:   # decide has not contacted anyone yet
        marketing = lake.spark.createDataFrame([], "person_id string, marketing_contacts bigint, marketing_costs double")
    figures = customer_profitability(
        scores.select("person_id", "value_tier", "predicted_value"), person_sales(order_lines, run_date, horizon, rules),
        person_service_contacts(person_contacts, run_date, horizon), marketing, rules,
    ).cache()   # the tiers count and cut it before its rows are written
    table = with_profit_tier(figures, conf.analyze.value, conf.analyze.ranking.quantile_accuracy).drop("predicted_value").withColumn("score_date", F.lit(run_date))
    written = lake.overwrite_where(CUSTOMER_PROFITABILITY, table, f"score_date = DATE'{run_date}'", partition_by=["score_date"]).rows_written
    figures.unpersist()
    today = lake.read(CUSTOMER_PROFITABILITY).where(f"score_date = DATE'{run_date}'")
    # Safe to collect: one row per tier.
    tiers = {r["profit_tier"]: r["count"] for r in today.groupBy("profit_tier").count().collect()}
    totals = today.agg(F.sum("profit").alias("profit"), F.sum((F.col("profit") < 0).cast("int")).alias("loss_making")).first()
    facts = {"persons": written, "profit_tiers": tiers, "profit": round(totals["profit"] or 0.0, 2), "loss_making_persons": totals["loss_making"] or 0}
    facts.update(pareto(lake, conf, report_dir, today, run_date, value_col="profit", measure="profit", table=PROFIT_PARETO))
    return facts

"""Contact outcomes: what happened after a contact, the one definition of a conversion.

Decide's campaign results (contacted against control) and analyze's uplift labels are both
made of it, so it lives below the stages that share it; so do the campaign results' table
(``gold.campaign_results``, decide writes it, analyze's monthly report reads it) and the one
definition of each of its columns (:data:`CAMPAIGN_RESULT_DEFINITIONS`).
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

CAMPAIGN_RESULTS = "gold.campaign_results"
CAMPAIGN_RESULT_DEFINITIONS = {
    "contacted": "persons of the audience's treatment group contacted on the date; control: those held out of it.",
    "contacted_converted": "contacted persons with a completed order in the attribution_days after the contact date (control_converted: likewise of the control).",
    "window_complete": "true once attribution_days have passed since the contact date: until then the figures may still grow.",
    "conversion_contacted": "contacted_converted / contacted (conversion_control: control_converted / control).",
    "lift": "conversion_contacted - conversion_control, with its 95% interval lift_ci_low to lift_ci_high (normal approximation of the difference of two proportions).",
    "relative_lift": "lift / conversion_control.",
    "revenue_per_contact": "the completed orders' revenue in the attribution window per contacted person (revenue_per_control: per control person), in business.currency.",
    "channel": "the channel the audience was exported to (email, sms, ads).",
    "incremental_revenue": "(revenue_per_contact - revenue_per_control) x contacted: the revenue the contact added, in business.currency; null without a control group.",
    "cost": "contacted x campaigns.cost_per_contact of the channel, in business.currency.",
    "roi": "(incremental_revenue - cost) / cost: what each unit spent returned beyond itself (0 breaks even, -1 earned nothing); null without a control group or a cost.",
}


def contact_outcomes(contacts: DataFrame, orders: DataFrame, attribution_days: int, carry: tuple = ()) -> DataFrame:
    """Return one row per audience, contact date, group and person: ``converted`` (a completed
    order in the ``attribution_days`` after the contact date) and ``revenue`` in that window.

    Takes contact rows (contact_date, audience, person_id, group, and the ``carry`` columns,
    one value per contact, kept as they are) and completed order lines with ``person_id``,
    ``order_date`` and ``line_amount``. The one definition of a conversion: campaign results
    and the uplift model's labels are both made of it.
    """
    in_window = (F.col("order_date") > F.col("contact_date")) & (F.col("order_date") <= F.date_add("contact_date", attribution_days))
    return (
        contacts.join(orders.select("person_id", "order_date", "line_amount"), "person_id", "left")
        .groupBy("audience", "contact_date", "group", "person_id")
        .agg(
            F.max(F.coalesce(in_window, F.lit(False))).alias("converted"),
            F.sum(F.when(in_window, F.col("line_amount")).otherwise(0)).cast("double").alias("revenue"),
            *[F.first(c).alias(c) for c in carry],
        )
    )

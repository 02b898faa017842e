"""Contact outcomes: what happened after a contact, the one definition of a conversion.

Decide's campaign results (contacted against control) and analyze's uplift labels are both
made of it, so it lives below the stages that share it.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


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

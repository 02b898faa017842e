"""Order lines as the contract defines them, shared by the stages that read ``bronze.orders``.

Organize merges the latest status of every line into ``silver.order_lines``; analyze
rebuilds the lines as they stood on a past date (point-in-time features) from the same
versions, with the same rule, so that a line means one thing everywhere.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake.lake import latest_per_key


def latest_order_lines(orders: DataFrame) -> DataFrame:
    """Return one row per (order_id, line_no): the latest ``updated_time`` wins, whichever file it came in.

    Takes bronze order line versions. Adds ``line_amount = quantity * unit_price - discount`` (decimal).
    """
    latest = latest_per_key(orders, ["order_id", "line_no"], "updated_time", tie_breaker="ingested_at")
    return latest.select(
        "order_id", "line_no", "order_time", "order_date", "account_id", "guest_email", "channel", "store_id",
        "product_id", "category", "quantity", "unit_price",
        F.coalesce("discount", F.lit(0).cast("decimal(18,2)")).alias("discount"),
        "currency", "status", "updated_time",
        (F.col("quantity") * F.col("unit_price") - F.coalesce("discount", F.lit(0))).cast("decimal(18,2)").alias("line_amount"),
    )

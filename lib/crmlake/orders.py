"""Order lines as the contract defines them, shared by the stages that read ``bronze.orders``.

Organize merges the latest status of every line into ``silver.order_lines``; analyze
rebuilds the lines as they stood on a past date (point-in-time features) from the same
versions, with the same rule, so that a line means one thing everywhere.

An order line's money leaves bronze in ``business.currency``: a line in another currency (the
contract's ``currency``; a line naming none is in :data:`CONTRACT_CURRENCY`) is converted at
the fixed rate ``business.exchange_rates`` gives its currency, so that revenue, value tiers,
profit and reports never add two currencies. A line whose currency has no rate keeps its
``currency`` and reads null money (no sum counts it: it is still an order, of no revenue);
organize counts the versions of such lines per currency and warns (:func:`lines_without_rate`).
"""

from __future__ import annotations

from decimal import Decimal

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from crmlake.config_schema import Business
from crmlake.lake import latest_per_key

CONTRACT_CURRENCY = "TWD"   # the contract's currency of a line that names none
MONEY = "decimal(18,2)"


def line_currency() -> Column:
    """Column: an order line's ``currency`` trimmed, in capitals; :data:`CONTRACT_CURRENCY` when it names none."""
    return F.coalesce(F.upper(F.trim(F.col("currency"))), F.lit(CONTRACT_CURRENCY))


def in_business_currency(amount: Column, currency: Column, business: Business) -> Column:
    """Column: ``amount`` (decimal, in ``currency``) in ``business.currency``: unchanged in it,
    times ``business.exchange_rates`` of another currency, null for a currency without a rate."""
    converted = F.when(currency == F.lit(business.currency), amount)
    for code, rate in sorted(business.exchange_rates.items()):
        converted = converted.when(currency == F.lit(code), amount * F.lit(Decimal(str(rate))))
    return converted.cast(MONEY)


def latest_order_lines(orders: DataFrame, business: Business) -> DataFrame:
    """Return one row per (order_id, line_no): the latest ``updated_time`` wins, whichever file it came in.

    Takes bronze order line versions and the business's currency settings. ``currency`` is
    the line's own, trimmed, in capitals (:data:`CONTRACT_CURRENCY` when it names none);
    ``unit_price``, ``discount`` (0 when none) and ``line_amount = quantity * unit_price -
    discount`` are in ``business.currency`` (decimal; null when the line's currency has no
    rate). Each is converted and rounded to the cent on its own, so a converted line's
    amount may differ from its converted parts by a cent.
    """
    latest = latest_per_key(orders, ["order_id", "line_no"], "updated_time", tie_breaker="ingested_at")
    currency = line_currency()
    discount = F.coalesce(F.col("discount"), F.lit(0).cast(MONEY))
    return latest.select(
        "order_id", "line_no", "order_time", "order_date", "account_id", "guest_email", "channel", "store_id",
        "product_id", "category", "quantity",
        in_business_currency(F.col("unit_price"), currency, business).alias("unit_price"),
        in_business_currency(discount, currency, business).alias("discount"),
        currency.alias("currency"), "status", "updated_time",
        in_business_currency((F.col("quantity") * F.col("unit_price") - discount).cast(MONEY), currency, business).alias("line_amount"),
    )


def lines_without_rate(orders: DataFrame, business: Business) -> dict:
    """Return {currency: line versions} of the order line versions (bronze.orders rows) whose
    currency has no rate to ``business.currency``: their money reads null. Reads the
    ``currency`` column alone."""
    currency = line_currency()
    # Safe to collect: one row per currency.
    unknown = orders.select(currency.alias("currency")).where(~F.col("currency").isin(business.currency, *business.exchange_rates))
    return {r["currency"]: r["count"] for r in unknown.groupBy("currency").count().collect()}

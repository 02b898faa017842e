"""B2B customers: the company behind ``business`` accounts.

Several ``business`` accounts (buyers, decision makers) share a ``company_id``; together they
are one customer company, valued and contacted as one account. ``silver.companies`` is
rebuilt from ``silver.customers`` and ``silver.order_lines`` every run, so an erased account
(whose ``company_id`` is blanked) leaves its company with the next run.
"""

from __future__ import annotations

from pyspark.sql import DataFrame
from pyspark.sql import functions as F


def company_accounts(accounts: DataFrame) -> DataFrame:
    """Return (company_id, account_id) for every live ``business`` account that names a company."""
    business = (~F.col("erased")) & (F.col("account_type") == "business") & F.col("company_id").isNotNull()
    return accounts.where(business).select("company_id", "account_id")


def companies(accounts: DataFrame, order_lines: DataFrame) -> DataFrame:
    """Return one row per company of live business accounts (silver.companies).

    Takes silver.customers (account_id, erased, account_type, company_id) and order lines
    (account_id, order_id, order_time, status, line_amount). Columns: company_id,
    account_ids (sorted; personal data: they identify the company's people), accounts,
    buyers (accounts with a completed order), orders, revenue, first_order_at,
    last_order_at, last_buyer_account_id (the account of the latest completed order: the
    company's contact).
    """
    members = company_accounts(accounts)
    per_buyer = (
        order_lines.where(F.col("status") == "completed")
        .join(members, "account_id")
        .groupBy("company_id", "account_id")
        .agg(
            F.countDistinct("order_id").alias("orders"),
            F.sum("line_amount").alias("revenue"),
            F.min("order_time").alias("first_order_at"),
            F.max("order_time").alias("last_order_at"),
        )
    )
    bought = per_buyer.groupBy("company_id").agg(
        F.count(F.lit(1)).alias("buyers"),
        F.sum("orders").alias("orders"),
        F.sum("revenue").cast("decimal(18,2)").alias("revenue"),
        F.min("first_order_at").alias("first_order_at"),
        F.max("last_order_at").alias("last_order_at"),
        # The latest buyer; on a tie of order times, the greater account id (deterministic).
        F.max_by("account_id", F.struct("last_order_at", "account_id")).alias("last_buyer_account_id"),
    )
    held = members.groupBy("company_id").agg(F.sort_array(F.collect_list("account_id")).alias("account_ids"))
    return held.join(bought, "company_id", "left").select(
        "company_id", "account_ids", F.size("account_ids").alias("accounts"),
        F.coalesce("buyers", F.lit(0)).cast("long").alias("buyers"), F.coalesce("orders", F.lit(0)).cast("long").alias("orders"),
        F.coalesce("revenue", F.lit(0).cast("decimal(18,2)")).alias("revenue"),
        "first_order_at", "last_order_at", "last_buyer_account_id",
    )

"""The loop back: what each exported audience achieved against its control group, and what it earned for its cost.

A contact (or a control member) *converts* when the person completes an order in the
``attribution_days`` after the contact date. Contacted and control persons are measured
the same way, and a control person is contacted by no audience served after theirs that
day (:mod:`crmlake.decide.audiences`), so the difference is the campaign's effect: what
being in its treatment adds to what the audiences before it did. Each column of
:func:`campaign_results` is defined once, in :data:`crmlake.contacts.CAMPAIGN_RESULT_DEFINITIONS`. Orders that follow a
contact are also the next propensity training's labels, so outcomes feed the models.
"""

from __future__ import annotations

from collections.abc import Mapping

from pyspark.sql import DataFrame
from pyspark.sql import functions as F

from crmlake import charts
from crmlake.contacts import contact_outcomes

Z_95 = 1.959964
"""Each column of gold.campaign_results in one sentence; a rate or figure whose denominator is 0 is null."""


def campaign_results(contacts: DataFrame, orders: DataFrame, run_date, attribution_days: int, cost_per_contact: Mapping[str, float]) -> DataFrame:
    """Return one row per audience and contact date (each column: :data:`crmlake.contacts.CAMPAIGN_RESULT_DEFINITIONS`).

    Takes ``gold.contact_history`` (contact_date, audience, channel, person_id, group),
    completed order lines with ``person_id``, ``order_date`` and ``line_amount``, and the cost
    of one contact by channel (``campaigns.cost_per_contact``). Columns: audience,
    contact_date, window_complete, contacted, control, contacted_converted,
    control_converted, conversion_contacted, conversion_control, lift, lift_ci_low,
    lift_ci_high, relative_lift, revenue_per_contact, revenue_per_control, channel,
    incremental_revenue, cost, roi.
    """
    per_person = contact_outcomes(contacts, orders, attribution_days, carry=("channel",))
    per_group = per_person.groupBy("audience", "contact_date", "channel").agg(
        *[
            expr
            for group, prefix in (("treatment", "contacted"), ("control", "control"))
            for expr in (
                F.sum(F.when(F.col("group") == group, 1).otherwise(0)).alias(prefix),
                F.sum(F.when((F.col("group") == group) & F.col("converted"), 1).otherwise(0)).alias(f"{prefix}_converted"),
                F.sum(F.when(F.col("group") == group, F.col("revenue")).otherwise(0.0)).alias(f"_{prefix}_revenue"),
            )
        ]
    )
    rate = lambda n, k: F.when(F.col(n) > 0, F.col(k) / F.col(n))  # noqa: E731
    pt, pc = rate("contacted", "contacted_converted"), rate("control", "control_converted")
    with_rates = per_group.withColumn("conversion_contacted", pt).withColumn("conversion_control", pc)
    se = F.sqrt(
        F.col("conversion_contacted") * (1 - F.col("conversion_contacted")) / F.col("contacted")
        + F.col("conversion_control") * (1 - F.col("conversion_control")) / F.col("control")
    )
    lift = F.col("conversion_contacted") - F.col("conversion_control")
    channel_cost = F.create_map(*[F.lit(v) for kv in cost_per_contact.items() for v in kv])[F.col("channel")]
    incremental = (rate("contacted", "_contacted_revenue") - rate("control", "_control_revenue")) * F.col("contacted")
    cost = F.col("contacted") * channel_cost
    return with_rates.select(
        "audience",
        "contact_date",
        (F.date_add("contact_date", attribution_days) <= F.lit(run_date)).alias("window_complete"),
        "contacted", "control", "contacted_converted", "control_converted",
        F.round("conversion_contacted", 6).alias("conversion_contacted"),
        F.round("conversion_control", 6).alias("conversion_control"),
        F.round(lift, 6).alias("lift"),
        F.round(lift - Z_95 * se, 6).alias("lift_ci_low"),
        F.round(lift + Z_95 * se, 6).alias("lift_ci_high"),
        F.round(F.when(F.col("conversion_control") > 0, F.col("conversion_contacted") / F.col("conversion_control") - 1), 6).alias("relative_lift"),
        F.round(rate("contacted", "_contacted_revenue"), 2).alias("revenue_per_contact"),
        F.round(rate("control", "_control_revenue"), 2).alias("revenue_per_control"),
        "channel",
        F.round(incremental, 2).alias("incremental_revenue"),
        F.round(cost, 2).alias("cost"),
        F.round(F.when(cost > 0, (incremental - cost) / cost), 4).alias("roi"),
    )


def lift_chart(rows: list[dict], path: str, attribution_days: int) -> None:
    """Draw the lift (contacted minus control conversion) with its 95% interval per audience and
    contact date into the PNG ``path``; a window still open is drawn hollow.

    Takes rows of :func:`campaign_results` as dicts.
    """
    audiences = sorted({r["audience"] for r in rows})
    dates = sorted({r["contact_date"] for r in rows})
    position = {d: i for i, d in enumerate(dates)}   # contact dates as categories, audiences side by side
    fig, ax = charts.figure(7, 3.4)
    for n, audience in enumerate(audiences):
        measured = [r for r in rows if r["audience"] == audience and r["lift"] is not None]
        for complete in (True, False):
            points = [r for r in measured if bool(r["window_complete"]) == complete]
            if not points:
                continue
            lifts = [r["lift"] for r in points]
            errors = [[r["lift"] - (r["lift_ci_low"] if r["lift_ci_low"] is not None else r["lift"]) for r in points],
                      [(r["lift_ci_high"] if r["lift_ci_high"] is not None else r["lift"]) - r["lift"] for r in points]]
            ax.errorbar([position[r["contact_date"]] + 0.15 * (n - (len(audiences) - 1) / 2) for r in points], lifts, yerr=errors, fmt="o", capsize=3, color=f"C{n}",
                        mfc=f"C{n}" if complete else "white", label=f"{audience}{'' if complete else ' (window open)'}")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_ylabel("lift in conversion")
    ax.set_title(f"Contacted vs control, {attribution_days}-day window, 95% interval")
    ax.set_xticks(range(len(dates)), [str(d) for d in dates])
    ax.set_xlim(-0.5, len(dates) - 0.5)
    if audiences:
        ax.legend()
    fig.autofmt_xdate()
    charts.save(fig, path)

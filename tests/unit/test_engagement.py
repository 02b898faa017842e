"""Campaign engagement per campaign and send date on a few hand-made events, answers worked out by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.analyze.engagement import DEFINITIONS, campaign_engagement


def at(day: int, hour: float = 0) -> dt.datetime:
    return dt.datetime(2026, 11, day) + dt.timedelta(hours=hour)


def test_recipients_count_for_their_send_date_and_rates_share_its_recipients(spark):
    sent = [("c1", a, "sent", at(1, 10), None) for a in ("A1", "A2", "A3", "A4")]
    rows = sent + [
        ("c1", "A1", "delivered", at(1, 10.1), None), ("c1", "A1", "opened", at(2, 9), None), ("c1", "A1", "opened", at(2, 9.5), None),   # opened twice: one opener
        ("c1", "A1", "clicked", at(2, 9.6), None), ("c1", "A1", "converted", at(2, 11), Decimal("100.00")),
        ("c1", "A2", "bounced", at(1, 10.1), None),
        ("c1", "A3", "delivered", at(1, 10.1), None), ("c1", "A3", "opened", at(1, 12), None), ("c1", "A3", "unsubscribed", at(1, 12.1), None),
        ("c1", "A4", "delivered", at(1, 10.1), None), ("c1", "A4", "complained", at(1, 13), None),
        ("c1", "A5", "sent", at(2, 10), None), ("c1", "A5", "delivered", at(2, 10.1), None), ("c1", "A5", "opened", at(3, 8), None),   # opened after the run date
    ]
    events = spark.createDataFrame(rows, "campaign_id string, account_id string, event string, event_time timestamp, revenue decimal(18,2)")
    table = {str(r["send_date"]): r.asDict() for r in campaign_engagement(events, dt.date(2026, 11, 2), "UTC", 2.5).collect()}
    first = {k: v for k, v in table["2026-11-01"].items() if k != "send_date"}
    assert first == {
        "campaign_id": "c1", "sent": 4, "delivered": 3, "opened": 2, "clicked": 1, "unsubscribed": 1, "bounced": 1, "complained": 1,
        "delivery_rate": 0.75, "open_rate": 0.6667, "click_rate": 0.3333, "unsubscribe_rate": 0.3333, "bounce_rate": 0.25, "complaint_rate": 0.3333,
        "conversions": 1, "revenue": Decimal("100.00"), "revenue_per_delivered": 33.33,
        "cost": Decimal("10.00"), "return_on_cost": 10.0,   # 4 sent x 2.5; 100 / 10
    }
    second = table["2026-11-02"]
    assert (second["sent"], second["delivered"], second["opened"], second["open_rate"], second["conversions"], second["revenue"]) == (1, 1, 0, 0.0, 0, Decimal("0.00"))
    assert (second["cost"], second["return_on_cost"]) == (Decimal("2.50"), 0.0)


def test_a_free_send_has_a_cost_of_zero_and_no_return_on_cost(spark):
    events = spark.createDataFrame([("c1", "A1", "sent", at(1, 10), None), ("c1", "A1", "converted", at(1, 12), Decimal("80.00"))],
                                   "campaign_id string, account_id string, event string, event_time timestamp, revenue decimal(18,2)")
    (row,) = campaign_engagement(events, dt.date(2026, 11, 2), "UTC", 0.0).collect()
    assert (row["cost"], row["return_on_cost"], row["revenue"]) == (Decimal("0.00"), None, Decimal("80.00"))


def test_every_column_is_defined_once_in_definitions(spark):
    events = spark.createDataFrame([("c1", "A1", "sent", at(1, 10), None)], "campaign_id string, account_id string, event string, event_time timestamp, revenue decimal(18,2)")
    figures = set(campaign_engagement(events, dt.date(2026, 11, 2), "UTC", 1.0).columns) - {"campaign_id", "send_date"}
    # The recipient counts after ``delivered`` are defined with it, in one sentence.
    assert figures - {"opened", "clicked", "unsubscribed", "bounced", "complained"} == set(DEFINITIONS)

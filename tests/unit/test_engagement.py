"""Campaign engagement per campaign and send date on a few hand-made events, answers worked out by hand."""

import datetime as dt
from decimal import Decimal

from crmlake.analyze.engagement import campaign_engagement


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
    table = {str(r["send_date"]): r.asDict() for r in campaign_engagement(events, dt.date(2026, 11, 2), "UTC").collect()}
    first = {k: v for k, v in table["2026-11-01"].items() if k != "send_date"}
    assert first == {
        "campaign_id": "c1", "sent": 4, "delivered": 3, "opened": 2, "clicked": 1, "unsubscribed": 1, "bounced": 1, "complained": 1,
        "delivery_rate": 0.75, "open_rate": 0.6667, "click_rate": 0.3333, "unsubscribe_rate": 0.3333, "bounce_rate": 0.25, "complaint_rate": 0.3333,
        "conversions": 1, "revenue": Decimal("100.00"), "revenue_per_delivered": 33.33,
    }
    second = table["2026-11-02"]
    assert (second["sent"], second["delivered"], second["opened"], second["open_rate"], second["conversions"], second["revenue"]) == (1, 1, 0, 0.0, 0, Decimal("0.00"))

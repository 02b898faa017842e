"""How persons answer campaign emails (propensity features) and their preferred channel, on a few hand-made rows, answers by hand."""

import datetime as dt

import pytest

from crmlake.analyze.channels import preferred_channels
from crmlake.analyze.features import ENGAGEMENT_COLUMNS, PROPENSITY_FEATURES, with_email_engagement

AS_OF = dt.date(2026, 11, 21)


def at(month: int, day: int, hour: float = 10) -> dt.datetime:
    return dt.datetime(2026, month, day) + dt.timedelta(hours=hour)


def test_email_engagement_counts_campaigns_delivered_in_the_window_and_their_opens_and_clicks_known_by_the_date(spark):
    rows = [
        ("P1", "c1", "sent", at(11, 10)), ("P1", "c1", "delivered", at(11, 10, 10.1)), ("P1", "c1", "opened", at(11, 11)), ("P1", "c1", "clicked", at(11, 11, 11)),
        ("P1", "c2", "sent", at(11, 15)), ("P1", "c2", "delivered", at(11, 15, 10.1)),
        ("P1", "c3", "sent", at(10, 1)), ("P1", "c3", "delivered", at(10, 1, 10.1)), ("P1", "c3", "opened", at(11, 1)),   # sent before the 30 days
        ("P1", "c4", "sent", at(11, 21)), ("P1", "c4", "delivered", at(11, 21, 10.1)), ("P1", "c4", "opened", at(11, 22)),   # opened after the date
        ("P1", "c5", "sent", at(11, 18)), ("P1", "c5", "bounced", at(11, 18, 10.1)),                                          # never delivered
        ("P3", "c1", "sent", at(11, 10)), ("P3", "c1", "delivered", at(11, 10, 10.1)), ("P3", "c1", "opened", at(11, 12)),
        ("P3", "c1", "sent", at(11, 10)), ("P3", "c1", "delivered", at(11, 10, 10.1)),                                        # their second account: one campaign
        (None, "c1", "opened", at(11, 12)),                                                                                   # an account of no one
    ]
    events = spark.createDataFrame(rows, "person_id string, campaign_id string, event string, event_time timestamp")
    behaviour = spark.createDataFrame([("P1", 3), ("P2", 0), ("P3", 1)], "person_id string, frequency int")
    table = {r["person_id"]: r.asDict() for r in with_email_engagement(behaviour, events, AS_OF, "UTC").collect()}
    assert table == {
        "P1": {"person_id": "P1", "frequency": 3, "emails_delivered_30d": 3, "email_open_rate_30d": 0.3333, "email_click_rate_30d": 0.3333},
        "P2": {"person_id": "P2", "frequency": 0, "emails_delivered_30d": 0, "email_open_rate_30d": 0.0, "email_click_rate_30d": 0.0},
        "P3": {"person_id": "P3", "frequency": 1, "emails_delivered_30d": 1, "email_open_rate_30d": 1.0, "email_click_rate_30d": 0.0},
    }
    assert set(ENGAGEMENT_COLUMNS) <= set(PROPENSITY_FEATURES)


@pytest.fixture
def history(spark):
    behaviour = spark.createDataFrame([("P1", 0.5), ("P2", 0.0), ("P3", 0.0), ("P4", 0.0), ("P5", 0.0)], "person_id string, email_click_rate_30d double")
    lines = spark.createDataFrame(
        [
            ("P1", "o0", 1, "web", dt.date(2026, 11, 1), "completed"),
            ("P2", "o3", 1, "web", dt.date(2026, 11, 1), "completed"), ("P2", "o4", 1, "web", dt.date(2026, 11, 2), "completed"),
            *[("P2", "o1", n, "app", dt.date(2026, 11, 3), "completed") for n in (1, 2, 3)],   # one order of three lines
            ("P2", "o2", 1, "app", dt.date(2026, 11, 4), "returned"), ("P2", "o5", 1, "app", dt.date(2026, 11, 25), "completed"),   # returned; after the date
            ("P4", "o6", 1, "web", dt.date(2026, 11, 1), "completed"), ("P4", "o7", 1, "store", dt.date(2026, 11, 10), "completed"),
        ],
        "person_id string, order_id string, line_no int, channel string, order_date date, status string",
    )
    sessions = spark.createDataFrame(
        [("P3", "desktop", at(11, 1)), ("P3", "mobile", at(11, 2)), ("P3", "app", at(11, 3)), ("P4", "app", at(11, 3)), ("P4", "app", at(11, 4))],
        "person_id string, device string, session_start timestamp",
    )
    return behaviour, lines, sessions


def test_the_preferred_channel_is_email_for_a_clicker_else_the_orders_then_the_visits_channel(history):
    behaviour, lines, sessions = history
    preferred = {r["person_id"]: r["preferred_channel"] for r in preferred_channels(behaviour, lines, sessions, AS_OF).collect()}
    assert preferred == {
        "P1": "email",   # clicked a campaign email, whatever they bought on
        "P2": "web",     # two web orders against one app order (of three lines); the returned and the later order do not count
        "P3": "web",     # no order: two visits on the web (desktop, mobile), one in the app
        "P4": "store",   # one web and one store order: the latest wins the tie; their app visits do not count beside orders
        "P5": None,      # nothing tells
    }

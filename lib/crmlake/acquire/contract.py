"""The landing-zone contract (../shared/contract.md) as data: fields, types, enums, keys.

Every rule acquire enforces is read from here, so the contract lives in one place.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMESTAMP, MONEY, BOOL, INT, STRING = "timestamp", "money", "bool", "int", "string"
ALWAYS, ON_UPSERT, OPTIONAL = "always", "on_upsert", "optional"


@dataclass(frozen=True)
class Field:
    """One field of a source: its type, whether it is required, and its allowed values."""

    name: str
    kind: str = STRING
    required: str = OPTIONAL
    values: tuple = ()
    identifier: bool = False  # opaque id: at most 128 characters


@dataclass(frozen=True)
class Source:
    """One landing source: file format, fields, the key that makes a record a duplicate, partitioning."""

    name: str
    format: str                     # "json" (JSON lines) or "csv" (with header)
    fields: tuple
    key: tuple                      # fields identifying a record; () = the whole record
    partition_time: str | None      # timestamp whose business date partitions the bronze table

    @property
    def bronze_table(self) -> str:
        return f"bronze.{self.name}"

    def field(self, name: str) -> Field:
        return next(f for f in self.fields if f.name == name)


EVENT_TYPES = ("page_view", "product_view", "search", "add_to_cart", "remove_from_cart", "checkout_start", "purchase", "login", "signup", "logout")

SOURCES = {
    "clickstream": Source(
        "clickstream",
        "json",
        (
            Field("event_id", required=ALWAYS, identifier=True),
            Field("event_time", TIMESTAMP, ALWAYS),
            Field("received_time", TIMESTAMP, ALWAYS),
            Field("event_type", required=ALWAYS, values=EVENT_TYPES),
            Field("anonymous_id", required=ALWAYS, identifier=True),
            Field("account_id", identifier=True),
            Field("tracking_consent", BOOL, ALWAYS),
            Field("page_url", required=ALWAYS),
            Field("referrer_url"),
            Field("product_id", identifier=True),
            Field("category"),
            Field("price", MONEY),
            Field("order_id", identifier=True),
            Field("search_query"),
            Field("utm_source"),
            Field("utm_medium"),
            Field("utm_campaign"),
            Field("device", required=ALWAYS, values=("desktop", "mobile", "tablet", "app")),
            Field("country"),
            Field("region"),
        ),
        key=("event_id",),
        partition_time="event_time",
    ),
    "orders": Source(
        "orders",
        "csv",
        (
            Field("order_id", required=ALWAYS, identifier=True),
            Field("line_no", INT, ALWAYS),
            Field("order_time", TIMESTAMP, ALWAYS),
            Field("account_id", identifier=True),
            Field("guest_email"),
            Field("channel", required=ALWAYS, values=("web", "app", "store", "phone", "b2b")),
            Field("store_id", identifier=True),
            Field("product_id", required=ALWAYS, identifier=True),
            Field("category"),
            Field("quantity", INT, ALWAYS),
            Field("unit_price", MONEY, ALWAYS),
            Field("discount", MONEY),
            Field("currency"),
            Field("status", required=ALWAYS, values=("completed", "cancelled", "returned")),
            Field("updated_time", TIMESTAMP, ALWAYS),
        ),
        key=(),
        partition_time="order_time",
    ),
    "customers": Source(
        "customers",
        "json",
        (
            Field("account_id", required=ALWAYS, identifier=True),
            Field("op", required=ALWAYS, values=("upsert", "erase")),
            Field("updated_time", TIMESTAMP, ALWAYS),
            Field("signup_time", TIMESTAMP, ON_UPSERT),
            Field("email"),
            Field("phone"),
            Field("name"),
            Field("gender", values=("f", "m", "x")),
            Field("birth_year", INT),
            Field("occupation"),
            Field("city"),
            Field("income_band", values=("low", "mid", "high")),
            Field("marketing_consent", BOOL, ON_UPSERT),
            Field("marketing_consent_time", TIMESTAMP),
            Field("referred_by", identifier=True),
            Field("account_type", required=ON_UPSERT, values=("consumer", "business")),
            Field("company_id", identifier=True),
        ),
        key=(),
        partition_time=None,
    ),
    "interactions": Source(
        "interactions",
        "csv",
        (
            Field("interaction_id", required=ALWAYS, identifier=True),
            Field("account_id", identifier=True),
            Field("channel", required=ALWAYS, values=("phone", "email", "chat", "message_board", "store")),
            Field("type", required=ALWAYS, values=("inquiry", "complaint", "praise", "return_request", "technical")),
            Field("opened_time", TIMESTAMP, ALWAYS),
            Field("closed_time", TIMESTAMP),
            Field("satisfaction", INT, values=("1", "2", "3", "4", "5")),
            Field("agent_id", identifier=True),
        ),
        key=(),
        partition_time=None,
    ),
    "campaign_events": Source(
        "campaign_events",
        "csv",
        (
            Field("campaign_id", required=ALWAYS, identifier=True),
            Field("account_id", required=ALWAYS, identifier=True),
            Field("event", required=ALWAYS, values=("sent", "delivered", "opened", "clicked", "converted", "unsubscribed", "bounced", "complained")),
            Field("event_time", TIMESTAMP, ALWAYS),
            Field("revenue", MONEY),
        ),
        key=(),
        partition_time="event_time",
    ),
}

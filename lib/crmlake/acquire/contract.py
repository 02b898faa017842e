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


def fields(table: str) -> tuple[Field, ...]:
    """Return the fields of one source from its contract table: a line per field, ``name kind
    required``, then ``id`` for an opaque identifier and the allowed values as ``a|b|c``."""
    parsed = []
    for line in table.strip().splitlines():
        name, kind, required, *rest = line.split()
        values = next((tuple(word.split("|")) for word in rest if "|" in word), ())
        if kind not in (TIMESTAMP, MONEY, BOOL, INT, STRING) or required not in (ALWAYS, ON_UPSERT, OPTIONAL) or len(rest) > ("id" in rest) + bool(values):
            raise ValueError(f"contract field line {line.strip()!r}: expected name, kind, required, then 'id' and/or a|b|c")
        parsed.append(Field(name, kind, required, values, identifier="id" in rest))
    return tuple(parsed)


SOURCES = {
    "clickstream": Source("clickstream", "json", fields("""
        event_id          string     always     id
        event_time        timestamp  always
        received_time     timestamp  always
        event_type        string     always     page_view|product_view|search|add_to_cart|remove_from_cart|checkout_start|purchase|login|signup|logout
        anonymous_id      string     always     id
        account_id        string     optional   id
        tracking_consent  bool       always
        page_url          string     always
        referrer_url      string     optional
        product_id        string     optional   id
        category          string     optional
        price             money      optional
        order_id          string     optional   id
        search_query      string     optional
        utm_source        string     optional
        utm_medium        string     optional
        utm_campaign      string     optional
        device            string     always     desktop|mobile|tablet|app
        country           string     optional
        region            string     optional
    """), key=("event_id",), partition_time="event_time"),
    "orders": Source("orders", "csv", fields("""
        order_id          string     always     id
        line_no           int        always
        order_time        timestamp  always
        account_id        string     optional   id
        guest_email       string     optional
        channel           string     always     web|app|store|phone|b2b
        store_id          string     optional   id
        product_id        string     always     id
        category          string     optional
        quantity          int        always
        unit_price        money      always
        discount          money      optional
        currency          string     optional
        status            string     always     completed|cancelled|returned
        updated_time      timestamp  always
    """), key=(), partition_time="order_time"),
    "customers": Source("customers", "json", fields("""
        account_id              string     always     id
        op                      string     always     upsert|erase
        updated_time            timestamp  always
        signup_time             timestamp  on_upsert
        email                   string     optional
        phone                   string     optional
        name                    string     optional
        gender                  string     optional   f|m|x
        birth_year              int        optional
        occupation              string     optional
        city                    string     optional
        income_band             string     optional   low|mid|high
        marketing_consent       bool       on_upsert
        marketing_consent_time  timestamp  optional
        referred_by             string     optional   id
        account_type            string     on_upsert  consumer|business
        company_id              string     optional   id
    """), key=(), partition_time=None),
    "interactions": Source("interactions", "csv", fields("""
        interaction_id    string     always     id
        account_id        string     optional   id
        channel           string     always     phone|email|chat|message_board|store
        type              string     always     inquiry|complaint|praise|return_request|technical
        opened_time       timestamp  always
        closed_time       timestamp  optional
        satisfaction      int        optional   1|2|3|4|5
        agent_id          string     optional   id
    """), key=(), partition_time=None),
    "campaign_events": Source("campaign_events", "csv", fields("""
        campaign_id       string     always     id
        account_id        string     always     id
        event             string     always     sent|delivered|opened|clicked|converted|unsubscribed|bounced|complained
        event_time        timestamp  always
        revenue           money      optional
    """), key=(), partition_time="event_time"),
}

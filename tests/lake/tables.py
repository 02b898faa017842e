"""The tables the lake's tests write, declared beside the library's catalog."""

from crmlake.lake import Catalog, load_catalog

ROWS = {
    "partition_by": ["day"],
    "personal": ["email"],
    "subject": {"match": {"account_id": "account"}, "erase": "delete"},
    "columns": {"account_id": "string", "email": "string", "day": "date", "updated_time": "timestamp", "amount": "bigint"},
}
TEST_TABLES = {
    "bronze.t": ROWS,
    "silver.t": ROWS,
    "gold.t": ROWS,
    "bronze.events": {"partition_by": ["day"], "subject": {"none": "numbered events of no one"}, "columns": {"event_id": "bigint", "day": "string"}},
}


def catalog_with_test_tables() -> Catalog:
    """Return the library's catalog with the test tables added."""
    return load_catalog().with_tables(TEST_TABLES)

"""The bench's lifecycle rows: reported without targets, per CPU-second or per wall-second, and "not available" for
the PostgreSQL rows when no PostgreSQL could be had (a property of the machine, not a failure)."""

from __future__ import annotations

from bench.run import TARGETS, _table, _target_doc


def test_lifecycle_rows_are_reported_with_their_units() -> None:
    units = {k: TARGETS[k][0] for k in ("scim_user_create_per_s", "scim_user_create_pg_per_s",
                                        "outbox_delivery_per_s", "outbox_delivery_pg_per_s")}
    assert units == {"scim_user_create_per_s": "/CPU-s", "scim_user_create_pg_per_s": "/CPU-s",
                     "outbox_delivery_per_s": "/wall-s", "outbox_delivery_pg_per_s": "/wall-s"}
    assert not {"scim_user_create_per_s", "outbox_delivery_per_s"} & set(_target_doc({}))


def test_pg_rows_read_not_available_without_postgresql_and_missing_after_a_failure() -> None:
    results = {"scim_user_create_per_s": 250.0, "outbox_delivery_per_s": 55.5}
    rows = {line.split()[0]: line for line in _table(results, {"postgresql": "not available: no PostgreSQL server "
                                                                             "installed"}, False).splitlines()}
    assert rows["scim_user_create_per_s"].split()[1:3] == ["250.0", "/CPU-s"]
    assert rows["outbox_delivery_per_s"].split()[1:3] == ["55.5", "/wall-s"]
    assert rows["scim_user_create_pg_per_s"].endswith("not available")
    assert rows["outbox_delivery_pg_per_s"].endswith("not available")
    failed = {line.split()[0]: line for line in _table(results, {"outbox_delivery_pg": "RuntimeError: boom"},
                                                       False).splitlines()}
    assert failed["outbox_delivery_pg_per_s"].endswith("missing")

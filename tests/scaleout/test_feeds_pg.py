"""Federation feeds on PostgreSQL: the same syncs (bulk lookups by entityID, a commit per batch, entities gone
disabled, held changes, the worker's job, a refused document changing nothing) against a real server."""

from __future__ import annotations

from ..functional.conftest import alice, browser, make_sp, sp_keys  # noqa: F401 - fixtures
from ..functional.test_feeds import (  # noqa: F401 - the tests and their fixtures, collected here again
    server,
    settings,
    test_a_change_removing_every_acs_is_held_until_yes,
    test_dry_run_writes_nothing_and_conflicts_are_left_alone,
    test_remove_keeps_or_removes_the_apps,
    test_select_by_entity_attribute_then_304_then_removed_entity_disabled,
    test_sso_round_trip_with_an_sp_registered_through_the_feed,
    test_tampered_unsigned_or_foreign_aggregate_is_refused_and_nothing_changes,
    test_worker_syncs_due_feeds,
)
from .conftest import needs_services

pytestmark = needs_services

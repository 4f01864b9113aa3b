"""Retention on PostgreSQL: the same purges (CLI batches, the worker's chain of one-batch jobs, a large purge in
another process while sign-ins go on) against a real server."""

from __future__ import annotations

from ..functional.conftest import alice, browser, make_sp, sp_keys  # noqa: F401 - fixtures
from ..functional.test_retention import (  # noqa: F401 - the tests and their fixture, collected here again
    settings,
    test_cli_dry_run_counts_then_purge_deletes_in_batches,
    test_sign_ins_complete_while_a_large_purge_runs,
    test_the_worker_purges_as_a_chain_of_one_batch_jobs,
)
from .conftest import needs_services

pytestmark = needs_services

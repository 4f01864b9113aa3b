"""Unique user fields on PostgreSQL: two users cannot hold the same value, not even when the second claim races a
first one that is not committed yet (the check sees nothing; the primary key of user_field_unique decides)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import sqlalchemy as sa

from .conftest import BIN, PG_URL, idp_cli, idp_env, needs_services, reset_services

pytestmark = needs_services


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "idp"), *args], env=env, capture_output=True, text=True, timeout=60)


def test_two_users_cannot_hold_the_same_unique_value(tmp_path: Path, key_template: Path) -> None:
    env = idp_env(tmp_path, key_template, IDP_DB_STATEMENT_TIMEOUT_MS="30000")   # the blocked insert waits
    reset_services(env)
    idp_cli(env, "db", "init")
    idp_cli(env, "fields", "add", "employee_number", "--type", "string", "--unique")
    idp_cli(env, "users", "add", "alice", "--email", "alice@example.com", "--field", "employee_number=E-1")
    idp_cli(env, "users", "add", "carol", "--email", "carol@example.com")

    # the plain case: the value (in another case) is held by a committed user
    r = run(env, "users", "set", "carol", "--field", "employee_number=e-1")
    assert r.returncode == 1 and "employee_number: this value is already held by alice" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr

    engine = sa.create_engine(PG_URL)
    try:
        with engine.connect() as conn:
            alice_id = conn.execute(sa.text("SELECT id FROM users WHERE username = 'alice'")).scalar_one()
        # the race: alice's claim on X-2 is written but not committed while carol's change runs
        with engine.connect() as first:
            tx = first.begin()
            first.execute(sa.text("INSERT INTO user_field_unique (field_name, value, user_id) "
                                  "VALUES ('employee_number', 'x-2', :id)"), {"id": alice_id})
            second = subprocess.Popen([str(BIN / "idp"), "users", "set", "carol", "--field", "employee_number=X-2"],
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                # wait until carol's insert is blocked on alice's uncommitted row (its check saw no holder)
                deadline = time.time() + 20
                with engine.connect() as probe:
                    while time.time() < deadline:
                        waiting = probe.execute(sa.text(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                            "AND query LIKE 'INSERT INTO user_field_unique%'")).scalar_one()
                        probe.rollback()   # statistics views are a snapshot per transaction
                        if waiting:
                            break
                        if second.poll() is not None:
                            raise AssertionError(f"the second claim ended first: {second.communicate()}")
                        time.sleep(0.05)
                    else:
                        raise AssertionError("the second claim never waited on the first")
                tx.commit()
                _out, err = second.communicate(timeout=30)
            finally:
                if second.poll() is None:
                    second.kill()
                    second.communicate()
        assert second.returncode == 1, err
        assert "employee_number: this value is already held by alice" in err and "Traceback" not in err
        with engine.connect() as conn:
            claims = conn.execute(sa.text("SELECT value, user_id FROM user_field_unique ORDER BY value")).all()
            carol_fields = conn.execute(sa.text("SELECT custom_fields FROM users WHERE username = 'carol'")).scalar()
    finally:
        engine.dispose()
    assert [tuple(c) for c in claims] == [("e-1", alice_id), ("x-2", alice_id)]
    assert carol_fields == {}

"""Expiry warnings for every published signing key (next, active, retiring, and the keys apps are pinned to):
`idp certs status`, the console (a banner on every page, the certificates page), /metrics, and `key.expiring`
notices from the worker at 30, 14, 7 and 1 days, once per key and threshold."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from idp.cli.worker import Worker
from idp.extensions import db
from idp.models import SentNotice
from idp.notifications import bus

from .test_admin_console import ADMIN_PASSWORD, admin, login  # noqa: F401 - the admin fixture

__all__ = ["admin"]


class Recorder:
    name = "test-key-expiry"

    def __init__(self) -> None:
        self.got: list[bus.Notice] = []

    def wants(self, type_: str, app_slug: str | None) -> bool:
        return type_ == "key.expiring"

    def deliver(self, notice: bus.Notice, session: bus.AnySession) -> None:
        self.got.append(notice)


@pytest.fixture
def recorder(app: Flask) -> Iterator[Recorder]:
    saved = list(bus.SUBSCRIBERS)
    rec = Recorder()
    bus.subscribe(rec)
    yield rec
    bus.SUBSCRIBERS[:] = saved


def cli(app: Flask, *args: str):  # type: ignore[no-untyped-def]
    return app.test_cli_runner().invoke(args=list(args))


def stage(app: Flask, days: int) -> str:
    r = cli(app, "certs", "rotate", "--days", str(days))
    assert r.exit_code == 0, r.output
    return re.search(r"staged next signing key (\S+);", r.output).group(1)  # type: ignore[union-attr]


def test_a_staged_key_close_to_expiry_is_warned_about(app: Flask) -> None:
    """The issue's fact: only the active key was checked; a next key expiring in 9 days passed silently."""
    active = app.extensions["idp.keystore"].current().active.kid
    nxt = stage(app, 10)
    r = cli(app, "certs", "status")
    assert r.exit_code == 0, r.output
    warned = [ln for ln in r.output.splitlines() if ln.startswith("WARNING:")]
    assert any(nxt in ln and "next" in ln and "expires in 9 days" in ln for ln in warned), r.output
    assert not any(active in ln for ln in warned), r.output
    data = json.loads(cli(app, "certs", "status", "--format", "json").output)
    assert any(nxt in w for w in data["warnings"])


def test_a_retiring_key_close_to_expiry_is_warned_about(app: Flask) -> None:
    short = stage(app, 10)
    assert cli(app, "certs", "activate").exit_code == 0       # the 10-day key signs
    assert cli(app, "certs", "retire").exit_code == 0
    stage(app, 365)
    assert cli(app, "certs", "activate").exit_code == 0       # ... and now retires
    warned = [ln for ln in cli(app, "certs", "status").output.splitlines() if ln.startswith("WARNING:")]
    assert any(short in ln and "retiring" in ln and "expires in 9 days" in ln for ln in warned), warned


def test_metrics_export_every_published_key(app: Flask, client: FlaskClient) -> None:
    active = app.extensions["idp.keystore"].current().active.kid
    nxt = stage(app, 10)
    text = client.get("/metrics").get_data(as_text=True)
    assert re.search(rf'^idp_signing_key_days_to_expiry\{{kid="{nxt}",state="next"\}} 9$', text, re.M), text
    assert re.search(rf'^idp_signing_key_days_to_expiry\{{kid="{active}",state="active"\}} 36[34]$', text, re.M)
    assert re.search(rf'^idp_signing_key_expiry_timestamp_seconds\{{kid="{nxt}",state="next"\}} \d+$', text, re.M)


def test_console_shows_a_banner_on_every_page(app: Flask, client: FlaskClient, admin) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    login(client, "admin", ADMIN_PASSWORD)
    assert "key-expiry-banner" not in client.get("/admin/users").get_data(as_text=True)
    nxt = stage(app, 10)
    for page in ("/admin/users", "/admin/apps", "/admin/certs"):
        body = client.get(page).get_data(as_text=True)
        assert 'id="key-expiry-banner"' in body and nxt in body, page


def test_worker_sends_key_expiring_once_per_key_and_threshold(app: Flask, recorder: Recorder) -> None:
    active = app.extensions["idp.keystore"].current().active.kid
    nxt = stage(app, 10)
    worker = Worker("test-worker")
    worker.housekeeping()
    worker.housekeeping()           # the next minute finds the same: nothing new
    assert len(recorder.got) == 1, recorder.got
    notice = recorder.got[0]
    assert (notice.type, notice.subject, notice.source) == ("key.expiring", nxt, "system")
    assert notice.data["kid"] == nxt and notice.data["state"] == "next"
    assert notice.data["days_left"] == 9 and notice.data["threshold"] == 14
    assert notice.data["not_after"].endswith("Z")
    keys = set(db.session.scalars(select(SentNotice.key)))
    assert keys == {f"key.expiring:{nxt}:30", f"key.expiring:{nxt}:14"}
    assert not any(active in k for k in keys)

"""Webhook signatures against the Standard Webhooks reference library (standardwebhooks): the same bytes for the
same id, timestamp and body; both signatures during a rotation's overlap, one after it; secrets' format checked.
And the CloudEvents envelope of a notice."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks import Webhook

from idp.notifications.bus import Notice
from idp.services import ServiceError
from idp.services.webhooks.delivery import body_of, build_event
from idp.services.webhooks.signing import SecretSet, new_secret, secret_key, sign, signed_headers


def test_signatures_match_the_reference_library_and_verify_with_it() -> None:
    secret = new_secret()
    body = json.dumps({"type": "sso.success", "é": "ü"}, ensure_ascii=False).encode()
    ts = int(time.time())
    assert sign(secret, "msg_1", ts, body) == Webhook(secret).sign("msg_1", datetime.fromtimestamp(ts, UTC), body)
    headers = signed_headers([secret], "msg_1", body)
    assert Webhook(secret).verify(body, headers) == {"type": "sso.success", "é": "ü"}
    with pytest.raises(Exception, match="signature"):
        Webhook(new_secret()).verify(body, headers)


def test_a_rotation_signs_with_both_secrets_until_the_overlap_ends() -> None:
    old, new = new_secret(), new_secret()
    kept = SecretSet(new, old, int(time.time()) + 3600)
    assert SecretSet.load(kept.dump()) == kept and SecretSet.load(new) == SecretSet(new)
    body = b"{}"
    headers = signed_headers(kept.signing(), "m", body)
    assert len(headers["webhook-signature"].split(" ")) == 2
    for s in (old, new):
        Webhook(s).verify(body, headers)
    assert kept.signing(now=time.time() + 7200) == [new]


@pytest.mark.parametrize("bad", ["", "secret", "whsec_", "whsec_***", "whsec_" + "QUJD" * 2,
                                 "whsec_" + "A" * 200])
def test_malformed_secrets_are_refused(bad: str) -> None:
    with pytest.raises(ServiceError):
        secret_key(bad)


def test_new_secrets_hold_32_random_bytes() -> None:
    a, b = new_secret(), new_secret()
    assert a != b and a.startswith("whsec_") and len(secret_key(a)) == 32


def test_a_notice_becomes_a_cloudevent() -> None:
    at = datetime(2026, 12, 5, 14, 3, 11, 482913, tzinfo=UTC)
    notice = Notice(type="sso.denied", time=at, subject="alice", app_slug="crm", outcome="denied",
                    reason="ip_not_allowed", data={"username": "alice", "at": at, "detail": {"n": 1}})
    event = build_event(notice, "https://idp.example.com")
    assert event == {"specversion": "1.0", "id": notice.id, "source": "https://idp.example.com",
                     "type": "sso.denied", "subject": "alice", "time": "2026-12-05T14:03:11.482913Z",
                     "datacontenttype": "application/json", "dataschema": "urn:idp:webhook:1",
                     "data": {"username": "alice", "at": "2026-12-05 14:03:11.482913+00:00", "detail": {"n": 1}}}
    assert json.loads(body_of(event)) == event
    naive = build_event(Notice(type="key.expiring", time=at.replace(tzinfo=None) + timedelta(0), subject=None,
                               app_slug=None, outcome=None, reason=None, data={}), "https://idp.example.com")
    assert "subject" not in naive and naive["time"].endswith("Z")

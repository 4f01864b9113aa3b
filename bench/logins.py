"""Login throughput in-process: a password login through /login, a passwordless passkey login through
/passkeys/login/options + /passkeys/login (skipped, with the reason, when this build has no passkey endpoints).

Each login is a fresh browser (empty cookie jar): GET /login for the CSRF token, then the sign-in POST(s); the
IdP opens a session each time, as in production. Passkey logins come from rotating client addresses (many users,
as in production): the IdP rate-limits passkey options per address (idp.throttle.PASSKEY_OPTIONS_RULE). Figures
are per CPU-second, like the other single-process rows.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from idp.extensions import db

from .authenticator import SoftwareAuthenticator, b64url_decode
from .fixtures import INPROCESS_BASE_URL, PASSWORD, USERNAME, csrf_token

PASSKEY_OPTIONS_URL = "/passkeys/login/options"
PASSKEY_LOGIN_URL = "/passkeys/login"


class NotAvailable(Exception):
    """This build cannot do the measured thing (no passkey endpoints, no Passkey model): a skip, not a failure."""


def password_login(app: Flask) -> Callable[[], None]:
    """One password login: GET /login, POST the form (argon2id verify at the production parameters)."""
    def op() -> None:
        client = app.test_client()
        page = client.get("/login")
        resp = client.post("/login", data={"csrf_token": csrf_token(page.get_data(as_text=True)),
                                           "username": USERNAME, "password": PASSWORD, "next": "/"})
        if resp.status_code != 303:
            raise RuntimeError(f"password login failed: HTTP {resp.status_code}")
    return op


# ---------------------------------------------------------------- passkeys

def register_passkey(app: Flask, rp_id: str) -> SoftwareAuthenticator:
    """Store a device-bound ES256 passkey for the bench user directly in the database: what a completed
    /passkeys/register leaves behind (credential id, COSE public key, sign count, backup flags)."""
    from idp.auth import passkeys
    from idp.models import Passkey
    from idp.services.users import find_user

    with app.app_context():
        user = find_user(USERNAME)
        if user is None:
            raise RuntimeError("no bench user")
        auth = SoftwareAuthenticator(rp_id=rp_id, origin=INPROCESS_BASE_URL, user_handle=passkeys.user_handle(user))
        db.session.add(Passkey(user_id=user.id, credential_id=auth.credential_id, public_key=auth.cose_public_key(),
                               sign_count=0, name="bench authenticator", backup_eligible=False, backup_state=False,
                               transports=["internal"], aaguid="00000000-0000-0000-0000-000000000000"))
        db.session.commit()
        db.session.remove()
    return auth


def _find_challenge(doc: Any) -> str | None:
    """The challenge in the options JSON, wherever the endpoint nests it (publicKey / options / top level)."""
    if isinstance(doc, dict):
        if isinstance(doc.get("challenge"), str):
            return str(doc["challenge"])
        for value in doc.values():
            found = _find_challenge(value)
            if found:
                return found
    return None


def passkey_login(app: Flask, auth: SoftwareAuthenticator) -> Callable[[], None]:
    """One passwordless login: GET /login (CSRF), POST the options request, sign the challenge, POST the assertion.
    Each from the next client address of 10.0.0.0/8."""
    addresses = itertools.count(1)

    def op() -> None:
        client: FlaskClient = app.test_client()
        n = next(addresses) % (1 << 24)
        client.environ_base["REMOTE_ADDR"] = f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}"
        token = csrf_token(client.get("/login").get_data(as_text=True))
        headers = {"X-CSRFToken": token, "Accept": "application/json"}
        resp = client.post(PASSKEY_OPTIONS_URL, json={"purpose": "login"}, headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"{PASSKEY_OPTIONS_URL}: HTTP {resp.status_code}")
        challenge = _find_challenge(resp.get_json(silent=True))
        if challenge is None:
            raise RuntimeError(f"{PASSKEY_OPTIONS_URL}: no challenge in the answer")
        credential = auth.assertion(b64url_decode(challenge))
        resp = client.post(PASSKEY_LOGIN_URL, data=json.dumps({"credential": credential, "purpose": "login",
                                                               "next": "/"}),
                           headers=headers, content_type="application/json")
        if resp.status_code >= 400:
            raise RuntimeError(f"{PASSKEY_LOGIN_URL}: HTTP {resp.status_code} {resp.get_data(as_text=True)[:200]}")
    return op


def passkey_setup(app: Flask, rp_id: str = "localhost") -> Callable[[], None]:
    """The passkey login op, after checking the endpoints and registering the bench authenticator (NotAvailable
    when this build has no passkeys); one login is tried before measuring."""
    op = passkey_login(app, register_passkey(app, rp_id))
    op()
    return op

"""Login throughput in-process: a password login through /login, a passwordless passkey login through
/passkeys/login/options + /passkeys/login (skipped, with the reason, when this build has no passkey endpoints).

Each login is a fresh browser (empty cookie jar): GET /login for the CSRF token, then the sign-in POST(s); the
IdP opens a session each time, as in production. Figures are per CPU-second, like the other single-process rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import inspect as sa_inspect

from idp.extensions import db

from .authenticator import SoftwareAuthenticator, b64url, b64url_decode
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

def _routes(app: Flask) -> set[str]:
    return {r.rule for r in app.url_map.iter_rules()}


def check_passkeys_available(app: Flask) -> None:
    missing = [u for u in (PASSKEY_OPTIONS_URL, PASSKEY_LOGIN_URL) if u not in _routes(app)]
    if missing:
        raise NotAvailable(f"not available: this build has no {' / '.join(missing)} endpoint")
    if _passkey_model() is None:
        raise NotAvailable("not available: this build has no Passkey model")


def _passkey_model() -> Any:
    """CONTRACT(passkeys): idp.models.Passkey (table passkeys), added by the passkeys branch."""
    from idp import models

    return getattr(models, "Passkey", None)


def register_passkey(app: Flask, rp_id: str) -> SoftwareAuthenticator:
    """Store a device-bound ES256 passkey for the bench user directly in the database (what a completed
    /passkeys/register leaves behind: credential id, COSE public key, sign count, backup flags)."""
    from idp.services.users import find_user

    passkey_model = _passkey_model()
    with app.app_context():
        user = find_user(USERNAME)
        if user is None:
            raise RuntimeError("no bench user")
        auth = SoftwareAuthenticator(rp_id=rp_id, origin=INPROCESS_BASE_URL,
                                     user_handle=_user_handle(user))
        columns = {c.key: c for c in sa_inspect(passkey_model).columns}
        candidates: dict[str, Any] = {
            "user_id": user.id, "credential_id": auth.credential_id, "public_key": auth.cose_public_key(),
            "sign_count": 0, "name": "bench authenticator", "backup_eligible": False, "backup_state": False,
            "transports": ["internal"], "user_handle": auth.user_handle,
            "aaguid": "00000000-0000-0000-0000-000000000000",
        }
        values: dict[str, Any] = {}
        for name, value in candidates.items():
            col = columns.get(name)
            if col is None:
                continue
            python_type = _python_type(col)
            if isinstance(value, bytes) and python_type is str:
                value = b64url(value)
            elif isinstance(value, list) and python_type is str:
                value = ",".join(value)
            values[name] = value
        required = [n for n, c in columns.items() if not c.nullable and c.default is None and c.server_default is None
                    and not c.primary_key and n not in values]
        if required:
            raise NotAvailable(f"not available: the Passkey model needs columns the bench does not know: {required}")
        db.session.add(passkey_model(**values))
        db.session.commit()
        db.session.remove()
    return auth


def _python_type(col: Any) -> type | None:
    try:
        return col.type.python_type
    except NotImplementedError:
        return None


def _user_handle(user: Any) -> bytes:
    """The WebAuthn user handle the passkeys branch gives the user, if it stores one; else the user id."""
    for attr in ("webauthn_user_id", "user_handle", "webauthn_id"):
        value = getattr(user, attr, None)
        if isinstance(value, bytes):
            return value
        if isinstance(value, str) and value:
            return b64url_decode(value)
    return str(user.id).encode()


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
    """One passwordless login: GET /login (CSRF), POST the options request, sign the challenge, POST the assertion."""
    def op() -> None:
        client: FlaskClient = app.test_client()
        token = csrf_token(client.get("/login").get_data(as_text=True))
        headers = {"X-CSRFToken": token, "Accept": "application/json"}
        resp = client.post(PASSKEY_OPTIONS_URL, json={}, headers=headers)
        if resp.status_code != 200:
            raise RuntimeError(f"{PASSKEY_OPTIONS_URL}: HTTP {resp.status_code}")
        challenge = _find_challenge(resp.get_json(silent=True))
        if challenge is None:
            raise RuntimeError(f"{PASSKEY_OPTIONS_URL}: no challenge in the answer")
        credential = auth.assertion(b64url_decode(challenge))
        resp = client.post(PASSKEY_LOGIN_URL, data=json.dumps(credential), headers=headers,
                           content_type="application/json")
        if resp.status_code >= 400:
            raise RuntimeError(f"{PASSKEY_LOGIN_URL}: HTTP {resp.status_code} {resp.get_data(as_text=True)[:200]}")
    return op


def passkey_setup(app: Flask, rp_id: str = "localhost") -> Callable[[], None]:
    """The passkey login op, after checking the endpoints and registering the bench authenticator (NotAvailable
    when this build has no passkeys); one login is tried before measuring."""
    check_passkeys_available(app)
    op = passkey_login(app, register_passkey(app, rp_id))
    op()
    return op

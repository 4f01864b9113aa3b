"""Flask's signed-cookie session, with its signing serializer built once per key set instead of per request.

Flask's SecureCookieSessionInterface constructs a new itsdangerous serializer in every open_session and
save_session: ~40 µs a request, which on the back-channel endpoints (token, userinfo: no cookie at all) is a few
percent of the whole request. The serializer holds no per-request state, so one per (secret key, fallbacks) is
enough; a changed key (tests, a restart with a new IDP_SECRET_KEY) builds a new one.
"""

from __future__ import annotations

from typing import Any

from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer


class CachedSerializerSessionInterface(SecureCookieSessionInterface):
    def __init__(self) -> None:
        self._cache: tuple[tuple[Any, ...], URLSafeTimedSerializer] | None = None

    def get_signing_serializer(self, app: Any) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        key = (app.secret_key, tuple(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        cached = self._cache
        if cached is not None and cached[0] == key:
            return cached[1]
        serializer = super().get_signing_serializer(app)
        if serializer is not None:
            self._cache = (key, serializer)
        return serializer

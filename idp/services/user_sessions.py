"""A user's live IdP sessions as people see them (/account, the admin's user page, `idp users sessions`).

A session's id is the secret its browser cookie carries, so it is never shown nor put in a form: each session is
named by a handle, the first 16 hex digits of the SHA-256 of its id (not reversible, unique in practice among one
user's few live sessions), and looked up by recomputing the handles of that user's live sessions.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from ..extensions import component, db
from ..models import ConnectedApp, IdpSession, SessionParticipant, User, utcnow
from . import ServiceError

HANDLE_LEN = 16
_HANDLE = re.compile(f"[0-9a-f]{{{HANDLE_LEN}}}")


def handle_of(session_id: str) -> str:
    return hashlib.sha256(session_id.encode("utf-8")).hexdigest()[:HANDLE_LEN]


@dataclass(frozen=True, slots=True)
class SessionInfo:
    handle: str
    created_at: datetime
    authn_at: datetime
    last_seen: datetime
    client_ip: str | None
    user_agent: str | None
    device: str
    amr: str | None
    apps: tuple[str, ...]          # the names of the apps signed into in this session (SAML and OIDC)

    def to_dict(self) -> dict[str, object]:
        def iso(v: datetime) -> str:
            return v.isoformat().replace("+00:00", "Z")
        return {"session": self.handle, "created_at": iso(self.created_at), "authn_at": iso(self.authn_at),
                "last_seen": iso(self.last_seen), "client_ip": self.client_ip, "user_agent": self.user_agent,
                "device": self.device, "amr": self.amr, "apps": list(self.apps)}


def _live(user: User) -> Any:
    """The user's sessions that still sign them in: not ended, within IDP_SESSION_LIFETIME of their start and
    IDP_SESSION_IDLE of their last use (auth.sessions.session_is_live, as a WHERE clause)."""
    s, now = component("idp.settings"), utcnow()
    return select(IdpSession).where(IdpSession.user_id == user.id, IdpSession.ended_at.is_(None),
                                    IdpSession.created_at > now - timedelta(seconds=s.session_lifetime_s),
                                    IdpSession.last_seen > now - timedelta(seconds=s.session_idle_s))


def live_sessions(user: User) -> list[SessionInfo]:
    """The user's live sessions, most recently used first."""
    rows = list(db.session.scalars(_live(user).order_by(IdpSession.last_seen.desc())))
    apps: dict[str, list[str]] = {}
    if rows:
        for sid, name in db.session.execute(
                select(SessionParticipant.session_id, ConnectedApp.name)
                .join(ConnectedApp, ConnectedApp.id == SessionParticipant.app_id)
                .where(SessionParticipant.session_id.in_([r.id for r in rows]))
                .order_by(SessionParticipant.created_at)):
            names = apps.setdefault(sid, [])
            if name not in names:
                names.append(name)
    return [SessionInfo(handle=handle_of(r.id), created_at=r.created_at, authn_at=r.authn_at, last_seen=r.last_seen,
                        client_ip=r.client_ip, user_agent=r.user_agent, device=device_label(r.user_agent),
                        amr=r.amr, apps=tuple(apps.get(r.id, ()))) for r in rows]


def find_live_session(user: User, handle: str) -> IdpSession:
    """The user's live session with this handle (ServiceError when none: ended, another user's, made up)."""
    handle = (handle or "").strip().lower()
    if _HANDLE.fullmatch(handle):
        for s in db.session.scalars(_live(user)):
            if handle_of(s.id) == handle:
                return s
    raise ServiceError(f"{user.username} has no live session {handle[:20]!r}", field="session")


def all_live_sessions(user: User) -> list[IdpSession]:
    return list(db.session.scalars(_live(user)))


_BROWSERS = (("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"), ("Chrome/", "Chrome"),
             ("Chromium/", "Chromium"), ("Safari/", "Safari"))
_SYSTEMS = (("Windows", "Windows"), ("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Mac OS X", "macOS"), ("CrOS", "ChromeOS"), ("Linux", "Linux"))


def device_label(user_agent: str | None) -> str:
    """"Firefox on Linux" from a user agent, as far as it can be told; "unknown device" otherwise."""
    ua = user_agent or ""
    browser = next((name for mark, name in _BROWSERS if mark in ua), None)
    system = next((name for mark, name in _SYSTEMS if mark in ua), None)
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or ("unknown device" if not ua else ua[:40])

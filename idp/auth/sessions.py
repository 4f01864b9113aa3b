"""Server-side IdP sessions: the browser holds only a random id, so logout anywhere ends it everywhere."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask_login import UserMixin
from sqlalchemy import select, update
from sqlalchemy.orm import joinedload

from ..extensions import db
from ..models import IdpSession, SessionParticipant, User, utcnow

TOUCH_INTERVAL = timedelta(seconds=60)  # last_seen is written at most once a minute per session


@dataclass
class Principal(UserMixin):
    """What flask-login calls the current user: a live IdP session and its user."""

    session: IdpSession
    user: User

    def get_id(self) -> str:  # the session id, not the user id: ending the session logs the browser out
        return self.session.id

    @property
    def is_active(self) -> bool:
        return not self.user.disabled

    @property
    def is_admin(self) -> bool:
        return self.user.is_admin


def session_is_live(s: IdpSession, now: datetime, lifetime: timedelta, idle: timedelta) -> bool:
    return s.ended_at is None and now - s.created_at < lifetime and now - s.last_seen < idle


def load_session(session_id: str, lifetime: timedelta, idle: timedelta) -> IdpSession | None:
    if not session_id or len(session_id) > 64:
        return None
    # one statement for the session, its user and the user's groups (every request needs all three)
    s = db.session.execute(
        select(IdpSession).where(IdpSession.id == session_id)
        .options(joinedload(IdpSession.user).joinedload(User.groups))
    ).unique().scalar_one_or_none()
    now = utcnow()
    if s is None or not session_is_live(s, now, lifetime, idle) or s.user.disabled:
        return None
    if now - s.last_seen > TOUCH_INTERVAL:
        s.last_seen = now
        db.session.commit()
    return s


def start_session(user: User, client_ip: str | None, *, replaces: IdpSession | None = None,
                  mfa: bool = False) -> IdpSession:
    """A fresh session id at every login (defeats session fixation).

    When the same user re-authenticates (ForceAuthn, step-up), the apps they are signed into
    move to the new session so single logout still reaches them.
    """
    now = utcnow()
    s = IdpSession(id=secrets.token_urlsafe(32), user_id=user.id, created_at=now, authn_at=now,
                   mfa_at=now if mfa else None, last_seen=now, client_ip=client_ip)
    db.session.add(s)
    db.session.flush()
    if replaces is not None and replaces.ended_at is None:
        if replaces.user_id == user.id:
            db.session.execute(update(SessionParticipant).where(SessionParticipant.session_id == replaces.id)
                               .values(session_id=s.id))
            s.created_at = replaces.created_at
            if replaces.mfa_at and not mfa:
                s.mfa_at = replaces.mfa_at
        replaces.ended_at = now
    db.session.commit()
    return s


def end_session(s: IdpSession) -> list[SessionParticipant]:
    """End a session; returns the apps that were signed in during it (for logout propagation)."""
    parts = list(db.session.scalars(select(SessionParticipant).where(SessionParticipant.session_id == s.id)))
    if s.ended_at is None:
        s.ended_at = utcnow()
    db.session.commit()
    return parts

"""Server-side IdP sessions: the browser holds only a random id, so logout anywhere ends it everywhere."""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, select, update

from ..extensions import db
from ..models import Group, IdpSession, OidcRefreshToken, Passkey, SessionParticipant, User, user_groups, utcnow
from ..prepared import Prepared
from . import amr as amr_values

TOUCH_INTERVAL = timedelta(seconds=60)  # last_seen is written at most once a minute per session


@dataclass(frozen=True, slots=True)
class UserView:
    """The signed-in user as one request sees it: everything SSO, policy and attribute release read."""

    id: int
    username: str
    email: str
    first_name: str
    last_name: str
    is_admin: bool
    disabled: bool
    mfa_enrolled: bool
    group_names: tuple[str, ...]
    # values of the admin-defined fields (User.custom_fields): read-only here, never mutated
    custom_fields: Mapping[str, object] = field(default_factory=dict)

    @classmethod
    def of(cls, user: User) -> UserView:
        return cls(id=user.id, username=user.username, email=user.email, first_name=user.first_name,
                   last_name=user.last_name, is_admin=user.is_admin, disabled=user.disabled,
                   mfa_enrolled=user.mfa_enrolled, group_names=tuple(user.group_names),
                   custom_fields=dict(user.custom_fields or {}))


@dataclass(frozen=True, slots=True)
class SessionView:
    """An IdP session row and its user, read in one statement at the start of a request."""

    id: str
    user_id: int
    created_at: datetime
    authn_at: datetime
    mfa_at: datetime | None
    last_seen: datetime
    ended_at: datetime | None
    user: UserView
    amr: tuple[str, ...] = amr_values.PASSWORD_ONLY   # RFC 8176 values, fixed order (idp.auth.amr)

    @classmethod
    def of(cls, s: IdpSession) -> SessionView:
        return cls(id=s.id, user_id=s.user_id, created_at=s.created_at, authn_at=s.authn_at, mfa_at=s.mfa_at,
                   last_seen=s.last_seen, ended_at=s.ended_at, user=UserView.of(s.user),
                   amr=amr_values.from_column(s.amr, s.mfa_at))

    @property
    def phishing_resistant(self) -> bool:
        """The session was opened with a passkey or security key (amr holds hwk or swk)."""
        return amr_values.is_phishing_resistant(self.amr)


def session_is_live(s: IdpSession | SessionView, now: datetime, lifetime: timedelta, idle: timedelta) -> bool:
    return s.ended_at is None and now - s.created_at < lifetime and now - s.last_seen < idle


# One statement for the session, its user and the user's groups (one row per group), compiled once:
# this runs on every request that carries a session cookie.
_LOAD = Prepared(
    select(IdpSession.id, IdpSession.user_id, IdpSession.created_at, IdpSession.authn_at, IdpSession.mfa_at,
           IdpSession.last_seen, IdpSession.ended_at, IdpSession.amr, User.username, User.email, User.first_name,
           User.last_name, User.is_admin, User.disabled, User.totp_secret.is_not(None), User.totp_confirmed,
           exists().where(Passkey.user_id == User.id).correlate(User), User.custom_fields, Group.name)
    .select_from(IdpSession).join(User, User.id == IdpSession.user_id)
    .outerjoin(user_groups, user_groups.c.user_id == User.id).outerjoin(Group, Group.id == user_groups.c.group_id)
    .where(IdpSession.id == bindparam("sid")))
_TOUCH = Prepared(update(IdpSession).where(IdpSession.id == bindparam("sid")).values(last_seen=bindparam("seen")))


def read_session(session_id: str) -> SessionView | None:
    rows = _LOAD.rows({"sid": session_id})
    if not rows:
        return None
    (sid, user_id, created_at, authn_at, mfa_at, last_seen, ended_at, amr, username, email, first_name, last_name,
     is_admin, disabled, has_secret, totp_confirmed, has_passkey, custom, _) = rows[0]
    user = UserView(id=user_id, username=username, email=email, first_name=first_name, last_name=last_name,
                    is_admin=bool(is_admin), disabled=bool(disabled),
                    mfa_enrolled=bool(has_secret and totp_confirmed) or bool(has_passkey),  # as User.mfa_enrolled
                    group_names=tuple(sorted(r[-1] for r in rows if r[-1] is not None)),
                    custom_fields=custom or {})
    return SessionView(id=sid, user_id=user_id, created_at=created_at, authn_at=authn_at, mfa_at=mfa_at,
                       last_seen=last_seen, ended_at=ended_at, user=user, amr=amr_values.from_column(amr, mfa_at))


def load_session(session_id: str, lifetime: timedelta, idle: timedelta) -> SessionView | None:
    """The live session behind a cookie, or None (unknown, ended, expired, idle too long, user disabled)."""
    if not session_id or len(session_id) > 64:
        return None
    s = read_session(session_id)
    now = utcnow()
    if s is None or not session_is_live(s, now, lifetime, idle) or s.user.disabled:
        return None
    if now - s.last_seen > TOUCH_INTERVAL:
        _TOUCH.run({"sid": s.id, "seen": now})  # committed with the request's unit of work
    return s


def session_amr(*, mfa: bool, amr: Sequence[str] | None) -> tuple[str, ...]:
    """The methods a new session records: `amr` as given (in the fixed order), or by default the password, plus a
    TOTP code when `mfa`. `mfa` and an explicit `amr` must agree ("mfa" in amr exactly when mfa=True or omitted)."""
    if amr is None:
        return amr_values.PASSWORD_AND_OTP if mfa else amr_values.PASSWORD_ONLY
    values = amr_values.normalise(amr)
    if mfa and amr_values.MFA not in values:
        raise ValueError(f"mfa=True but the methods {' '.join(values)!r} are not multi-factor")
    return values


def start_session(user: User, client_ip: str | None, *, replaces: IdpSession | None = None,
                  mfa: bool = False, amr: Sequence[str] | None = None, step_up: bool = False,
                  user_agent: str | None = None) -> IdpSession:
    """A fresh session id at every login (defeats session fixation).

    When the same user re-authenticates (ForceAuthn, prompt=login, max_age, step-up), the apps they are signed
    into (SessionParticipant rows) and their session-bound OIDC refresh tokens move to the new session, so single
    logout still reaches them and the tokens live on with the session that replaced theirs. The new session
    holds only what was proved now: `amr`, the RFC 8176 methods of this sign-in (see session_amr; `mfa_at` is
    set exactly when they include "mfa"); an earlier second factor is never carried over (a password re-entered
    for ForceAuthn is "pwd", not fresh multi-factor).

    `step_up`: the signed-in session `replaces` proved a second factor without re-entering its first factor
    (the caller builds `amr` from that session's first factor, auth.amr.with_second_factor). Its
    authentication instant is kept: a second factor alone is no re-authentication, so it neither satisfies a
    ForceAuthn that arrived meanwhile nor restarts an app's session-timeout clock.
    """
    now = utcnow()
    values = session_amr(mfa=mfa, amr=amr)
    if step_up and (replaces is None or replaces.user_id != user.id or replaces.ended_at is not None):
        raise ValueError("a step-up continues a live session of the same user")
    authn_at = replaces.authn_at if step_up and replaces is not None else now
    s = IdpSession(id=secrets.token_urlsafe(32), user_id=user.id, created_at=now, authn_at=authn_at,
                   mfa_at=now if amr_values.is_multi_factor(values) else None, amr=amr_values.to_column(values),
                   last_seen=now, client_ip=client_ip, user_agent=(user_agent or "")[:512] or None)
    db.session.add(s)
    db.session.flush()
    if replaces is not None and replaces.ended_at is None:
        if replaces.user_id == user.id:
            db.session.execute(update(SessionParticipant).where(SessionParticipant.session_id == replaces.id)
                               .values(session_id=s.id))
            # the OIDC refresh tokens bound to the old session follow it too, or their next refresh would find
            # the session ended and revoke the family (and lose `sid`)
            db.session.execute(update(OidcRefreshToken).where(OidcRefreshToken.session_id == replaces.id,
                                                              OidcRefreshToken.user_id == user.id)
                               .values(session_id=s.id))
            s.created_at = replaces.created_at
        replaces.ended_at = now
    db.session.flush()
    return s


def end_session(s: IdpSession) -> list[SessionParticipant]:
    """End a session; returns the apps that were signed in during it (for logout propagation)."""
    parts = list(db.session.scalars(select(SessionParticipant).where(SessionParticipant.session_id == s.id)))
    if s.ended_at is None:
        s.ended_at = utcnow()
    return parts

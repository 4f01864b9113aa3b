"""The reads and writes every token request makes, as prepared statements (one statement each, compiled once).

The token endpoint runs on every code exchange and refresh; loading a User through the ORM (and its groups with
a second query), a grant, and flushing ORM changes cost more than both JWT signatures together. Same data, same
unit of work (the request commits), fewer Python layers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, exists, func, select, update

from ..auth.sessions import UserView
from ..models import Group, OidcGrant, Passkey, PersistentId, User, user_groups
from ..prepared import Prepared

PUBLIC_SUBJECT_KEY = "urn:idp:oidc:subject:public"   # as flows.oidc_subject (the persistent-ID table's key)

_USER = Prepared(
    select(User.id, User.username, User.email, User.first_name, User.last_name, User.is_admin, User.disabled,
           User.totp_secret.is_not(None), User.totp_confirmed,
           exists().where(Passkey.user_id == User.id).correlate(User), User.custom_fields, Group.name)
    .select_from(User)
    .outerjoin(user_groups, user_groups.c.user_id == User.id).outerjoin(Group, Group.id == user_groups.c.group_id)
    .where(User.id == bindparam("uid")))
_SUBJECT = Prepared(select(PersistentId.value).where(PersistentId.user_id == bindparam("uid"),
                                                     PersistentId.app_entity_id == bindparam("key")))
_GRANT = Prepared(select(OidcGrant.id, OidcGrant.app_id, OidcGrant.user_id, OidcGrant.created_at,
                         OidcGrant.revoked_at).where(OidcGrant.id == bindparam("gid")))
_GRANT_USED = Prepared(update(OidcGrant).where(OidcGrant.id == bindparam("gid"))
                       .values(first_used_at=func.coalesce(OidcGrant.first_used_at, bindparam("first")),
                               last_used_at=bindparam("last")))


def user_view(user_id: int) -> UserView | None:
    """The user with its groups (as the session loader reads one), or None."""
    rows = _USER.rows({"uid": user_id})
    if not rows:
        return None
    (uid, username, email, first, last, is_admin, disabled, has_secret, totp_confirmed, has_passkey, custom,
     _) = rows[0]
    return UserView(id=uid, username=username, email=email, first_name=first, last_name=last,
                    is_admin=bool(is_admin), disabled=bool(disabled),
                    mfa_enrolled=bool(has_secret and totp_confirmed) or bool(has_passkey),
                    group_names=tuple(sorted(r[-1] for r in rows if r[-1] is not None)),
                    custom_fields=custom or {})


def stored_subject(user_id: int) -> str | None:
    """The user's public OIDC `sub` if one was issued (flows.oidc_subject.subject_for creates it)."""
    value = _SUBJECT.scalar({"uid": user_id, "key": PUBLIC_SUBJECT_KEY})
    return str(value) if value is not None else None


@dataclass(frozen=True, slots=True)
class GrantState:
    id: int
    app_id: int
    user_id: int
    created_at: datetime
    revoked_at: datetime | None

    @property
    def live(self) -> bool:
        return self.revoked_at is None


def grant_state(grant_id: int) -> GrantState | None:
    row = _GRANT.first({"gid": grant_id})
    return GrantState(*row) if row is not None else None


def mark_grant_used(grant_id: int, now: datetime) -> None:
    """first_used_at (once) and last_used_at of a grant, for the console's usage list."""
    _GRANT_USED.run({"gid": grant_id, "first": now, "last": now})

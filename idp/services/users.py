"""Users and groups: creation, changes and lookups shared by the CLI, admin forms and login."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import event as sa_event
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from .. import audit
from ..extensions import db
from ..models import Group, IdpSession, OidcGrant, User, utcnow
from . import lifecycle
from .oauth_tokens import revoke_grant, revoke_refresh_tokens

if TYPE_CHECKING:
    from ..auth.sessions import UserView
from . import ServiceError

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,149}$")
EMAIL_RE = re.compile(r"^[^@\s<>\"']+@[^@\s<>\"']+\.[^@\s<>\"']+$")
GROUP_RE = re.compile(r"^[\w][\w .@+-]{0,149}$")


def valid_email(email: str) -> bool:
    """One rule for the CLI and the console: a plausible address, no spaces or control characters."""
    return len(email) <= 320 and bool(EMAIL_RE.fullmatch(email)) and not any(ord(c) < 33 or ord(c) == 127
                                                                              for c in email)


def valid_name(value: str) -> bool:
    """First and last names: at most 150 characters, no control characters."""
    return len(value) <= 150 and not any(ord(c) < 32 or ord(c) == 127 for c in value)
MIN_PASSWORD_LENGTH = 8


def validate_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ServiceError(f"password must be at least {MIN_PASSWORD_LENGTH} characters", field="password")
    if len(password) > 1024:
        raise ServiceError("password is too long", field="password")


# ---------------------------------------------------------------- versions and lifecycle events

_TOUCHED = "idp.users.touched"   # session.info: {("user"|"group", id): events emitted} of this unit of work


def _touched(kind: str, row_id: int) -> set[str] | None:
    """The events already emitted for the row in this unit of work, or None when it was not touched yet."""
    return db.session.info.setdefault(_TOUCHED, {}).get((kind, row_id))


def touch(user: User, event: str = lifecycle.USER_CHANGED) -> None:
    """Record that `user` changed: `version` (the SCIM ETag) and `updated_at` (meta.lastModified) move once per
    unit of work, and the lifecycle `event` is emitted once per unit of work (what listeners enqueue commits
    with the change). Call after the change, from every service that changes a user."""
    if user.id is None:
        db.session.flush()
    seen = db.session.info.setdefault(_TOUCHED, {})
    events = seen.get(("user", user.id))
    if events is None:
        user.version = (user.version or 1) + 1
        user.updated_at = utcnow()
        events = seen[("user", user.id)] = set()
    if event not in events:
        events.add(event)
        lifecycle.emit(event, user_id=user.id)


def touch_group(group: Group) -> None:
    """As `touch`, for a group (its name or members changed): version, updated_at, GROUP_CHANGED."""
    if group.id is None:
        db.session.flush()
    seen = db.session.info.setdefault(_TOUCHED, {})
    if ("group", group.id) not in seen:
        group.version = (group.version or 1) + 1
        group.updated_at = utcnow()
        seen[("group", group.id)] = {lifecycle.GROUP_CHANGED}
        lifecycle.emit(lifecycle.GROUP_CHANGED, group_id=group.id)


def _forget_touched(session: Session, *_args: object) -> None:
    session.info.pop(_TOUCHED, None)


sa_event.listen(Session, "after_commit", _forget_touched)
sa_event.listen(Session, "after_soft_rollback", _forget_touched)


# ---------------------------------------------------------------- disabling and deleting

def end_sessions(user: User, *, except_id: str | None = None) -> int:
    """End every live IdP session of `user` (but `except_id`); returns how many ended.

    The OAuth refresh tokens bound to those sessions (issued without offline_access) end with them, as at
    logout; offline ones outlive the session (OIDC Core 11) and are revoked per grant, app or user instead."""
    live = select(IdpSession.id).where(IdpSession.user_id == user.id, IdpSession.ended_at.is_(None))
    if except_id:
        live = live.where(IdpSession.id != except_id)
    ids = list(db.session.scalars(live))
    if not ids:
        return 0
    result = db.session.execute(update(IdpSession).where(IdpSession.id.in_(ids)).values(ended_at=utcnow()))
    for session_id in ids:
        revoke_refresh_tokens(reason="session_ended", session_id=session_id, keep_offline=True)
    return int(getattr(result, "rowcount", 0) or 0)


def end_access(user: User, *, reason: str) -> dict[str, int]:
    """Everything a deactivated (or deleted) user still holds ends now: every IdP session, every OIDC grant
    (its access tokens turn inactive at userinfo and introspection) and every refresh token, offline ones
    included. Returns the counts (for the audit row)."""
    sessions = end_sessions(user)
    grants = 0
    for grant_id in list(db.session.scalars(select(OidcGrant.id).where(OidcGrant.user_id == user.id,
                                                                       OidcGrant.revoked_at.is_(None)))):
        grants += int(revoke_grant(grant_id, reason=reason))
    tokens = revoke_refresh_tokens(reason=reason, user_id=user.id)
    return {"sessions_ended": sessions, "grants_revoked": grants, "refresh_tokens_revoked": tokens}


def lock_enabled_admins() -> None:
    """Lock the rows of enabled admins (PostgreSQL) so two admins demoting each other cannot both win."""
    list(db.session.scalars(select(User.id).where(User.is_admin.is_(True), User.disabled.is_(False))
                            .with_for_update()))


def enabled_admin_count() -> int:
    return db.session.scalar(select(func.count(User.id)).where(User.is_admin.is_(True),
                                                              User.disabled.is_(False))) or 0


def refuse_if_no_admin_left(user: User) -> None:
    """Called after the change is flushed, inside the same transaction."""
    db.session.flush()
    if enabled_admin_count() == 0:
        # the caller's unit of work rolls the flushed change back when it sees the refusal
        raise ServiceError(f"{user.username} is the last enabled admin; make another user an admin first",
                           field="disabled")


def set_disabled(user: User, disabled: bool) -> bool:
    """THE way a user is disabled or enabled (console, CLI, SCIM `active`): disabling refuses the last enabled
    admin, ends the user's sessions and revokes their OIDC grants and refresh tokens (end_access), and emits
    USER_DEACTIVATED; enabling emits USER_CHANGED. Audits the flag itself: `user.deactivate` (with what ended) or
    `user.reactivate` (the notices user.deactivated / user.reactivated), so callers do not audit it again as a
    user.update. Returns whether anything changed."""
    if bool(user.disabled) == disabled:
        return False
    if disabled and user.is_admin:
        lock_enabled_admins()
    user.disabled = disabled
    if disabled and user.is_admin:
        refuse_if_no_admin_left(user)
    if disabled:
        ended = end_access(user, reason="user_disabled")
        audit.record("user.deactivate", "user", user.username, before={"disabled": False},
                     after={"disabled": True, **ended})
        touch(user, lifecycle.USER_DEACTIVATED)
    else:
        audit.record("user.reactivate", "user", user.username, before={"disabled": True},
                     after={"disabled": False})
        touch(user)
    return True


def delete_user(user: User) -> None:
    """Delete a user and everything hanging off it (sessions, grants, tokens, factors: by the foreign keys).
    Refused for the last enabled admin. Emits USER_DELETED before the row goes."""
    if user.is_admin and not user.disabled:
        lock_enabled_admins()
        if enabled_admin_count() <= 1:
            raise ServiceError(f"{user.username} is the last enabled admin; make another user an admin first",
                               field="username")
    ended = end_access(user, reason="user_deleted")
    audit.record("user.delete", "user", user.username,
                 before={"email": user.email, "external_id": user.external_id, "groups": user.group_names,
                         "admin": user.is_admin, "disabled": user.disabled, **ended})
    for group in list(user.groups):
        touch_group(group)
    lifecycle.emit(lifecycle.USER_DELETED, user_id=user.id, username=user.username, external_id=user.external_id)
    db.session.delete(user)
    db.session.flush()


def get_user(username: str) -> User:
    user = find_user(username)
    if user is None:
        raise ServiceError(f"no user {username!r}", field="username")
    return user


def find_user(username: str) -> User | None:
    return db.session.scalar(select(User).where(User.username == username))


def find_group(name: str, *, lock: bool = False) -> Group | None:
    """The group by name; `lock`: held until the transaction ends (FOR UPDATE; SQLite serialises writers)."""
    query = select(Group).where(Group.name == name)
    return db.session.scalar(query.with_for_update() if lock else query)


def get_group(name: str, *, lock: bool = False) -> Group:
    group = find_group(name, lock=lock)
    if group is None:
        raise ServiceError(f"no group {name!r} (create it with `idp groups add {name}`)", field="group")
    return group


def lock_group(name: str) -> Group:
    return get_group(name, lock=True)


def apps_using_group(name: str) -> list[tuple[str, str]]:
    """(app slug, "allowed" | "denied") for every app whose access policy names the group."""
    from ..models import ConnectedApp

    found = []
    for slug, app_settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)
                                                 .order_by(ConnectedApp.slug)):
        app_settings = app_settings or {}
        if name in (app_settings.get("allow_groups") or ()):
            found.append((slug, "allowed"))
        if name in (app_settings.get("deny_groups") or ()):
            found.append((slug, "denied"))
    return found


def apps_assigning_user(username: str) -> list[str]:
    """The slugs of the apps whose access policy assigns the user by name (assigned_users)."""
    from ..models import ConnectedApp

    return [slug for slug, app_settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)
                                                              .order_by(ConnectedApp.slug))
            if username in ((app_settings or {}).get("assigned_users") or ())]


def remove_group(name: str) -> list[str]:
    """Delete a group (its memberships go with it); returns the former members' usernames.

    Refused while an app's access policy names it: deleting an allowed group would silently lock
    its members out, deleting a denied group would silently let them in. Change those policies first.
    """
    group = get_group(name)
    # Lock first, check second: a row lock on PostgreSQL (policy_changes locks the same row), the
    # write lock on SQLite. A policy naming the group cannot commit between the check and the delete.
    db.session.execute(update(Group).where(Group.id == group.id).values(name=group.name))
    used = apps_using_group(group.name)
    if used:
        where = ", ".join(f"{slug} ({how})" for slug, how in used)
        raise ServiceError(f"group {group.name!r} is named in the access policy of {where}; "
                           "remove it there first")
    members = sorted(u.username for u in group.members)
    audit.record("group.remove", "group", group.name, before={"members": members})
    for member in list(group.members):
        touch(member)   # their groups changed
    lifecycle.emit(lifecycle.GROUP_DELETED, group_id=group.id, name=group.name, external_id=group.external_id)
    db.session.delete(group)
    return members


def add_group(name: str) -> Group:
    name = name.strip()
    if not GROUP_RE.fullmatch(name):
        raise ServiceError(f"group name {name!r} is not valid", field="name")
    if db.session.scalar(select(Group.id).where(Group.name == name)) is not None:
        raise ServiceError(f"group {name!r} already exists", field="name")
    group = Group(name=name)
    db.session.add(group)
    audit.record("group.add", "group", name)
    touch_group(group)
    return group


def add_user(username: str, *, email: str, password_hash: str | None, first_name: str = "", last_name: str = "",
             groups: list[str] | None = None, is_admin: bool = False) -> User:
    if not USERNAME_RE.fullmatch(username):
        raise ServiceError(f"username {username!r} is not valid (letters, digits, . _ @ + -)", field="username")
    if not valid_email(email):
        raise ServiceError(f"email {email!r} is not a valid address", field="email")
    for field, value in (("first_name", first_name), ("last_name", last_name)):
        if not valid_name(value):
            raise ServiceError(f"{field.replace('_', ' ')} is not valid", field=field)
    clash = db.session.scalar(select(User.username).where(func.lower(User.username) == username.lower()))
    if clash is not None:   # unique ignoring case on every path (SCIM, the API, the console, the CLI, imports)
        also = f" (as {clash!r}: usernames are unique ignoring case)" if clash != username else ""
        raise ServiceError(f"user {username!r} already exists{also}", field="username")
    group_rows = [get_group(g) for g in (groups or [])]
    user = User(username=username, email=email, first_name=first_name, last_name=last_name,
                password_hash=password_hash, is_admin=is_admin, groups=group_rows)
    db.session.add(user)
    audit.record("user.add", "user", username, after={"email": email, "first_name": first_name,
                                                     "last_name": last_name, "groups": groups or [],
                                                     "admin": is_admin})
    try:
        db.session.flush()
    except IntegrityError:  # created at the same time elsewhere; the caller's unit of work rolls back
        raise ServiceError(f"user {username!r} already exists", field="username") from None
    touch(user)
    for g in group_rows:
        touch_group(g)
    return user


def set_user(user: User, *, add_groups: list[str] | None = None, remove_groups: list[str] | None = None,
             disabled: bool | None = None, password_hash: str | None = None) -> User:
    before = {"groups": user.group_names, "disabled": user.disabled}
    to_add = [get_group(g) for g in (add_groups or [])]
    to_remove = [get_group(g) for g in (remove_groups or [])]
    for g in to_add:
        if g not in user.groups:
            user.groups.append(g)
            touch_group(g)
    for g in to_remove:
        if g in user.groups:
            user.groups.remove(g)
            touch_group(g)
    if disabled is not None:
        set_disabled(user, disabled)
    if password_hash is not None:
        user.password_hash = password_hash
    after = {"groups": user.group_names, "disabled": user.disabled}
    changed = {k: after[k] for k in after if before[k] != after[k]}
    updated = {k: v for k, v in changed.items() if k != "disabled"}   # set_disabled audited the flag
    if updated:
        audit.record("user.update", "user", user.username, before={k: before.get(k) for k in updated},
                     after=updated)
    if password_hash is not None:   # its own action, as every other password set (a password.changed notice)
        audit.record("user.password_reset", "user", user.username, after={"password_changed": True})
    if set(changed) - {"disabled"} or password_hash is not None:   # set_disabled told the listeners about the flag
        touch(user)
    return user


def user_fields(user: User | UserView) -> dict[str, object]:
    """The fields an app's NameID and attribute mapping can draw from: the built-in ones (always present) and
    the admin-defined ones this user has a value for (an unset custom field is absent, not empty)."""
    display = f"{user.first_name} {user.last_name}".strip() or user.username
    custom = user.custom_fields or {}
    return {
        **custom,
        "id": str(user.id), "username": user.username, "email": user.email,
        "first_name": user.first_name, "last_name": user.last_name,
        "groups": list(user.group_names), "display_name": display,
    }


# ---------------------------------------------------------------- provisioning identity (SCIM)

def set_identity(user: User, *, username: str | None = None, external_id: str | None | object = ...,
                 scim_emails: list[dict[str, object]] | None | object = ...) -> None:
    """Change what a provisioning client identifies the user by: the username (a rename), the externalId
    (unique) and the SCIM emails list. Only the keyword arguments given change; audited as `user.identity`."""
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    if username is not None and username != user.username:
        if not USERNAME_RE.fullmatch(username):
            raise ServiceError(f"username {username!r} is not valid (letters, digits, . _ @ + -)", field="username")
        if db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower(),
                                                   User.id != user.id)) is not None:
            raise ServiceError(f"user {username!r} already exists", field="username")
        assigned = apps_assigning_user(user.username)
        if assigned:   # the policy names users: a rename would hand the assignment to whoever takes the old name
            raise ServiceError(f"user {user.username!r} is assigned by name in the access policy of "
                               f"{', '.join(assigned)}; unassign them there before renaming", field="username")
        before["username"], after["username"] = user.username, username
        user.username = username
    if external_id is not ...:
        _set_external_id(user, User, external_id, "user", before, after)
    if scim_emails is not ... and scim_emails != user.scim_emails:
        user.scim_emails = scim_emails if isinstance(scim_emails, list) else None
        after["emails"] = user.scim_emails
    if after:
        audit.record("user.identity", "user", user.username, before=before or None, after=after)
        try:
            db.session.flush()
        except IntegrityError:   # a concurrent writer took the name or externalId; the unit of work rolls back
            raise ServiceError("username or externalId already taken", field="username") from None
        touch(user)


def _set_external_id(row: User | Group, model: type[User] | type[Group], external_id: object, what: str,
                     before: dict[str, object], after: dict[str, object]) -> None:
    """Set a user's or group's externalId (empty: none): at most 255 characters without control characters,
    unique per resource type; the change goes into `before` / `after` for the caller's audit row."""
    value = external_id if isinstance(external_id, str) and external_id else None
    if value is not None and (len(value) > 255 or not all(ord(c) >= 32 for c in value)):
        raise ServiceError("externalId must be at most 255 characters, without control characters",
                           field="external_id")
    if value == row.external_id:
        return
    if value is not None and db.session.scalar(select(model.id).where(model.external_id == value,
                                                                      model.id != row.id)) is not None:
        raise ServiceError(f"externalId {value!r} belongs to another {what}", field="external_id")
    before["external_id"], after["external_id"] = row.external_id, value
    row.external_id = value


def set_group_identity(group: Group, *, name: str | None = None, external_id: str | None | object = ...) -> None:
    """Rename a group (refused while an app's access policy names it: the policy would silently change) and
    set its externalId. Audited as `group.update`."""
    before: dict[str, object] = {}
    after: dict[str, object] = {}
    if name is not None and name.strip() != group.name:
        name = name.strip()
        if not GROUP_RE.fullmatch(name):
            raise ServiceError(f"group name {name!r} is not valid", field="name")
        if db.session.scalar(select(Group.id).where(Group.name == name, Group.id != group.id)) is not None:
            raise ServiceError(f"group {name!r} already exists", field="name")
        used = apps_using_group(group.name)
        if used:
            where = ", ".join(f"{slug} ({how})" for slug, how in used)
            raise ServiceError(f"group {group.name!r} is named in the access policy of {where}; "
                               "it cannot be renamed", field="name")
        before["name"], after["name"] = group.name, name
        group.name = name
    if external_id is not ...:
        _set_external_id(group, Group, external_id, "group", before, after)
    if after:
        audit.record("group.update", "group", group.name, before=before, after=after)
        for member in list(group.members):
            touch(member)   # their `groups` show the name
        touch_group(group)


def set_members(group: Group, members: list[User]) -> tuple[list[str], list[str]]:
    """Make `members` the group's members; returns (added, removed) usernames, each audited."""
    wanted = {u.id: u for u in members}
    current = {u.id: u for u in group.members}
    added = [wanted[i] for i in wanted if i not in current]
    removed = [current[i] for i in current if i not in wanted]
    for user in added:
        user.groups.append(group)
        audit.record("group.add_member", "group", group.name, after={"user": user.username})
        touch(user)
    for user in removed:
        user.groups.remove(group)
        audit.record("group.remove_member", "group", group.name, before={"user": user.username})
        touch(user)
    if added or removed:
        touch_group(group)
    return [u.username for u in added], [u.username for u in removed]

"""Users and groups: creation, changes and lookups shared by the CLI, admin forms and login."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from .. import audit
from ..extensions import db
from ..models import Group, User

if TYPE_CHECKING:
    from ..auth.sessions import UserView
from . import ServiceError, lifecycle

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
    lifecycle.emit(lifecycle.GROUP_CHANGED, group_id=group.id)   # before the row goes: listeners read its members
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
    if find_user(username) is not None:
        raise ServiceError(f"user {username!r} already exists", field="username")
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
    lifecycle.emit(lifecycle.USER_CHANGED, user_id=user.id)
    return user


def set_user(user: User, *, add_groups: list[str] | None = None, remove_groups: list[str] | None = None,
             disabled: bool | None = None, password_hash: str | None = None) -> User:
    before = {"groups": user.group_names, "disabled": user.disabled}
    to_add = [get_group(g) for g in (add_groups or [])]
    to_remove = [get_group(g) for g in (remove_groups or [])]
    for g in to_add:
        if g not in user.groups:
            user.groups.append(g)
    for g in to_remove:
        if g in user.groups:
            user.groups.remove(g)
    if disabled is not None:
        user.disabled = disabled
    if password_hash is not None:
        user.password_hash = password_hash
    after = {"groups": user.group_names, "disabled": user.disabled}
    changed = {k: after[k] for k in after if before[k] != after[k]}
    if password_hash is not None:
        changed["password_changed"] = True
    if changed:
        audit.record("user.update", "user", user.username, before={k: before.get(k) for k in changed},
                     after=changed)
        emit_user_change(user, disabled_now=changed.get("disabled") is True)
    return user


def emit_user_change(user: User, *, disabled_now: bool = False) -> None:
    """Tell the lifecycle listeners (outbound provisioning) in this unit of work: deactivated, or changed."""
    db.session.flush()
    lifecycle.emit(lifecycle.USER_DEACTIVATED if disabled_now else lifecycle.USER_CHANGED, user_id=user.id)


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


def delete_user(user: User) -> None:
    """Delete a user and everything that hangs on them (sessions, factors, grants and tokens, field values go by
    the foreign keys). Refused for the last enabled admin. Lifecycle USER_DELETED is told before the row goes."""
    from .accounts import _lock_enabled_admins, enabled_admin_count
    from .lifecycle import USER_DELETED, emit

    if user.is_admin and not user.disabled:
        _lock_enabled_admins()
        if enabled_admin_count() <= 1:
            raise ServiceError(f"{user.username} is the last enabled admin; make another user an admin first",
                               field="username")
    emit(USER_DELETED, user_id=user.id, username=user.username, external_id=user.external_id)
    audit.record("user.remove", "user", user.username,
                 before={"email": user.email, "groups": user.group_names, "admin": user.is_admin,
                         "disabled": user.disabled})
    db.session.delete(user)
    db.session.flush()

"""Account changes made from the admin console and the user's own page: validated as a whole, audited, atomic."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select

from .. import audit
from ..auth import amr, enrolment_links, passkeys, recovery_codes, totp, totp_guard
from ..auth.passwords import Passwords
from ..extensions import db
from ..models import Group, IdpSession, Passkey, User, user_groups
from . import ServiceError
from . import users as users_svc
from .users import GROUP_RE, USERNAME_RE, add_group, add_user, find_user, valid_email, valid_name, validate_password


class FormErrors(ServiceError):
    """Several field-level refusals at once: field name → message. Nothing was written."""

    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class UserInput:
    """What an admin typed into the user form (already stripped by the view)."""

    email: str
    first_name: str = ""
    last_name: str = ""
    groups: tuple[str, ...] = ()
    is_admin: bool = False


def _check_profile(data: UserInput, errors: dict[str, str]) -> None:
    if not data.email:
        errors["email"] = "Enter an email address."
    elif not valid_email(data.email):
        errors["email"] = "This is not a valid email address."
    for name, value in (("first_name", data.first_name), ("last_name", data.last_name)):
        if not valid_name(value):
            errors[name] = "At most 150 characters." if len(value) > 150 else "Control characters are not allowed."
    known = set(group_names())
    unknown = sorted(set(data.groups) - known)
    if unknown:
        errors["groups"] = f"No such group: {', '.join(unknown)}."


def _check_password(password: str, confirm: str | None, errors: dict[str, str], field: str = "password") -> None:
    try:
        validate_password(password)
    except ServiceError as exc:
        errors[field] = str(exc).capitalize() + "."
        return
    if confirm is not None and confirm != password:
        errors[f"{field}_confirm"] = "The two passwords do not match."


# ---------------------------------------------------------------- users

def create_user(username: str, data: UserInput, password: str, password_confirm: str, hasher: Passwords) -> User:
    """Validate every field first; nothing is written unless all of them pass."""
    errors: dict[str, str] = {}
    if not username:
        errors["username"] = "Enter a username."
    elif not USERNAME_RE.fullmatch(username):
        errors["username"] = "Use letters, digits and . _ @ + - (at most 150, starting with a letter or digit)."
    elif find_user(username) is not None:
        errors["username"] = f"A user named {username!r} already exists."
    _check_profile(data, errors)
    _check_password(password, password_confirm, errors)
    if errors:
        raise FormErrors(errors)
    try:
        return add_user(username, email=data.email, password_hash=hasher.hash(password), first_name=data.first_name,
                        last_name=data.last_name, groups=sorted(set(data.groups)), is_admin=data.is_admin)
    except ServiceError as exc:  # a race (created meanwhile) or a rule the checks above do not know
        raise FormErrors({"username": str(exc)}) from None


_lock_enabled_admins = users_svc.lock_enabled_admins
enabled_admin_count = users_svc.enabled_admin_count
end_sessions = users_svc.end_sessions


def _refuse_if_no_admin_left(user: User) -> None:
    users_svc.refuse_if_no_admin_left(user)


def update_user(user: User, data: UserInput) -> User:
    """Change email, names, groups and the admin flag together (or nothing)."""
    errors: dict[str, str] = {}
    _check_profile(data, errors)
    if errors:
        raise FormErrors(errors)
    before = _snapshot(user)
    demotes_enabled_admin = bool(before["admin"]) and not before["disabled"] and not data.is_admin
    if demotes_enabled_admin:
        _lock_enabled_admins()
    user.email = data.email
    user.first_name = data.first_name
    user.last_name = data.last_name
    wanted = set(data.groups)
    user.groups = list(db.session.scalars(select(Group).where(Group.name.in_(wanted)))) if wanted else []
    user.is_admin = data.is_admin
    if demotes_enabled_admin:
        try:
            _refuse_if_no_admin_left(user)
        except ServiceError as exc:
            raise FormErrors({"is_admin": str(exc)}) from None
    old_groups = set(before["groups"])  # type: ignore[call-overload]
    for group in user.groups:
        if group.name not in old_groups:
            users_svc.touch_group(group)
    for name in old_groups - {g.name for g in user.groups}:
        gone = users_svc.find_group(name)
        if gone is not None:
            users_svc.touch_group(gone)
    if _record_changes(user, before):
        users_svc.touch(user)
    return user


def set_disabled(user: User, disabled: bool) -> User:
    """Disable or enable, through users.set_disabled (the one path: sessions end, OIDC grants and every refresh
    token are revoked, lifecycle events; audited there as user.deactivate / user.reactivate)."""
    users_svc.set_disabled(user, disabled)
    return user


def reset_password(user: User, password: str, password_confirm: str, hasher: Passwords,
                   keep_session: str | None = None) -> None:
    """An admin sets a new password; the user's sessions end (except `keep_session`, the admin's own)."""
    errors: dict[str, str] = {}
    _check_password(password, password_confirm, errors)
    if errors:
        raise FormErrors(errors)
    store_password(user, hasher.hash(password), "user.password_reset", keep_session)


def change_own_password(user: User, current: str, new: str, confirm: str, hasher: Passwords,
                        keep_session: str | None) -> None:
    """The user's own change: the current password is required; other sessions end."""
    errors: dict[str, str] = {}
    if not hasher.verify(user.password_hash, current[:1024]):
        errors["current_password"] = "This is not your current password."  # noqa: S105 - a message
    _check_password(new, confirm, errors, field="new_password")
    if not errors and new == current:
        errors["new_password"] = "Choose a different password from the current one."  # noqa: S105 - a message
    if errors:
        raise FormErrors(errors)
    store_password(user, hasher.hash(new), "user.password_change", keep_session)


def store_password(user: User, password_hash: str, action: str, keep_session: str | None) -> None:
    """A new password hash: every session of the user ends (but `keep_session`), audited as `action`."""
    user.password_hash = password_hash
    users_svc.touch(user)   # the SCIM version moves (the resource changed, though its password is never read)
    ended = end_sessions(user, except_id=keep_session)
    audit.record(action, "user", user.username, after={"password_changed": True, "sessions_ended": ended})


def end_sessions_for_factor_change(user: User, *, keep_session: str | None = None) -> int:
    """A factor was removed or enrolled: every other IdP session of `user` ends, and the one kept
    (the user's own, when they made the change) loses its multi-factor assurance, so the next
    sign-in to an app that requires MFA asks for the second factor again. Returns how many ended."""
    ended = end_sessions(user, except_id=keep_session)
    kept = db.session.get(IdpSession, keep_session) if keep_session else None
    if kept is not None and kept.user_id == user.id:
        kept.mfa_at = None
        kept.amr = amr.to_column(amr.first_factor_only(amr.from_column(kept.amr, None)))
    return ended


def remove_factors(user: User) -> None:
    """Every second factor (TOTP, audited by totp.reset; passkeys, audited here) and the recovery codes go."""
    totp.reset(user)
    names = [p.name for p in passkeys.passkeys_of(user)]
    if names:
        passkeys.remove_all(user)
        audit.record("user.passkeys_removed", "user", user.username, before={"passkeys": names})
    recovery_codes.clear(user)


def clear_recovery_codes_without_factor(user: User) -> None:
    """Recovery codes stand in for a second factor: when the last factor goes, so do they."""
    db.session.flush()
    if not totp.is_enrolled(user) and not passkeys.has_passkey(user):
        recovery_codes.clear(user)


def reset_mfa(user: User, *, keep_session: str | None = None) -> int:
    """Remove every second factor and the recovery codes; the user's sessions end (but `keep_session`, an
    admin's own, which loses its MFA assurance). A new first enrolment then follows the org's enrolment rules
    (flows.enrolment). Any open enrolment link of the user ends too: a new enrolment needs a new link."""
    remove_factors(user)
    enrolment_links.revoke_open(user, "second factors reset")
    return end_sessions_for_factor_change(user, keep_session=keep_session)


def remove_passkey(user: User, passkey_id: int, *, keep_session: str | None = None) -> Passkey:
    """Remove one of the user's passkeys (audited); a factor change: the user's other sessions end and the kept
    one (`keep_session`: the user's own, or the admin's when they remove their own) is no longer multi-factor."""
    row = passkeys.find_own(user, passkey_id)
    if row is None:
        raise ServiceError("no such passkey", field="passkey")
    audit.record("user.passkey_removed", "user", user.username,
                 before={"passkey": row.name, "created_at": row.created_at.isoformat(),
                         "backup_eligible": row.backup_eligible})
    passkeys.remove(row)
    clear_recovery_codes_without_factor(user)
    end_sessions_for_factor_change(user, keep_session=keep_session)
    return row


def rename_passkey(user: User, passkey_id: int, name: str) -> Passkey:
    row = passkeys.find_own(user, passkey_id)
    if row is None:
        raise ServiceError("no such passkey", field="passkey")
    before = row.name
    passkeys.rename(row, name)
    if row.name != before:
        audit.record("user.passkey_renamed", "user", user.username, before={"name": before}, after={"name": row.name})
    return row


@dataclass(frozen=True, slots=True)
class OwnReset:
    sessions_ended: int
    by_recovery_code: bool    # a recovery code proved possession (the caller records its use)
    codes_kept: bool          # a passkey is left, and so are the recovery codes


def reset_own_mfa(user: User, code: str, *, keep_session: str | None = None) -> OwnReset:
    """The user removes their own factor, proving possession with a current code (or, the phone lost, one of
    their recovery codes) first; their other sessions end and the current one (`keep_session`) is no longer
    multi-factor. The recovery codes go with the factor (unless a passkey is left)."""
    if not totp.is_enrolled(user):
        raise FormErrors({"code": "No second factor is enrolled."})
    by_totp = not totp_guard.is_suspended(user) and totp.verify_and_consume(user, code)
    if not by_totp and not recovery_codes.consume(user, code):
        raise FormErrors({"code": "That code is not valid. Enter the current code from your authenticator app "
                                  "or one of your recovery codes."})
    totp.reset(user)
    clear_recovery_codes_without_factor(user)  # a passkey left keeps them
    kept = passkeys.has_passkey(user)
    if not kept:
        enrolment_links.revoke_open(user, "second factors reset")
    ended = end_sessions_for_factor_change(user, keep_session=keep_session)
    return OwnReset(ended, not by_totp, kept)


def issue_enrolment_link(user: User, valid_hours: int = enrolment_links.DEFAULT_VALID_HOURS) -> str:
    """A one-time enrolment link token for a user without a second factor (older unused links stop working);
    audited as `users.enrolment_link` without the token. The caller shows `<IDP_BASE_URL>/mfa/enroll/link/<token>`
    once."""
    if not 1 <= valid_hours <= enrolment_links.MAX_VALID_HOURS:
        raise ServiceError(f"valid hours must be from 1 to {enrolment_links.MAX_VALID_HOURS}", field="valid_hours")
    if user.disabled:
        raise ServiceError(f"{user.username} is disabled; enable the account first", field="username")
    if user.mfa_enrolled:
        raise ServiceError(f"{user.username} already has a second factor; reset it first "
                           f"(`idp users mfa-reset {user.username}`)", field="username")
    return enrolment_links.issue(user, valid_hours=valid_hours)


def _snapshot(user: User) -> dict[str, object]:
    return {"email": user.email, "first_name": user.first_name, "last_name": user.last_name,
            "groups": user.group_names, "admin": user.is_admin, "disabled": user.disabled}


def _record_changes(user: User, before: dict[str, object]) -> bool:
    after = _snapshot(user)
    changed = [k for k in after if after[k] != before[k]]
    if changed:
        audit.record("user.update", "user", user.username, before={k: before[k] for k in changed},
                     after={k: after[k] for k in changed})
    return bool(changed)


# ---------------------------------------------------------------- groups

def group_names() -> list[str]:
    return list(db.session.scalars(select(Group.name).order_by(Group.name)))


def create_group(name: str) -> Group:
    name = name.strip()
    if not name:
        raise FormErrors({"name": "Enter a group name."})
    if not GROUP_RE.fullmatch(name):
        raise FormErrors({"name": "Use letters, digits, spaces and . @ + - (at most 150 characters)."})
    try:
        return add_group(name)
    except ServiceError as exc:
        raise FormErrors({"name": str(exc).capitalize() + "."}) from None


def add_member(group: Group, username: str) -> User:
    user = find_user(username.strip()) if username.strip() else None
    if user is None:
        raise FormErrors({"username": f"No user named {username.strip()!r}."})
    if group in user.groups:
        raise FormErrors({"username": f"{user.username} is already a member."})
    user.groups.append(group)
    audit.record("group.add_member", "group", group.name, after={"user": user.username})
    users_svc.touch_group(group)
    users_svc.touch(user)
    return user


def remove_member(group: Group, username: str) -> User:
    user = find_user(username)
    if user is None or group not in user.groups:
        raise ServiceError(f"{username!r} is not a member of {group.name}", field="username")
    user.groups.remove(group)
    audit.record("group.remove_member", "group", group.name, before={"user": user.username})
    users_svc.touch_group(group)
    users_svc.touch(user)
    return user


def groups_with_counts() -> list[tuple[Group, int]]:
    """Every group with its member count, in one GROUP BY."""
    counts = (select(user_groups.c.group_id, func.count().label("n")).group_by(user_groups.c.group_id)
              .subquery())
    rows = db.session.execute(select(Group, func.coalesce(counts.c.n, 0))
                              .outerjoin(counts, counts.c.group_id == Group.id).order_by(Group.name))
    return [(g, int(n)) for g, n in rows]


def members(group: Group) -> list[User]:
    return list(db.session.scalars(select(User).join(user_groups).where(user_groups.c.group_id == group.id)
                                   .order_by(User.username)))


def search_users(query: str = "", *, limit: int = 50, offset: int = 0) -> tuple[list[User], bool]:
    """Users whose username, email or name contains `query`; the bool says whether more follow."""
    q = select(User).order_by(User.username)
    text = query.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(User.username.ilike(pattern, escape="\\") | User.email.ilike(pattern, escape="\\")
                    | User.first_name.ilike(pattern, escape="\\") | User.last_name.ilike(pattern, escape="\\"))
    rows = list(db.session.scalars(q.limit(limit + 1).offset(offset)))
    return rows[:limit], len(rows) > limit


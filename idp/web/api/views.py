"""The API's operations: apps, users, groups, fields, keys, events and the audit trail. Each decodes its input, calls
the services the console and the CLI call (so validation and audit are theirs), and encodes the answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import g
from werkzeug.datastructures import MultiDict

from idp.certs.keystore import KeyStoreError
from idp.events import event_dict
from idp.extensions import component
from idp.models import AdminAudit, ConnectedApp, User
from idp.saml.sp_metadata import SpMetadata
from idp.services import ServiceError, accounts, listing
from idp.services import apps as apps_svc
from idp.services import user_fields as fields_svc
from idp.services import users as users_svc
from idp.services.admin_queries import (
    Cursor,
    activate_keys,
    event_page,
    key_table,
    retire_keys,
    rotate_keys,
)
from idp.services.apps.oidc_settings import settings_of
from idp.web.admin.forms.events import EventFilterForm
from idp.web.context import settings

from . import responses, route
from .models import (
    AppCreate,
    AppList,
    AppOut,
    AppPatch,
    AuditOut,
    AuditPage,
    AuditQuery,
    EventOut,
    EventPage,
    EventQuery,
    FieldCreate,
    FieldList,
    FieldOut,
    GroupCreate,
    GroupList,
    GroupOut,
    GroupSummary,
    KeyChange,
    KeyOut,
    KeyRotate,
    KeyStatusOut,
    MemberAdd,
    OidcIn,
    UserCreate,
    UserOut,
    UserPage,
    UserPatch,
    UserQuery,
)
from .problems import ApiProblem, not_found

NO_CONTENT = ("", 204)


def _iso(value: Any) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _next_link(path: str, position: str | None, query: dict[str, Any]) -> str | None:
    """The absolute URL of the next page (from IDP_BASE_URL, never the Host header), keeping the filters."""
    if position is None:
        return None
    params = {k: v for k, v in query.items() if v is not None and k != "cursor"}
    params = {k: (str(v).lower() if isinstance(v, bool) else v) for k, v in params.items()}
    params["cursor"] = position
    return str(settings().url(f"{path}?{urlencode(params)}"))


def _paged(body: Any, next_url: str | None) -> Any:
    if next_url is None:
        return body
    return body, 200, {"Link": f'<{next_url}>; rel="next"'}


# ---------------------------------------------------------------- apps

def _app(slug: str) -> ConnectedApp:
    try:
        return apps_svc.get_app(slug)
    except ServiceError:
        raise not_found(f"app {slug!r}", "slug") from None


def app_out(app: ConnectedApp, secret: str | None = None) -> AppOut:
    cfg = apps_svc.AppSettings.from_dict(app.settings)
    s = settings()
    saml = None
    if app.has_saml:
        sp = SpMetadata.from_dict(app.sp).to_dict() if app.sp else {}
        saml = {"entity_id": app.entity_id, "acs": sp.get("acs", []), "slo": sp.get("slo", []),
                "signing_certs": len(sp.get("signing_certs", [])),
                "encryption_certs": len(sp.get("encryption_certs", [])),
                "authn_requests_signed": bool(sp.get("authn_requests_signed")),
                "want_assertions_signed": bool(sp.get("want_assertions_signed")),
                "launch_url": s.url(f"/apps/{app.slug}/sso"), "idp_entity_id": cfg.issuer or s.entity_id,
                "idp_metadata_url": s.url(f"/saml/metadata/{app.slug}")}
    oidc = None
    if app.oidc is not None:
        oidc = {**settings_of(app.oidc).summary(),
                "secrets": [{"created_at": _iso(x["created_at"]), "expires_at": _iso(x["expires_at"])}
                            for x in apps_svc.secret_status(app)]}
    d = cfg.to_dict()
    policy = {k: d[k] for k in ("permitted", "allow_groups", "deny_groups", "assigned_users", "ip_policy",
                                "ip_ranges", "require_mfa", "mfa_action", "session_timeout",
                                "require_phishing_resistant")}
    return AppOut.model_validate({
        "slug": app.slug, "name": app.name, "enabled": app.enabled, "source": app.source,
        "protocols": (["saml"] if app.has_saml else []) + (["oidc"] if app.has_oidc else []),
        "version": app.version, "saml": saml, "settings": d, "policy": policy, "oidc": oidc,
        "client_secret": secret})


def _oidc_changes(body: OidcIn) -> dict[str, Any]:
    """OidcIn as change_oidc / initial_settings arguments (durations and the refresh policy parsed as the CLI
    parses them)."""
    from idp.services.apps.oidc_settings import TOKEN_LIFETIME_RANGE

    changes: dict[str, Any] = {}
    for name in ("redirect_uris", "post_logout_redirect_uris", "grant_types", "scopes", "resources"):
        value = getattr(body, name)
        if value is not None:
            changes[name] = tuple(value)
    for name in ("require_pkce", "token_endpoint_auth_method", "jwks_uri", "backchannel_logout_uri",
                 "initiate_login_uri", "ip_policy_refresh"):
        value = getattr(body, name)
        if value is not None:
            changes[name] = value
    for name in ("access_token_lifetime", "id_token_lifetime"):
        value = getattr(body, name)
        if value is not None:
            changes[name] = apps_svc.parse_duration(value, field=f"oidc.{name}", bounds=TOKEN_LIFETIME_RANGE)
    if body.refresh_policy is not None:
        changes["refresh_policy"], changes["refresh_lifetime"] = apps_svc.parse_refresh_policy(body.refresh_policy)
    return changes


@route("/apps", methods=["GET"], scope="apps:read", tag="apps", resp=responses("HTTP_200", AppList))
def list_apps() -> AppList:
    """Every connected app with its SAML and OIDC settings and access policy."""
    return AppList(items=[app_out(a) for a in apps_svc.list_apps()])


@route("/apps/<slug>", methods=["GET"], scope="apps:read", tag="apps", resp=responses("HTTP_200", AppOut))
def get_app(slug: str) -> AppOut:
    """One connected app."""
    return app_out(_app(slug))


@route("/apps", methods=["POST"], scope="apps:write", tag="apps", json=AppCreate,
       resp=responses("HTTP_201", AppOut))
def create_app(json: AppCreate) -> Any:
    """Register an app from SAML metadata, OIDC client settings or both. An OIDC client's secret is in the answer
    once (`client_secret`), stored hashed."""
    if json.metadata_xml is None and json.oidc is None:
        raise ApiProblem(400, "Invalid input", "give metadata_xml (a SAML app), oidc (an OIDC/OAuth client) or both",
                         field="metadata_xml")
    secret = None
    if json.metadata_xml is None:
        assert json.oidc is not None
        if not json.name:
            raise ApiProblem(400, "Invalid input", "an OIDC app needs a name", field="name")
        initial = apps_svc.initial_settings(public=bool(json.oidc.public), **_oidc_changes(json.oidc))
        app, secret = apps_svc.register_oidc_app(name=json.name, slug=json.slug or apps_svc.slugify(json.name),
                                                 settings=initial, source="api")
    else:
        app = apps_svc.register_app(json.metadata_xml.encode("utf-8"), name=json.name, slug=json.slug,
                                    entity_id=json.entity_id, source="api")
        if json.oidc is not None:
            _, secret = apps_svc.add_oidc(app, apps_svc.initial_settings(public=bool(json.oidc.public),
                                                                         **_oidc_changes(json.oidc)))
    return app_out(app, secret), 201, {"Location": settings().url(f"/api/v1/apps/{app.slug}")}


CLEARABLE = ("start_url", "issuer", "nameid_value", "session_timeout")


@route("/apps/<slug>", methods=["PATCH"], scope="apps:write", tag="apps", json=AppPatch,
       resp=responses("HTTP_200", AppOut))
def patch_app(slug: str, json: AppPatch) -> AppOut:
    """Change an app's settings through the same checks as `idp apps set` (nothing is kept when one is refused)."""
    app = _app(slug)
    given = json.model_fields_set
    if "metadata_xml" in given and json.metadata_xml is not None:
        apps_svc.update_metadata(app, json.metadata_xml.encode("utf-8"), entity_id=None)
    secret = None
    if json.oidc is not None:
        if app.oidc is None:
            _, secret = apps_svc.add_oidc(app, apps_svc.initial_settings(public=bool(json.oidc.public),
                                                                         **_oidc_changes(json.oidc)))
        else:
            if json.oidc.public is not None:
                raise ApiProblem(400, "Invalid input", "the client type is chosen when the OIDC settings are added",
                                 field="oidc.public")
            oidc_changes = _oidc_changes(json.oidc)
            if oidc_changes:
                _, secret = apps_svc.change_oidc(app, **oidc_changes)
    changes: dict[str, Any] = {}
    skip = {"name", "enabled", "metadata_xml", "oidc", "signing_key", "signature_algorithm", "encrypt_assertion",
            "encryption_algorithm", "allowed_nameid_formats"}
    for name in given - skip:
        value = getattr(json, name)
        if value is None:
            if name not in CLEARABLE:
                raise ApiProblem(400, "Invalid input", f"{name} cannot be null", field=name)
            changes[name] = apps_svc.CLEAR
        else:
            changes[name] = tuple(value) if isinstance(value, list) else value
    if json.allowed_nameid_formats is not None:
        changes["allowed_nameid_formats"] = tuple(dict.fromkeys(apps_svc.nameid_format_uri(f)
                                                                for f in json.allowed_nameid_formats))
    current = apps_svc.AppSettings.from_dict(app.settings)
    apps_svc.validate_policy_references(
        allow_groups=[g for g in (json.allow_groups or ()) if g not in current.allow_groups],
        deny_groups=[g for g in (json.deny_groups or ()) if g not in current.deny_groups],
        assigned_users=[u for u in (json.assigned_users or ()) if u not in current.assigned_users])
    published = None
    if json.signing_key not in (None, "active"):
        try:
            published = [k.kid for k in component("idp.keystore").current().published]
        except KeyStoreError as exc:
            raise ServiceError(f"cannot check the key: {exc}", field="signing_key") from None
    changes.update(apps_svc.signing_changes(published_kids=published, signing_key=json.signing_key,
                                            signature_algorithm=json.signature_algorithm,
                                            encrypt_assertion=json.encrypt_assertion,
                                            encryption_algorithm=json.encryption_algorithm))
    apps_svc.change_settings(app, enabled=json.enabled, name=json.name, **changes)
    return app_out(app, secret)


@route("/apps/<slug>", methods=["DELETE"], scope="apps:write", tag="apps", resp=responses("HTTP_204"))
def delete_app(slug: str) -> Any:
    """Delete an app (its OIDC grants and tokens go with it)."""
    _app(slug)
    apps_svc.remove_app(slug)
    return NO_CONTENT


# ---------------------------------------------------------------- users

def _user(username: str) -> User:
    user = users_svc.find_user(username)
    if user is None:
        raise not_found(f"user {username!r}", "username")
    return user


def user_out(user: User) -> UserOut:
    custom = user.custom_fields or {}
    defined = fields_svc.list_fields()
    return UserOut(username=user.username, email=user.email, first_name=user.first_name, last_name=user.last_name,
                   groups=user.group_names, admin=user.is_admin, disabled=user.disabled,
                   has_password=user.password_hash is not None,
                   fields={f.name: custom[f.name] for f in defined if f.name in custom},
                   external_id=user.external_id, created_at=_iso(user.created_at) or "",
                   updated_at=_iso(user.updated_at), version=user.version or 1)


@route("/users", methods=["GET"], scope="users:read", tag="users", query=UserQuery,
       resp=responses("HTTP_200", UserPage))
def list_users(query: UserQuery) -> Any:
    """Users by username, a page at a time (`next` and a Link header lead on); filter by text, group, status."""
    rows, position = listing.users_page(after=query.cursor, query=query.q or "", group=query.group,
                                        disabled=query.disabled, limit=query.limit)
    next_url = _next_link("/api/v1/users", position, query.model_dump())
    return _paged(UserPage(items=[user_out(u) for u in rows], next=next_url), next_url)


@route("/users/<username>", methods=["GET"], scope="users:read", tag="users", resp=responses("HTTP_200", UserOut))
def get_user(username: str) -> UserOut:
    """One user with groups, status and user fields."""
    return user_out(_user(username))


ADMINS_SCOPE = "admins:write"


def _guard_admin(target: Any = None, *, makes_admin: bool = False) -> None:
    """Administrators are changed only by a token that also holds admins:write: an HR feed's users:write token
    must not be able to create an admin or take one over (its password, email, status)."""
    if not (makes_admin or (target is not None and target.is_admin)):
        return
    if ADMINS_SCOPE not in g.api_principal.scopes:
        raise ApiProblem(403, "Forbidden", "changing administrators needs a token with the scope admins:write",
                         field="admin")


def _password_hash(password: str | None) -> str | None:
    if password is None:
        return None
    users_svc.validate_password(password)
    return str(component("idp.passwords").hash(password))


@route("/users", methods=["POST"], scope="users:write", tag="users", json=UserCreate,
       resp=responses("HTTP_201", UserOut))
def create_user(json: UserCreate) -> Any:
    """Create a user (as `idp users add`), with user field values."""
    _guard_admin(makes_admin=bool(json.admin))
    user = users_svc.add_user(json.username, email=json.email, password_hash=_password_hash(json.password),
                              first_name=json.first_name, last_name=json.last_name,
                              groups=list(dict.fromkeys(json.groups)), is_admin=json.admin)
    fields_svc.set_user_fields(user, json.fields)
    return user_out(user), 201, {"Location": settings().url(f"/api/v1/users/{user.username}")}


@route("/users/<username>", methods=["PATCH"], scope="users:write", tag="users", json=UserPatch,
       resp=responses("HTTP_200", UserOut))
def patch_user(username: str, json: UserPatch) -> UserOut:
    """Change a user: profile, groups, admin flag, status, password, user fields (all or nothing)."""
    user = _user(username)
    _guard_admin(user, makes_admin=json.admin is True)
    given = json.model_fields_set
    for name in ("email", "first_name", "last_name", "groups", "admin", "disabled"):
        if name in given and getattr(json, name) is None:
            raise ApiProblem(400, "Invalid input", f"{name} cannot be null", field=name)
    if given & {"email", "first_name", "last_name", "groups", "admin"}:
        data = accounts.UserInput(
            email=json.email if json.email is not None else user.email,
            first_name=json.first_name if json.first_name is not None else user.first_name,
            last_name=json.last_name if json.last_name is not None else user.last_name,
            groups=tuple(json.groups) if json.groups is not None else tuple(user.group_names),
            is_admin=json.admin if json.admin is not None else user.is_admin)
        accounts.update_user(user, data)
    if json.password is not None:
        hasher = component("idp.passwords")
        accounts.reset_password(user, json.password, json.password, hasher)
    if json.fields:
        fields_svc.set_user_fields(user, json.fields)
    if json.disabled is not None:
        accounts.set_disabled(user, json.disabled)
    return user_out(user)


@route("/users/<username>/disable", methods=["POST"], scope="users:write", tag="users",
       resp=responses("HTTP_200", UserOut))
def disable_user(username: str) -> UserOut:
    """Disable a user: their sessions end and their refresh tokens are revoked."""
    user = _user(username)
    _guard_admin(user)
    accounts.set_disabled(user, True)
    return user_out(user)


@route("/users/<username>/enable", methods=["POST"], scope="users:write", tag="users",
       resp=responses("HTTP_200", UserOut))
def enable_user(username: str) -> UserOut:
    """Enable a disabled user."""
    user = _user(username)
    _guard_admin(user)
    accounts.set_disabled(user, False)
    return user_out(user)


@route("/users/<username>", methods=["DELETE"], scope="users:write", tag="users", resp=responses("HTTP_204"))
def delete_user(username: str) -> Any:
    """Delete a user (refused for the last enabled admin)."""
    user = _user(username)
    _guard_admin(user)
    users_svc.delete_user(user)
    return NO_CONTENT


# ---------------------------------------------------------------- groups

def _group_out(name: str) -> GroupOut:
    group = users_svc.find_group(name)
    if group is None:
        raise not_found(f"group {name!r}", "name")
    return GroupOut(name=group.name, members=[u.username for u in accounts.members(group)],
                    external_id=group.external_id, created_at=_iso(group.created_at) or "")


@route("/groups", methods=["GET"], scope="groups:read", tag="groups", resp=responses("HTTP_200", GroupList))
def list_groups() -> GroupList:
    """Every group with its member count."""
    return GroupList(items=[GroupSummary(name=g.name, members=n) for g, n in accounts.groups_with_counts()])


@route("/groups/<name>", methods=["GET"], scope="groups:read", tag="groups", resp=responses("HTTP_200", GroupOut))
def get_group(name: str) -> GroupOut:
    """One group with its members."""
    return _group_out(name)


@route("/groups", methods=["POST"], scope="groups:write", tag="groups", json=GroupCreate,
       resp=responses("HTTP_201", GroupOut))
def create_group(json: GroupCreate) -> Any:
    """Create a group."""
    group = users_svc.add_group(json.name)
    return _group_out(group.name), 201, {"Location": settings().url(f"/api/v1/groups/{group.name}")}


@route("/groups/<name>", methods=["DELETE"], scope="groups:write", tag="groups", resp=responses("HTTP_204"))
def delete_group(name: str) -> Any:
    """Delete a group and its memberships (refused while an app's access policy names it)."""
    _group_out(name)
    users_svc.remove_group(name)
    return NO_CONTENT


@route("/groups/<name>/members", methods=["POST"], scope="groups:write", tag="groups", json=MemberAdd,
       resp=responses("HTTP_200", GroupOut))
def add_member(name: str, json: MemberAdd) -> GroupOut:
    """Add a user to the group."""
    group = users_svc.find_group(name)
    if group is None:
        raise not_found(f"group {name!r}", "name")
    accounts.add_member(group, json.username)
    return _group_out(name)


@route("/groups/<name>/members/<username>", methods=["DELETE"], scope="groups:write", tag="groups",
       resp=responses("HTTP_200", GroupOut))
def remove_member(name: str, username: str) -> GroupOut:
    """Remove a user from the group."""
    group = users_svc.find_group(name)
    if group is None:
        raise not_found(f"group {name!r}", "name")
    accounts.remove_member(group, username)
    return _group_out(name)


# ---------------------------------------------------------------- user fields

@route("/fields", methods=["GET"], scope="fields:read", tag="fields", resp=responses("HTTP_200", FieldList))
def list_fields() -> FieldList:
    """The admin-defined user fields and the apps that release them."""
    return FieldList(items=[
        FieldOut(name=f.name, label=f.label, type=f.type, unique=f.unique,
                 used_by=[f"{slug} ({where})" for slug, where in fields_svc.apps_using_field(f.name)])
        for f in fields_svc.list_fields()])


@route("/fields", methods=["POST"], scope="fields:write", tag="fields", json=FieldCreate,
       resp=responses("HTTP_201", FieldOut))
def add_field(json: FieldCreate) -> Any:
    """Define a user field (as `idp fields add`)."""
    row = fields_svc.add_field(json.name, json.type, unique=json.unique, label=json.label)
    return FieldOut(name=row.name, label=row.label, type=row.type, unique=row.unique, used_by=[]), 201


@route("/fields/<name>", methods=["DELETE"], scope="fields:write", tag="fields", resp=responses("HTTP_204"))
def remove_field(name: str) -> Any:
    """Remove a field and every user's value of it (refused while an app releases it)."""
    if fields_svc.find_field(name) is None:
        raise not_found(f"user field {name!r}", "name")
    fields_svc.remove_field(name)
    return NO_CONTENT


# ---------------------------------------------------------------- signing keys

def _store() -> Any:
    return component("idp.keystore")


def _key_problem(exc: KeyStoreError) -> ApiProblem:
    return ApiProblem(409, "Key operation refused", str(exc), type_="key_state")


@route("/keys", methods=["GET"], scope="keys:read", tag="keys", resp=responses("HTTP_200", KeyStatusOut))
def key_status() -> KeyStatusOut:
    """Every signing key with state, fingerprint, expiry and the apps pinned to it; the store's warnings."""
    try:
        rows, warnings = key_table(_store())
    except KeyStoreError as exc:
        raise _key_problem(exc) from None
    return KeyStatusOut(keys=[KeyOut.model_validate({**row.status, "pinned_by": row.pinned_by}) for row in rows],
                        warnings=warnings)


@route("/keys/rotate", methods=["POST"], scope="keys:write", tag="keys", json=KeyRotate,
       resp=responses("HTTP_200", KeyChange, extra=("HTTP_409",)))
def rotate_key(json: KeyRotate) -> KeyChange:
    """Stage the next key pair: published in the metadata, not yet signing."""
    try:
        kid = rotate_keys(_store(), settings().entity_id, json.key_type, json.days)
    except KeyStoreError as exc:
        raise _key_problem(exc) from None
    return KeyChange(kid=kid)


@route("/keys/activate", methods=["POST"], scope="keys:write", tag="keys",
       resp=responses("HTTP_200", KeyChange, extra=("HTTP_409",)))
def activate_key() -> KeyChange:
    """The staged key signs from now on; the old one stays published as retiring."""
    try:
        new, old = activate_keys(_store())
    except KeyStoreError as exc:
        raise _key_problem(exc) from None
    return KeyChange(kid=new, retiring=old or None)


@route("/keys/retire", methods=["POST"], scope="keys:write", tag="keys",
       resp=responses("HTTP_200", KeyChange, extra=("HTTP_409",)))
def retire_key() -> KeyChange:
    """The retiring key leaves the metadata and is archived."""
    try:
        kid = retire_keys(_store())
    except KeyStoreError as exc:
        raise _key_problem(exc) from None
    return KeyChange(kid=kid)


# ---------------------------------------------------------------- events and audit

@route("/events", methods=["GET"], scope="events:read", tag="events", query=EventQuery,
       resp=responses("HTTP_200", EventPage))
def list_events(query: EventQuery) -> Any:
    """The SSO event log, newest first: the console's filters and keyset pages."""
    filters = {k: v for k, v in query.model_dump().items() if k not in ("cursor", "limit") and v is not None}
    form = EventFilterForm(MultiDict(filters), meta={"csrf": False})
    if not form.validate():
        name, message = next(iter(form.messages.items()))
        raise ApiProblem(400, "Invalid input", f"{name}: {message}", field=name)
    before = Cursor.decode(query.cursor) if query.cursor else None
    page = event_page(form.filter, before=before, limit=query.limit)
    next_url = _next_link("/api/v1/events", page.older.encode() if page.older else None, query.model_dump())
    items = [EventOut.model_validate(event_dict(e)) for e in page.events]
    return _paged(EventPage(items=items, next=next_url), next_url)


def audit_out(row: AdminAudit) -> AuditOut:
    return AuditOut(id=row.id, at=_iso(row.at) or "", actor=row.actor, action=row.action,
                    target_type=row.target_type, target=row.target, before=row.before, after=row.after)


@route("/audit", methods=["GET"], scope="audit:read", tag="audit", query=AuditQuery,
       resp=responses("HTTP_200", AuditPage))
def list_audit(query: AuditQuery) -> Any:
    """The admin audit trail (console, CLI and API changes), newest first."""
    rows, position = listing.audit_page(before=query.cursor, target=query.target, limit=query.limit)
    next_url = _next_link("/api/v1/audit", position, query.model_dump())
    return _paged(AuditPage(items=[audit_out(r) for r in rows], next=next_url), next_url)

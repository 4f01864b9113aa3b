"""Outbound provisioning: keep the accounts of the users an app's access policy permits at that app, over SCIM 2.0
(RFC 7643 / 7644), through the outbox.

Per app (AppProvisioning): the SCIM base URL, a credential (a bearer token, or OAuth client credentials: client id,
token URL and secret), sealed with the data key (auth.datakeys) and never shown again; the operations allowed
(create update deactivate delete groups); the mapping of SCIM paths to sources (a user field or a formula, as an
app's attributes: attributes.release compiles and evaluates it); what losing access means (deactivate: PATCH
active false, or delete).

Lifecycle events (services.lifecycle) enqueue a job keyed "prov:APP:USER" in the unit of work of the change; the
job reads the state when it runs (so one pending job per key is enough) and creates, updates, deactivates or
deletes the remote account. A representation whose hash did not change since the last push is not sent again.
Before a create, the remote is searched by userName, so a job redelivered after a worker died between the POST
and its commit links the account it created instead of creating a second one. Every action is an event
(event_type "provision", protocol "scim"). A scheduled reconciliation compares the permitted users with the
provisioned accounts and the remote, and fixes drift; an import links existing remote accounts first.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit

from sqlalchemy import func, select

from .. import audit
from ..attributes.release import ReleaseConfigError, Subject, compile_release, release
from ..auth.datakeys import DataKeyError, DataKeys
from ..errors import EventContext
from ..events import record_event
from ..extensions import component, db
from ..models import AppProvisioning, ConnectedApp, Group, OutboxJob, ProvisionedAccount, ProvisionedGroup, User, utcnow
from ..policy.checks import check_membership
from ..policy.model import AccessContext, PermittedUsers
from ..reasons import Reason
from . import ServiceError, lifecycle, outbox
from .apps import AppConfig, app_config_by_id
from .fetch import http_request
from .field_schema import current_schema
from .users import user_fields

SECRET_PURPOSE = "app_provisioning.secret"  # noqa: S105 - the sealing purpose, not a secret
OPERATIONS = ("create", "update", "deactivate", "delete", "groups")
DEFAULT_OPERATIONS = ("create", "update", "deactivate")
DEPROVISION_MODES = ("deactivate", "delete")
# SCIM path -> source (a field name, or "formula:EXPR"); `active` is the IdP's: true while permitted
DEFAULT_MAPPING: dict[str, str] = {
    "userName": "username",
    "name.givenName": "first_name",
    "name.familyName": "last_name",
    "displayName": "display_name",
    'emails[type eq "work"].value': "email",
    "externalId": "id",
}
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_JSON = "application/scim+json"
KIND_USER = "provision.user"
KIND_REMOVE = "provision.remove"
KIND_RECONCILE = "provision.reconcile"
KIND_GROUP = "provision.group"
KIND_GROUP_REMOVE = "provision.group_remove"
# a group job that finds a member whose account is still being created runs again this much later
GROUP_RETRY = timedelta(seconds=30)
MAX_REMOTE_USERS = 100_000
PAGE = 100
# attr, attr.sub, or attr[type eq "work"].sub (RFC 7644 3.10 paths with the one value filter mappings need)
_PATH = re.compile(r'^(?P<attr>[A-Za-z][A-Za-z0-9_$-]{0,63})'
                   r'(?:\[type eq "(?P<type>[A-Za-z0-9 _.-]{1,40})"\])?'
                   r'(?:\.(?P<sub>[A-Za-z][A-Za-z0-9_$-]{0,63}))?$')
RESERVED_PATHS = frozenset({"id", "meta", "schemas", "active"})


# ------------------------------------------------------------------ configuration

def data_keys() -> DataKeys:
    return cast(DataKeys, component("idp.datakeys"))


def get_config(app_id: int) -> AppProvisioning | None:
    return db.session.get(AppProvisioning, app_id)


def parse_path(path: str) -> re.Match[str]:
    m = _PATH.fullmatch(path)
    if m is None:
        raise ServiceError(f"SCIM path {path[:100]!r} is not valid (use attr, attr.sub or "
                           'attr[type eq "work"].sub)', field="mapping")
    if m["type"] and not m["sub"]:
        raise ServiceError(f'SCIM path {path[:100]!r}: a [type eq "..."] filter needs a sub-attribute (.value)',
                           field="mapping")
    if m["attr"] in RESERVED_PATHS:
        raise ServiceError(f"SCIM path {m['attr']!r} is set by the IdP, not mapped", field="mapping")
    return m


def _compiled(mapping: dict[str, str], *, fresh: bool = False) -> Any:
    try:
        return compile_release(attributes=mapping, attribute_formats={}, friendly_names={}, on_missing="omit",
                               nameid_value=None, schema=current_schema(fresh=fresh))
    except ReleaseConfigError as exc:
        raise ServiceError(f"mapping: {exc}", field="mapping") from None


def validate_mapping(mapping: dict[str, str]) -> dict[str, str]:
    """The mapping as stored (sources in their stored spelling), each path and source checked."""
    from ..attributes.release import stored_source

    if not mapping:
        raise ServiceError("the mapping is empty: map at least userName", field="mapping")
    out = {path: stored_source(source) for path, source in mapping.items()}
    for path in out:
        parse_path(path)
    if "userName" not in out:
        raise ServiceError("the mapping must give userName (SCIM requires it)", field="mapping")
    _compiled(out, fresh=True)
    return out


def _private_allowed() -> bool:
    return bool(component("idp.settings").provisioning_allow_private)


def _validate_url(url: str, what: str) -> str:
    url = url.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ServiceError(f"{what} must be an absolute http:// or https:// URL", field="url")
    if parts.scheme == "http" and not _private_allowed():
        raise ServiceError(f"{what} must be https:// (the bearer token or client secret would travel in clear); "
                           "http:// only with IDP_PROVISIONING_ALLOW_PRIVATE for a local test peer", field="url")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ServiceError(f"{what} must not contain credentials, a query or a fragment", field="url")
    if len(url) > 2048:
        raise ServiceError(f"{what} is too long", field="url")
    return url


def _validate_secret(secret: str, what: str) -> str:
    secret = secret.strip()
    if not secret or len(secret) > 4096 or any(ord(c) < 33 or ord(c) == 127 for c in secret):
        raise ServiceError(f"the {what} is empty or not valid (printable characters, no spaces)", field="secret")
    return secret


def configure(app: ConnectedApp, *, scim_url: str | None = None, token: str | None = None,
              client_id: str | None = None, token_url: str | None = None, client_secret: str | None = None,
              operations: list[str] | None = None, mapping: dict[str, str] | None = None,
              deprovision: str | None = None, enabled: bool | None = None) -> AppProvisioning:
    """Create or change an app's provisioning (validated as a whole; nothing written on an error; audited without
    the secret). `mapping` entries are merged over the current mapping (the default one at first); an entry
    with an empty source removes that path. Enabling it (or changing it while enabled) schedules a
    reconciliation of the app."""
    cfg = get_config(app.id)
    before = show_config(cfg) if cfg is not None else None
    if cfg is None:
        if scim_url is None:
            raise ServiceError("provisioning is not configured for this app: give --scim-url and a credential",
                               field="url")
        cfg = AppProvisioning(app_id=app.id, enabled=False, base_url="", auth_kind="bearer",
                              operations=list(DEFAULT_OPERATIONS), mapping=dict(DEFAULT_MAPPING),
                              deprovision="deactivate")
        new = True
    else:
        new = False
    if token is not None and (client_id is not None or client_secret is not None):
        raise ServiceError("give a bearer token or client credentials, not both", field="secret")
    if scim_url is not None:
        cfg.base_url = _validate_url(scim_url, "the SCIM base URL")
    if token is not None:
        cfg.auth_kind, cfg.client_id, cfg.token_url = "bearer", None, None
        cfg.secret_sealed = data_keys().seal(_validate_secret(token, "bearer token"), SECRET_PURPOSE)
    elif client_id is not None or token_url is not None or client_secret is not None:
        # already on client credentials: the client id or token URL may change without giving the secret again
        keep = cfg.auth_kind == "client_credentials" and cfg.secret_sealed is not None and cfg.client_id is not None
        if (client_id is None and not keep) or (client_secret is None and not keep) \
                or (token_url is None and cfg.token_url is None):
            raise ServiceError("client credentials need --client-id, --token-url and the secret (--secret-stdin)",
                               field="secret")
        if client_id is not None:
            client_id = client_id.strip()
            if not client_id or len(client_id) > 255 or not client_id.isprintable():
                raise ServiceError("the client id is empty or not valid", field="client_id")
            cfg.client_id = client_id
        cfg.auth_kind = "client_credentials"
        cfg.token_url = _validate_url(token_url, "the token URL") if token_url is not None else cfg.token_url
        if client_secret is not None:
            cfg.secret_sealed = data_keys().seal(_validate_secret(client_secret, "client secret"), SECRET_PURPOSE)
    if cfg.secret_sealed is None:
        raise ServiceError("give a credential: --token-stdin, or --client-id, --token-url and --secret-stdin",
                           field="secret")
    if operations is not None:
        unknown = [op for op in operations if op not in OPERATIONS]
        if unknown:
            raise ServiceError(f"unknown operation(s) {', '.join(unknown)} (choose from {', '.join(OPERATIONS)})",
                               field="operations")
        cfg.operations = [op for op in OPERATIONS if op in operations]
    if mapping is not None:
        merged = dict(cfg.mapping or DEFAULT_MAPPING)
        for path, source in mapping.items():
            if source.strip():
                merged[path] = source
            else:
                merged.pop(path, None)
        cfg.mapping = validate_mapping(merged)
    if deprovision is not None:
        if deprovision not in DEPROVISION_MODES:
            raise ServiceError(f"deprovision must be one of {', '.join(DEPROVISION_MODES)}", field="deprovision")
        cfg.deprovision = deprovision
    if cfg.deprovision not in cfg.operations:
        raise ServiceError(f"--deprovision {cfg.deprovision} needs the {cfg.deprovision} operation "
                           "(--operations)", field="deprovision")
    if enabled is not None:
        cfg.enabled = enabled
    cfg.updated_at = utcnow()
    if new:
        db.session.add(cfg)
    after = show_config(cfg)
    changed = [k for k in after if before is None or before.get(k) != after[k]]
    secret_changed = token is not None or client_secret is not None
    if changed or secret_changed:
        audit.record("app.provisioning", "app", app.slug,
                     before={k: before.get(k) for k in changed} if before else None,
                     after={**{k: after[k] for k in changed}, **({"secret_changed": True} if secret_changed else {})})
    db.session.flush()
    if cfg.enabled:
        schedule_reconcile(app.id)
    return cfg


def check_mapping_entry(path: str, source: str) -> None:
    """One mapping entry checked on its own (the console shows the error next to its row)."""
    from ..attributes.release import stored_source

    parse_path(path)
    _compiled({path: stored_source(source)}, fresh=True)


def reconcile_now(app: ConnectedApp) -> list[PlanItem]:
    """An admin's "reconcile now": plan, enqueue the changes, audit (RemoteError / RemoteRefused when the app
    cannot be listed: nothing is written)."""
    plan = reconcile_plan(app.id)
    apply_plan(app.id, plan)
    audit.record("app.provisioning_reconcile", "app", app.slug, after={"changes": len(plan)})
    return plan


def show_config(cfg: AppProvisioning) -> dict[str, Any]:
    """The settings as the CLI and the console show them: never the secret."""
    return {"enabled": cfg.enabled, "scim_url": cfg.base_url, "auth": cfg.auth_kind,
            "client_id": cfg.client_id, "token_url": cfg.token_url, "has_secret": cfg.secret_sealed is not None,
            "operations": list(cfg.operations or []), "mapping": dict(cfg.mapping or {}),
            "deprovision": cfg.deprovision}


def account_counts(app_id: int) -> dict[str, int]:
    rows = db.session.execute(select(ProvisionedAccount.state, func.count())
                              .where(ProvisionedAccount.app_id == app_id).group_by(ProvisionedAccount.state)).all()
    return {state: int(n) for state, n in rows}


# ------------------------------------------------------------------ who, and what

def is_permitted(app: AppConfig, user: User) -> bool:
    """The app's access policy admits the user, whatever address or factors (policy.checks.check_membership)."""
    ctx = AccessContext(app_slug=app.slug, app_enabled=app.enabled, policy=app.settings.policy,
                        username=user.username, user_disabled=user.disabled,
                        user_groups=frozenset(user.group_names), client_ip=None)
    return check_membership(ctx) is None


def representation(app: AppConfig, cfg: AppProvisioning, user: User) -> dict[str, Any]:
    """The SCIM User resource the app should hold for `user`: the mapping evaluated by the release engine (a
    source without a value is left out), `active` true."""
    compiled = _compiled(dict(cfg.mapping or DEFAULT_MAPPING))
    subject = Subject(fields=user_fields(user), app_slug=app.slug, app_name=app.name, entity_id=app.entity_id or "")
    released = release(compiled, subject, current_schema(), with_nameid=False)
    resource: dict[str, Any] = {"schemas": [USER_SCHEMA]}
    for attr in released.attributes:
        m = parse_path(attr.name)
        value: Any = attr.values[0] if len(attr.values) == 1 else list(attr.values)
        if m["type"]:
            items = resource.setdefault(m["attr"], [])
            entry = next((i for i in items if i.get("type") == m["type"]), None)
            if entry is None:
                entry = {"type": m["type"], **({"primary": True} if not items else {})}
                items.append(entry)
            entry[m["sub"]] = value
        elif m["sub"]:
            resource.setdefault(m["attr"], {})[m["sub"]] = value
        else:
            resource[m["attr"]] = value
    resource["active"] = True
    return resource


def resource_hash(resource: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(resource, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _covers(want: Any, have: Any) -> bool:
    """Does the remote value hold everything the IdP pushes (`want`)? Objects by key, lists item by item."""
    if isinstance(want, dict):
        return isinstance(have, dict) and all(_covers(v, have.get(k)) for k, v in want.items())
    if isinstance(want, list):
        return isinstance(have, list) and all(any(_covers(w, h) for h in have) for w in want)
    if isinstance(want, str) and isinstance(have, str):
        return want == have
    return bool(want == have)


# ------------------------------------------------------------------ the remote SCIM service

class RemoteError(Exception):
    """A failed exchange worth retrying (network, 5xx, 429, 401/403 until the credential is fixed)."""

    def __init__(self, operation: str, message: str, status: int | None = None,
                 reason: Reason = Reason.PROVISIONING_FAILED) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation, self.status, self.reason = operation, status, reason


class RemoteRefused(outbox.PermanentFailure):
    """The remote refused the request for good (400, 409 with another account, 422...): the job is dead."""

    def __init__(self, operation: str, message: str, status: int | None = None,
                 reason: Reason = Reason.PROVISIONING_FAILED) -> None:
        super().__init__(f"{operation}: {message}")
        self.operation, self.status, self.reason = operation, status, reason


_TOKENS: dict[int, tuple[str, float, str]] = {}   # app id -> (access token, expiry (monotonic), sealed secret)
RETRYABLE = frozenset({401, 403, 408, 425, 429})


class Remote:
    """One app's SCIM service, reached through the SSRF-guarded client of services.fetch."""

    def __init__(self, cfg: AppProvisioning) -> None:
        s = component("idp.settings")
        self.cfg = cfg
        self.base = cfg.base_url.rstrip("/")
        self.allow_private = bool(s.provisioning_allow_private)
        self.timeout = float(s.provisioning_timeout_s)

    def _secret(self) -> str:
        if self.cfg.secret_sealed is None:
            raise RemoteRefused("auth", "no credential is configured")
        try:
            return data_keys().open(self.cfg.secret_sealed, SECRET_PURPOSE)
        except DataKeyError as exc:
            raise RemoteRefused("auth", str(exc)) from None

    def _authorization(self, *, renew: bool = False) -> str:
        if self.cfg.auth_kind == "bearer":
            return f"Bearer {self._secret()}"
        cached = _TOKENS.get(self.cfg.app_id)
        if cached and not renew and cached[1] > time.monotonic() and cached[2] == self.cfg.secret_sealed:
            return f"Bearer {cached[0]}"
        assert self.cfg.token_url and self.cfg.client_id
        basic = base64.b64encode(f"{quote(self.cfg.client_id, safe='')}:{quote(self._secret(), safe='')}"
                                 .encode()).decode()
        try:
            answer = http_request("POST", self.cfg.token_url, body=urlencode({"grant_type": "client_credentials"})
                                  .encode(), headers={"Authorization": f"Basic {basic}", "Accept": "application/json",
                                                      "Content-Type": "application/x-www-form-urlencoded"},
                                  allow_private=self.allow_private, timeout=self.timeout, what="token endpoint")
        except ServiceError as exc:
            raise RemoteError("token", str(exc)) from None
        if answer.status != 200:
            raise RemoteError("token", f"the token endpoint answered HTTP {answer.status}", answer.status)
        try:
            doc = json.loads(answer.body)
            access, lifetime = str(doc["access_token"]), float(doc.get("expires_in") or 300)
        except (ValueError, KeyError, TypeError):
            raise RemoteError("token", "the token endpoint's answer has no access_token", answer.status) from None
        _TOKENS[self.cfg.app_id] = (access, time.monotonic() + max(0.0, lifetime - 30), self.cfg.secret_sealed or "")
        return f"Bearer {access}"

    def call(self, operation: str, method: str, path: str, body: dict[str, Any] | None = None,
             ok: tuple[int, ...] = (200, 201, 204)) -> tuple[int, dict[str, Any] | None]:
        """(status, JSON body or None); a status outside `ok` and 404 raises RemoteError / RemoteRefused."""
        data = json.dumps(body).encode() if body is not None else None
        for attempt in (1, 2):
            headers = {"Authorization": self._authorization(renew=attempt == 2), "Accept": SCIM_JSON}
            if data is not None:
                headers["Content-Type"] = SCIM_JSON
            try:
                answer = http_request(method, self.base + path, body=data, headers=headers,
                                      allow_private=self.allow_private, timeout=self.timeout)
            except ServiceError as exc:
                raise RemoteError(operation, str(exc)) from None
            if answer.status == 401 and self.cfg.auth_kind == "client_credentials" and attempt == 1:
                continue   # the access token may have ended early: one fresh token, then the answer stands
            break
        parsed: dict[str, Any] | None = None
        if answer.body:
            try:
                loaded = json.loads(answer.body)
                parsed = loaded if isinstance(loaded, dict) else None
            except ValueError:
                parsed = None
        if answer.status in ok or answer.status == 404:
            return answer.status, parsed
        detail = _error_detail(parsed)
        message = f"HTTP {answer.status}" + (f": {detail}" if detail else "")
        if answer.status >= 500 or answer.status in RETRYABLE or answer.status == 409 and method == "POST":
            raise RemoteError(operation, message, answer.status)
        raise RemoteRefused(operation, message, answer.status)

    def find_by_username(self, user_name: str) -> dict[str, Any] | None:
        flt = f"userName eq {json.dumps(user_name)}"
        _, doc = self.call("search", "GET", f"/Users?{urlencode({'filter': flt})}", ok=(200,))
        found = [r for r in (doc or {}).get("Resources") or [] if isinstance(r, dict)]
        return found[0] if found else None

    def find_group(self, display_name: str) -> dict[str, Any] | None:
        flt = f"displayName eq {json.dumps(display_name)}"
        _, doc = self.call("group search", "GET", f"/Groups?{urlencode({'filter': flt})}", ok=(200,))
        found = [r for r in (doc or {}).get("Resources") or [] if isinstance(r, dict)]
        return found[0] if found else None

    def users(self) -> Iterator[dict[str, Any]]:
        """Every remote user, page by page (RFC 7644 3.4.2.4)."""
        return self.resources("Users")

    def groups(self) -> Iterator[dict[str, Any]]:
        return self.resources("Groups")

    def resources(self, endpoint: str) -> Iterator[dict[str, Any]]:
        start, seen = 1, 0
        while seen < MAX_REMOTE_USERS:
            status, doc = self.call("list", "GET", f"/{endpoint}?startIndex={start}&count={PAGE}", ok=(200,))
            if status == 404:
                raise RemoteRefused("list", f"the SCIM base URL has no /{endpoint} endpoint (HTTP 404)", 404)
            page = [r for r in (doc or {}).get("Resources") or [] if isinstance(r, dict)]
            yield from page
            seen += len(page)
            total = int((doc or {}).get("totalResults") or 0)
            if not page or seen >= total:
                return
            start += len(page)


def _error_detail(doc: dict[str, Any] | None) -> str:
    if not doc:
        return ""
    detail = str(doc.get("detail") or "")[:300]
    scim_type = doc.get("scimType")
    return f"{scim_type}: {detail}" if scim_type else detail


# ------------------------------------------------------------------ events

def record_provision_event(app_slug: str, username: str | None, reason: Reason, operation: str, *,
                           remote_status: int | None = None, error: str | None = None,
                           extra: dict[str, Any] | None = None) -> None:
    detail: dict[str, Any] = {"operation": operation, "remote_status": remote_status, "error": error,
                              **(extra or {})}
    ctx = EventContext(event_type="provision", app_slug=app_slug, username=username, protocol="scim",
                       detail={k: v for k, v in detail.items() if v is not None})
    record_event(ctx, reason, client_ip=None, user_agent=None)


# ------------------------------------------------------------------ one user at one app

@dataclass(slots=True)
class SyncResult:
    operation: str          # create | link | update | deactivate | delete | unchanged | none | skipped
    remote_id: str | None = None


_LAST_FAILURE: dict[tuple[int, int | str], tuple[str, int | None, Reason]] = {}


def _user_key(app_id: int, user_id: int) -> str:
    return f"prov:{app_id}:{user_id}"


def sync_user(app_id: int, user_id: int) -> SyncResult:
    """Bring the user's account at the app to what the policy and mapping say now (run by the worker)."""
    cfg = get_config(app_id)
    app = app_config_by_id(app_id)
    if cfg is None or app is None or not cfg.enabled:
        return SyncResult("skipped")
    user = db.session.get(User, user_id)
    account = db.session.scalar(select(ProvisionedAccount).where(ProvisionedAccount.app_id == app_id,
                                                                 ProvisionedAccount.user_id == user_id)
                                .with_for_update())
    remote = Remote(cfg)
    before = _member_at(account)
    try:
        if user is not None and is_permitted(app, user):
            result = _push(app, cfg, remote, user, account)
        elif user is not None and account is not None:
            result = _deprovision(app, cfg, remote, user.username, account)
        else:
            return SyncResult("none")
    except (RemoteError, RemoteRefused) as exc:
        _LAST_FAILURE[(app_id, user_id)] = (exc.operation, exc.status, exc.reason)
        raise
    if user is not None and "groups" in (cfg.operations or []):
        db.session.flush()   # the remote calls are done: the account row may be written now
        after = _member_at(db.session.scalar(select(ProvisionedAccount).where(
            ProvisionedAccount.app_id == app_id, ProvisionedAccount.user_id == user_id)))
        if after != before:   # created, linked, reactivated, deactivated or deleted: its groups' members change
            for group in user.groups:
                enqueue_group(app_id, group.id)
    return result


def _member_at(account: ProvisionedAccount | None) -> str | None:
    """The remote id under which the account belongs in the app's groups (active accounts only)."""
    if account is None or account.state != "active":
        return None
    return account.remote_id


def _push(app: AppConfig, cfg: AppProvisioning, remote: Remote, user: User,
          account: ProvisionedAccount | None) -> SyncResult:
    ops = set(cfg.operations or [])
    resource = representation(app, cfg, user)
    digest = resource_hash(resource)
    if account is not None and account.state == "active" and account.remote_id and account.last_hash == digest:
        return SyncResult("unchanged", account.remote_id)
    if account is None:
        account = ProvisionedAccount(app_id=app.id, user_id=user.id, state="pending")
        db.session.add(account)
    operation, status = "update", None
    if account.remote_id:
        if "update" not in ops and account.state == "active":
            return SyncResult("skipped", account.remote_id)
        status, _ = remote.call("update", "PUT", f"/Users/{quote(account.remote_id, safe='')}", resource)
        if status == 404:   # deleted at the app meanwhile: create it again
            account.remote_id = None
    if not account.remote_id:
        if "create" not in ops:
            return SyncResult("skipped")
        user_name = str(resource.get("userName") or "")
        if not user_name:
            raise RemoteRefused("create", "userName has no value for this user (check the mapping)")
        existing = remote.find_by_username(user_name)
        found = None
        if existing is not None:
            found = str(existing.get("id") or "")
            _check_linkable(app, user, resource, existing, found)
        operation, status, account.remote_id = _link_or_create(remote, "", "Users", resource, found,
                                                               "the account found by userName")
    account.state, account.last_hash, account.last_synced_at = "active", digest, utcnow()
    record_provision_event(app.slug, user.username, Reason.PROVISIONED, operation, remote_status=status,
                           extra={"remote_id": account.remote_id})
    return SyncResult(operation, account.remote_id)


def _link_or_create(remote: Remote, prefix: str, collection: str, resource: dict[str, Any], found: str | None,
                    what: str) -> tuple[str, Any, str]:
    """(operation, HTTP status, remote id): PUT the resource over the one the app already has (`found`, a
    redelivered create or an account made at the app), else POST a new one."""
    if found is not None:
        status, _ = remote.call(prefix + "link", "PUT", f"/{collection}/{quote(found, safe='')}", resource)
        if status == 404:
            raise RemoteError(prefix + "link", f"{what} vanished", 404)
        return prefix + "link", status, found
    status, doc = remote.call(prefix + "create", "POST", f"/{collection}", resource, ok=(201, 200))
    remote_id = str((doc or {}).get("id") or "")
    if status == 404 or not remote_id:
        raise RemoteRefused(prefix + "create", f"the app answered HTTP {status} without an id", status)
    return prefix + "create", status, remote_id


def _check_linkable(app: AppConfig, user: User, resource: dict[str, Any], existing: dict[str, Any],
                    remote_id: str) -> None:
    """An account found by userName is this user's unless its externalId names someone else or another local
    user is already linked to it."""
    if not remote_id:
        raise RemoteRefused("link", "the account found by userName has no id")
    theirs, ours = existing.get("externalId"), resource.get("externalId")
    if theirs and ours and str(theirs) != str(ours):
        raise RemoteRefused("link", f"the app's account {remote_id} with this userName has externalId {theirs!r}, "
                            "not this user's", reason=Reason.REMOTE_CONFLICT)
    other = db.session.scalar(select(ProvisionedAccount.user_id).where(
        ProvisionedAccount.app_id == app.id, ProvisionedAccount.remote_id == remote_id,
        ProvisionedAccount.user_id != user.id))
    if other is not None:
        raise RemoteRefused("link", f"the app's account {remote_id} is linked to another user",
                            reason=Reason.REMOTE_CONFLICT)


def _deprovision(app: AppConfig, cfg: AppProvisioning, remote: Remote, username: str,
                 account: ProvisionedAccount) -> SyncResult:
    if account.state not in ("active", "pending") or not account.remote_id:
        return SyncResult("none", account.remote_id)
    ops = set(cfg.operations or [])
    mode = cfg.deprovision if cfg.deprovision in ops else None
    if mode is None:
        return SyncResult("skipped", account.remote_id)
    path = f"/Users/{quote(account.remote_id, safe='')}"
    if mode == "delete":
        status, _ = remote.call("delete", "DELETE", path)
        account.state, account.remote_id = "deleted", None
    else:
        status, _ = remote.call("deactivate", "PATCH", path, {
            "schemas": [PATCH_OP], "Operations": [{"op": "replace", "path": "active", "value": False}]})
        account.state = "inactive" if status != 404 else "deleted"
        if status == 404:
            account.remote_id = None
    account.last_hash, account.last_synced_at = None, utcnow()
    record_provision_event(app.slug, username, Reason.DEPROVISIONED, mode, remote_status=status,
                           extra={"already_gone": True} if status == 404 else None)
    return SyncResult(mode, account.remote_id)


def _sync_handler(payload: dict[str, Any]) -> None:
    # no write reaches the database before the remote calls are done: on SQLite a flush would take the
    # database's write lock for the length of the HTTP round trips and block the web server's writers
    with db.session.no_autoflush:
        sync_user(int(payload["app_id"]), int(payload["user_id"]))


def _record_failure(payload: dict[str, Any], error: str, dead: bool) -> None:
    app_id = int(payload.get("app_id") or 0)
    user_key: int | str = payload.get("user_id") or payload.get("username") or ""
    operation, status, reason = _LAST_FAILURE.pop((app_id, user_key), ("sync", None, Reason.PROVISIONING_FAILED))
    app = db.session.get(ConnectedApp, app_id)
    user = db.session.get(User, int(payload["user_id"])) if payload.get("user_id") else None
    username = user.username if user is not None else payload.get("username")
    record_provision_event(app.slug if app else str(app_id), username, reason, operation, remote_status=status,
                           error=error[:500], extra={"will_retry": not dead})


outbox.handler(KIND_USER, on_failure=_record_failure)(_sync_handler)


def _remove_handler(payload: dict[str, Any]) -> None:
    """A deleted user's account (the row is gone, so the payload carries the remote id)."""
    app_id, username, remote_id = int(payload["app_id"]), str(payload["username"]), str(payload["remote_id"])
    cfg, app = get_config(app_id), app_config_by_id(app_id)
    if cfg is None or app is None or not cfg.enabled:
        return
    relinked = db.session.scalar(select(ProvisionedAccount.id).where(
        ProvisionedAccount.app_id == app_id, ProvisionedAccount.remote_id == remote_id,
        ProvisionedAccount.state == "active"))
    if relinked is not None:   # a stale removal (retried long after): the account belongs to a user again
        return
    account = ProvisionedAccount(app_id=app_id, user_id=0, remote_id=remote_id, state="active")
    try:
        _deprovision(app, cfg, Remote(cfg), username, account)
    except (RemoteError, RemoteRefused) as exc:
        _LAST_FAILURE[(app_id, username)] = (exc.operation, exc.status, exc.reason)
        raise


outbox.handler(KIND_REMOVE, on_failure=_record_failure)(_remove_handler)


# ------------------------------------------------------------------ groups at one app

def _group_key(app_id: int, group_id: int) -> str:
    return f"prov:{app_id}:group:{group_id}"


def enqueue_group(app_id: int, group_id: int, *, delay: timedelta | None = None) -> None:
    """One pending job per group and app; without a delay, a pending one waiting to retry is made due now (a
    member's account was just created: no need to wait for the retry)."""
    key = _group_key(app_id, group_id)
    if outbox.enqueue_once(KIND_GROUP, key, {"app_id": app_id, "group_id": group_id}, delay=delay) is None \
            and delay is None:
        now = utcnow()
        for job in db.session.scalars(select(OutboxJob).where(OutboxJob.kind == KIND_GROUP, OutboxJob.key == key,
                                                              OutboxJob.state == "pending",
                                                              OutboxJob.run_after > now)):
            job.run_after = now


def group_based(app: AppConfig) -> bool:
    """The app's policy admits by group: admin-approved with at least one allowed group."""
    policy = app.settings.policy
    return policy.permitted == PermittedUsers.ADMIN_APPROVED and bool(policy.allow_groups)


def _active_member_ids(app_id: int, group: Group) -> list[str]:
    """The remote ids of the group's members that hold an active account at the app, sorted."""
    ids = {m.id for m in group.members}
    if not ids:
        return []
    return sorted({rid for rid in db.session.scalars(select(ProvisionedAccount.remote_id).where(
        ProvisionedAccount.app_id == app_id, ProvisionedAccount.user_id.in_(ids),
        ProvisionedAccount.state == "active", ProvisionedAccount.remote_id.is_not(None))) if rid})


def relevant_groups(app: AppConfig) -> list[Group]:
    """The IdP groups that matter to the app, pushed as SCIM Groups when the app's provisioning has "groups":
    the groups the access policy allows when it admits by group (pushed even while empty), otherwise every group
    with at least one member holding an active account at the app."""
    if group_based(app):
        names = sorted(app.settings.policy.allow_groups)
        return list(db.session.scalars(select(Group).where(Group.name.in_(names)).order_by(Group.id)))
    return list(db.session.scalars(
        select(Group).where(Group.members.any(User.id.in_(
            select(ProvisionedAccount.user_id).where(ProvisionedAccount.app_id == app.id,
                                                     ProvisionedAccount.state == "active",
                                                     ProvisionedAccount.remote_id.is_not(None)))))
        .order_by(Group.id)))


def _is_relevant(app: AppConfig, group: Group, member_ids: list[str]) -> bool:
    return group.name in app.settings.policy.allow_groups if group_based(app) else bool(member_ids)


def group_representation(group: Group, member_ids: list[str]) -> dict[str, Any]:
    return {"schemas": [GROUP_SCHEMA], "displayName": group.name, "externalId": str(group.id),
            "members": [{"value": rid} for rid in member_ids]}


def _members_waiting(app: AppConfig, group: Group) -> bool:
    """Does a permitted member still wait for the job that creates (or reactivates) their account?"""
    keys = [_user_key(app.id, m.id) for m in group.members if is_permitted(app, m)]
    if not keys:
        return False
    return db.session.scalar(select(OutboxJob.id).where(OutboxJob.kind == KIND_USER, OutboxJob.key.in_(keys),
                                                        OutboxJob.state.in_(outbox.UNFINISHED)).limit(1)) is not None


def sync_group(app_id: int, group_id: int) -> SyncResult:
    """Bring the app's SCIM Group for the IdP group to what it should be now: created (displayName = the group's
    name, externalId = its id) with the remote ids of the members holding an active account at the app,
    replaced (PUT) when that changed, deleted when the group no longer matters to the app. A member whose
    account is still being created is added by a later run of this job."""
    cfg, app = get_config(app_id), app_config_by_id(app_id)
    if cfg is None or app is None or not cfg.enabled or "groups" not in (cfg.operations or []):
        return SyncResult("skipped")
    group = db.session.get(Group, group_id)
    if group is None:
        return SyncResult("none")   # deleted: its row went with it, a provision.group_remove job does the rest
    row = db.session.scalar(select(ProvisionedGroup).where(ProvisionedGroup.app_id == app_id,
                                                           ProvisionedGroup.group_id == group_id).with_for_update())
    remote = Remote(cfg)
    member_ids = _active_member_ids(app_id, group)
    try:
        if not _is_relevant(app, group, member_ids):
            if row is None:
                return SyncResult("none")
            result = _delete_group(app, remote, group.name, row)
        else:
            result = _push_group(app, remote, group, member_ids, row)
    except (RemoteError, RemoteRefused) as exc:
        _LAST_FAILURE[(app_id, f"group:{group_id}")] = (exc.operation, exc.status, exc.reason)
        raise
    if _members_waiting(app, group):
        enqueue_group(app_id, group_id, delay=GROUP_RETRY)
    return result


def _push_group(app: AppConfig, remote: Remote, group: Group, member_ids: list[str],
                row: ProvisionedGroup | None) -> SyncResult:
    resource = group_representation(group, member_ids)
    digest = resource_hash(resource)
    if row is not None and row.remote_id and row.last_hash == digest:
        return SyncResult("unchanged", row.remote_id)
    if row is None:
        row = ProvisionedGroup(app_id=app.id, group_id=group.id)
        db.session.add(row)
    operation, status = "group_update", None
    if row.remote_id:
        status, _ = remote.call("group_update", "PUT", f"/Groups/{quote(row.remote_id, safe='')}", resource)
        if status == 404:   # deleted at the app meanwhile: create it again
            row.remote_id = None
    if not row.remote_id:
        existing = remote.find_group(group.name)
        found = None
        if existing is not None:   # a redelivered create, or a group the app already had under this name
            found = str(existing.get("id") or "")
            theirs = existing.get("externalId")
            if not found or (theirs and str(theirs) != str(group.id)):
                raise RemoteRefused("group_link", f"the app's group {found or '?'} named {group.name!r} has "
                                    f"externalId {theirs!r}, not this group's", reason=Reason.REMOTE_CONFLICT)
        operation, status, row.remote_id = _link_or_create(remote, "group_", "Groups", resource, found,
                                                           "the group found by displayName")
    row.last_hash, row.last_synced_at = digest, utcnow()
    record_provision_event(app.slug, None, Reason.PROVISIONED, operation, remote_status=status,
                           extra={"group": group.name, "remote_id": row.remote_id, "members": len(member_ids)})
    return SyncResult(operation, row.remote_id)


def _delete_group(app: AppConfig, remote: Remote, name: str, row: ProvisionedGroup) -> SyncResult:
    status = None
    if row.remote_id:
        status, _ = remote.call("group_delete", "DELETE", f"/Groups/{quote(row.remote_id, safe='')}")
    if row.id is not None:   # a removal job's row is transient (the stored one went with the group)
        db.session.delete(row)
    record_provision_event(app.slug, None, Reason.DEPROVISIONED, "group_delete", remote_status=status,
                           extra={"group": name, **({"already_gone": True} if status == 404 else {})})
    return SyncResult("group_delete")


def _group_handler(payload: dict[str, Any]) -> None:
    sync_group(int(payload["app_id"]), int(payload["group_id"]))


def _group_remove_handler(payload: dict[str, Any]) -> None:
    """A deleted group's SCIM Group (the row is gone, so the payload carries the remote id)."""
    app_id = int(payload["app_id"])
    cfg, app = get_config(app_id), app_config_by_id(app_id)
    if cfg is None or app is None or not cfg.enabled or "groups" not in (cfg.operations or []):
        return
    row = ProvisionedGroup(app_id=app_id, group_id=int(payload["group_id"]), remote_id=str(payload["remote_id"]))
    try:
        _delete_group(app, Remote(cfg), str(payload["name"]), row)
    except (RemoteError, RemoteRefused) as exc:
        _LAST_FAILURE[(app_id, f"group:{payload['group_id']}")] = (exc.operation, exc.status, exc.reason)
        raise


def _record_group_failure(payload: dict[str, Any], error: str, dead: bool) -> None:
    app_id = int(payload.get("app_id") or 0)
    key = f"group:{payload.get('group_id')}"
    operation, status, reason = _LAST_FAILURE.pop((app_id, key), ("group_sync", None, Reason.PROVISIONING_FAILED))
    app = db.session.get(ConnectedApp, app_id)
    group = db.session.get(Group, int(payload.get("group_id") or 0))
    name = group.name if group is not None else payload.get("name")
    record_provision_event(app.slug if app else str(app_id), None, reason, operation, remote_status=status,
                           error=error[:500], extra={"group": name, "will_retry": not dead})


outbox.handler(KIND_GROUP, on_failure=_record_group_failure)(_group_handler)
outbox.handler(KIND_GROUP_REMOVE, on_failure=_record_group_failure)(_group_remove_handler)


# ------------------------------------------------------------------ reconciliation

@dataclass(frozen=True, slots=True)
class PlanItem:
    username: str
    user_id: int
    action: str             # create | update | deactivate | delete
    why: str
    group_id: int | None = None   # a SCIM Group (username is then the group's name, user_id 0)


def _local_users() -> Iterator[User]:
    last = 0
    while True:
        batch = list(db.session.scalars(select(User).where(User.id > last).order_by(User.id).limit(500)))
        if not batch:
            return
        yield from batch
        last = batch[-1].id


def reconcile_plan(app_id: int) -> list[PlanItem]:
    """What reconciliation would change: permitted users compared with the provisioned accounts and with the
    remote (an account deleted or changed there, a user deactivated there). Reads only."""
    cfg, app = get_config(app_id), app_config_by_id(app_id)
    if cfg is None or app is None:
        raise ServiceError("provisioning is not configured for this app", field="slug")
    ops = set(cfg.operations or [])
    remote = {str(r.get("id")): r for r in Remote(cfg).users() if r.get("id")}
    accounts = {a.user_id: a for a in db.session.scalars(select(ProvisionedAccount)
                                                         .where(ProvisionedAccount.app_id == app_id))}
    plan: list[PlanItem] = []
    for user in _local_users():
        account = accounts.get(user.id)
        linked = account is not None and account.remote_id is not None and account.state in ("active", "pending")
        theirs = remote.get(account.remote_id) if account is not None and account.remote_id else None
        if is_permitted(app, user):
            if account is None or not account.remote_id or account.state == "deleted":
                if "create" in ops:
                    plan.append(PlanItem(user.username, user.id, "create", "permitted, no account at the app"))
                continue
            if theirs is None:
                if "create" in ops:
                    plan.append(PlanItem(user.username, user.id, "create", "the account is gone at the app"))
                continue
            if "update" not in ops and account.state == "active":
                continue
            resource = representation(app, cfg, user)
            if account.state != "active":
                plan.append(PlanItem(user.username, user.id, "update", "permitted again: reactivate"))
            elif not _covers(resource, theirs):
                plan.append(PlanItem(user.username, user.id, "update", "the app's account differs (drift)"))
            elif account.last_hash != resource_hash(resource):
                plan.append(PlanItem(user.username, user.id, "update", "changed since the last push"))
        elif linked and theirs is not None and theirs.get("active", True) is not False:
            mode = cfg.deprovision if cfg.deprovision in ops else None
            if mode is not None:
                plan.append(PlanItem(user.username, user.id, mode, "no longer permitted"))
    if "groups" in ops:
        plan.extend(_group_plan(app, cfg))
    return plan


def _group_plan(app: AppConfig, cfg: AppProvisioning) -> list[PlanItem]:
    """The SCIM Groups reconciliation would push or delete: each relevant group compared with its row and with
    the app's group (gone, renamed, members differing), the rows of groups no longer relevant."""
    remote = {str(r.get("id")): r for r in Remote(cfg).groups() if r.get("id")}
    rows = {r.group_id: r for r in db.session.scalars(select(ProvisionedGroup)
                                                      .where(ProvisionedGroup.app_id == app.id))}
    plan: list[PlanItem] = []
    for group in relevant_groups(app):
        row = rows.pop(group.id, None)
        theirs = remote.get(row.remote_id) if row is not None and row.remote_id else None
        if row is None or not row.remote_id:
            plan.append(PlanItem(group.name, 0, "create", "relevant, no group at the app", group.id))
            continue
        if theirs is None:
            plan.append(PlanItem(group.name, 0, "create", "the group is gone at the app", group.id))
            continue
        member_ids = _active_member_ids(app.id, group)
        have = sorted(str(m.get("value")) for m in theirs.get("members") or [] if isinstance(m, dict))
        if theirs.get("displayName") != group.name or have != member_ids:
            plan.append(PlanItem(group.name, 0, "update", "the app's group differs (drift)", group.id))
        elif row.last_hash != resource_hash(group_representation(group, member_ids)):
            plan.append(PlanItem(group.name, 0, "update", "changed since the last push", group.id))
    for row in rows.values():
        gone = db.session.get(Group, row.group_id)
        if gone is not None and row.remote_id:
            plan.append(PlanItem(gone.name, 0, "delete", "no longer relevant to the app", gone.id))
    return plan


def apply_plan(app_id: int, plan: list[PlanItem]) -> int:
    """Enqueue the sync jobs the plan calls for (drifted accounts pushed again whatever their hash)."""
    for item in plan:
        if item.group_id is not None:
            row = db.session.scalar(select(ProvisionedGroup).where(ProvisionedGroup.app_id == app_id,
                                                                   ProvisionedGroup.group_id == item.group_id))
            if row is not None:
                row.last_hash = None
                if item.why == "the group is gone at the app":
                    row.remote_id = None
            enqueue_group(app_id, item.group_id)
            continue
        account = db.session.scalar(select(ProvisionedAccount).where(ProvisionedAccount.app_id == app_id,
                                                                     ProvisionedAccount.user_id == item.user_id))
        if account is not None:
            account.last_hash = None
            if item.why == "the account is gone at the app":
                account.remote_id, account.state = None, "pending"
        outbox.enqueue_once(KIND_USER, _user_key(app_id, item.user_id), {"app_id": app_id, "user_id": item.user_id})
    return len(plan)


def _reconcile_handler(payload: dict[str, Any]) -> None:
    app_id = int(payload["app_id"])
    cfg = get_config(app_id)
    if cfg is None or not cfg.enabled:
        return
    try:
        apply_plan(app_id, reconcile_plan(app_id))
    except (RemoteError, RemoteRefused) as exc:
        _LAST_FAILURE[(app_id, "")] = (f"reconcile ({exc.operation})", exc.status, exc.reason)
        raise


outbox.handler(KIND_RECONCILE, on_failure=_record_failure)(_reconcile_handler)


def schedule_reconcile(app_id: int, *, delay: timedelta | None = None) -> None:
    outbox.enqueue_once(KIND_RECONCILE, f"prov:{app_id}:reconcile", {"app_id": app_id}, delay=delay)


@outbox.periodic
def schedule_reconciliations() -> None:
    """Each enabled app is reconciled every IDP_PROVISIONING_RECONCILE_MINUTES (the worker calls this about
    once a minute): a reconciliation is enqueued when none is unfinished and the last one finished longer ago."""
    every = timedelta(minutes=component("idp.settings").provisioning_reconcile_minutes)
    now = utcnow()
    for app_id in db.session.scalars(select(AppProvisioning.app_id).where(AppProvisioning.enabled.is_(True))):
        key = f"prov:{app_id}:reconcile"
        jobs = select(OutboxJob).where(OutboxJob.key == key, OutboxJob.kind == KIND_RECONCILE)
        if db.session.scalar(jobs.where(OutboxJob.state.in_(outbox.UNFINISHED)).limit(1)) is not None:
            continue
        last = db.session.scalar(select(func.max(OutboxJob.finished_at)).where(
            OutboxJob.key == key, OutboxJob.kind == KIND_RECONCILE))
        if last is None:
            outbox.enqueue(KIND_RECONCILE, key, {"app_id": app_id}, delay=every)
        elif last <= now - every:
            outbox.enqueue(KIND_RECONCILE, key, {"app_id": app_id})


# ------------------------------------------------------------------ import

@dataclass(slots=True)
class ImportReport:
    matches: list[tuple[str, str, list[str]]] = field(default_factory=list)     # (username, remote id, by)
    conflicts: list[tuple[str, str]] = field(default_factory=list)              # (username or remote id, why)
    already_linked: list[str] = field(default_factory=list)
    unmatched_local: list[str] = field(default_factory=list)                    # will be created
    unmatched_remote: list[str] = field(default_factory=list)                   # left alone (remote ids)

    def as_dict(self) -> dict[str, Any]:
        return {"matches": [{"username": u, "remote_id": r, "by": by} for u, r, by in self.matches],
                "conflicts": [{"subject": s, "why": w} for s, w in self.conflicts],
                "already_linked": self.already_linked, "to_create": self.unmatched_local,
                "remote_only": self.unmatched_remote}


def _emails(resource: dict[str, Any]) -> set[str]:
    return {str(e.get("value")).lower() for e in resource.get("emails") or [] if isinstance(e, dict) and e.get("value")}


def import_plan(app_id: int) -> ImportReport:
    """Match the app's existing accounts to the permitted users by userName, email and externalId, before
    anything is written: one remote account matched consistently is a match; keys that point to different
    accounts, or an account another user matched or is linked to, are conflicts."""
    cfg, app = get_config(app_id), app_config_by_id(app_id)
    if cfg is None or app is None:
        raise ServiceError("provisioning is not configured for this app", field="slug")
    remote_users = [r for r in Remote(cfg).users() if r.get("id")]
    by_name: dict[str, str] = {}
    by_email: dict[str, set[str]] = {}
    by_external: dict[str, str] = {}
    for r in remote_users:
        rid = str(r["id"])
        if r.get("userName"):
            by_name[str(r["userName"]).lower()] = rid
        for email in _emails(r):
            by_email.setdefault(email, set()).add(rid)
        if r.get("externalId"):
            by_external[str(r["externalId"])] = rid
    linked = {a.remote_id: a.user_id for a in db.session.scalars(
        select(ProvisionedAccount).where(ProvisionedAccount.app_id == app_id,
                                         ProvisionedAccount.remote_id.is_not(None)))}
    report = ImportReport()
    candidates: list[tuple[str, dict[str, list[str]]]] = []
    for user in _local_users():
        if not is_permitted(app, user):
            continue
        if user.id in linked.values():
            report.already_linked.append(user.username)
            continue
        resource = representation(app, cfg, user)
        hits: dict[str, list[str]] = {}
        if resource.get("userName") and str(resource["userName"]).lower() in by_name:
            hits.setdefault(by_name[str(resource["userName"]).lower()], []).append("userName")
        for email in _emails(resource):
            for rid in by_email.get(email, ()):
                hits.setdefault(rid, []).append("email")
        if resource.get("externalId") and str(resource["externalId"]) in by_external:
            hits.setdefault(by_external[str(resource["externalId"])], []).append("externalId")
        candidates.append((user.username, hits))
    wanted: dict[str, list[str]] = {}
    for username, hits in candidates:
        for rid in hits:
            wanted.setdefault(rid, []).append(username)
    for username, hits in candidates:
        if not hits:
            report.unmatched_local.append(username)
        elif len(hits) > 1:
            report.conflicts.append((username, "matches several accounts at the app: " + "; ".join(
                f"{rid} by {', '.join(by)}" for rid, by in sorted(hits.items()))))
        else:
            rid, by = next(iter(hits.items()))
            if rid in linked:
                report.conflicts.append((username, f"matches account {rid}, already linked to another user"))
            elif len(wanted[rid]) > 1:
                others = ", ".join(u for u in wanted[rid] if u != username)
                report.conflicts.append((username, f"matches account {rid}, which {others} matches too"))
            else:
                report.matches.append((username, rid, by))
    matched = {rid for _, rid, _ in report.matches} | set(linked)
    report.unmatched_remote = sorted(str(r["id"]) for r in remote_users if str(r["id"]) not in matched)
    return report


def apply_import(app_id: int, report: ImportReport) -> None:
    """Link the clean matches (conflicts are left for the admin, each an event); a reconciliation then pushes
    the mapped values to the linked accounts and creates the rest."""
    app = db.session.get(ConnectedApp, app_id)
    assert app is not None
    users = {u.username: u for u in db.session.scalars(select(User).where(
        User.username.in_([m[0] for m in report.matches])))}
    for username, rid, by in report.matches:
        user = users[username]
        account = db.session.scalar(select(ProvisionedAccount).where(ProvisionedAccount.app_id == app_id,
                                                                     ProvisionedAccount.user_id == user.id))
        if account is None:
            account = ProvisionedAccount(app_id=app_id, user_id=user.id)
            db.session.add(account)
        account.remote_id, account.state, account.last_hash = rid, "active", None
        account.last_synced_at = utcnow()
        record_provision_event(app.slug, username, Reason.PROVISIONED, "import",
                               extra={"remote_id": rid, "matched_by": by})
    for subject, why in report.conflicts:
        record_provision_event(app.slug, subject, Reason.REMOTE_CONFLICT, "import", error=why)
    audit.record("app.provisioning_import", "app", app.slug,
                 after={"linked": len(report.matches), "conflicts": len(report.conflicts)})
    schedule_reconcile(app_id)


# ------------------------------------------------------------------ lifecycle listeners

def _enabled_apps() -> list[int]:
    return list(db.session.scalars(select(AppProvisioning.app_id).where(AppProvisioning.enabled.is_(True))))


def _user_touched(user_id: int, **_: Any) -> None:
    app_ids = _enabled_apps()
    if not app_ids:
        return
    user = db.session.get(User, user_id)
    if user is None:
        return
    has_account = set(db.session.scalars(select(ProvisionedAccount.app_id).where(
        ProvisionedAccount.user_id == user_id, ProvisionedAccount.app_id.in_(app_ids))))
    for app_id in app_ids:
        app = app_config_by_id(app_id)
        if app is None:
            continue
        # a disabled user too: the event is told once per unit of work, and the same unit of work may enable the
        # user after this (the job reads the committed state and decides)
        if app_id in has_account or user.disabled or is_permitted(app, user):
            outbox.enqueue_once(KIND_USER, _user_key(app_id, user_id), {"app_id": app_id, "user_id": user_id})


def _group_apps() -> list[int]:
    """The enabled apps that push groups."""
    return [cfg.app_id for cfg in db.session.scalars(select(AppProvisioning).where(AppProvisioning.enabled.is_(True)))
            if "groups" in (cfg.operations or [])]


def _group_touched(group_id: int, **_: Any) -> None:
    if not _enabled_apps():
        return
    group = db.session.get(Group, group_id)
    for member in list(group.members) if group is not None else []:
        _user_touched(member.id)
    for app_id in _group_apps():   # the job decides whether the group matters to the app
        enqueue_group(app_id, group_id)


def _group_deleted(group_id: int, name: str, **_: Any) -> None:
    app_ids = _group_apps()
    if not app_ids:
        return
    for row in db.session.scalars(select(ProvisionedGroup).where(ProvisionedGroup.group_id == group_id,
                                                                 ProvisionedGroup.app_id.in_(app_ids),
                                                                 ProvisionedGroup.remote_id.is_not(None))):
        outbox.enqueue(KIND_GROUP_REMOVE, _group_key(row.app_id, group_id),
                       {"app_id": row.app_id, "group_id": group_id, "name": name, "remote_id": row.remote_id})


def _user_deleted(user_id: int, username: str, **_: Any) -> None:
    group_apps = _group_apps()
    user = db.session.get(User, user_id)
    for group in list(user.groups) if user is not None and group_apps else []:
        for app_id in group_apps:   # the user leaves the app's groups
            enqueue_group(app_id, group.id)
    for account in db.session.scalars(select(ProvisionedAccount).where(ProvisionedAccount.user_id == user_id,
                                                                       ProvisionedAccount.remote_id.is_not(None))):
        outbox.enqueue(KIND_REMOVE, _user_key(account.app_id, user_id),
                       {"app_id": account.app_id, "username": username, "remote_id": account.remote_id})


def _app_access_changed(app_id: int, **_: Any) -> None:
    cfg = get_config(app_id)
    if cfg is not None and cfg.enabled:
        schedule_reconcile(app_id)


lifecycle.listen(lifecycle.USER_CHANGED, _user_touched)
lifecycle.listen(lifecycle.USER_DEACTIVATED, _user_touched)
lifecycle.listen(lifecycle.USER_DELETED, _user_deleted)
lifecycle.listen(lifecycle.GROUP_CHANGED, _group_touched)
lifecycle.listen(lifecycle.GROUP_DELETED, _group_deleted)
lifecycle.listen(lifecycle.APP_ACCESS_CHANGED, _app_access_changed)

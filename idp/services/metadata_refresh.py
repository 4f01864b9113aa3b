"""Per-app metadata refresh: a metadata URL or an MDQ service, fetched on a schedule with conditional GET, verified
against the app's trust anchor, then applied, held for approval or refused (Shibboleth's
FileBackedHTTPMetadataProvider with SignatureValidation and RequiredValidUntil is the behaviour matched).

Outcomes: `unchanged` (304, or the same document), `applied` (audited as app.metadata with before/after and an
app.metadata_refresh row with the diff), `held` (the new document and its diff wait for an admin: refresh mode
approve, or a change that removes every ACS or every signing certificate, which is never applied unattended),
`refused` (fetch failed, unsigned / badly signed / SHA-1 when a trust anchor is set, validUntil past or too far,
unusable metadata). A refusal is audited (app.metadata_refresh_failed, published as the notice type
metadata.refresh_failed) once per run of failures with the same error; the app keeps its current metadata.
Services never commit: the CLI command, the console request or the worker's job owns the unit of work.
"""

from __future__ import annotations

import base64
import hashlib
import logging
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, urlsplit

from sqlalchemy import or_, select

from .. import audit
from ..certs.x509 import cert_info
from ..extensions import component, db
from ..models import ConnectedApp, MetadataSource, utcnow
from ..saml.metadata_trust import (
    TrustError,
    check_valid_until,
    load_trust_anchor,
    root_times,
    verify_metadata_signature,
)
from ..saml.sp_metadata import MetadataError, SpMetadata
from . import ServiceError, outbox
from .app_diff import metadata_diff
from .apps import (
    get_app,
    invalidate_cache,
    parse_app_metadata,
    plain_http_endpoint_warnings,
    update_metadata,
)
from .apps.oidc_settings import format_duration

log = logging.getLogger("idp.metadata_refresh")

MODES = ("auto", "approve", "off")
MIN_INTERVAL_S = 5 * 60             # never fetch an app's metadata more often (cacheDuration is bounded by it)
MAX_INTERVAL_CEILING_S = 30 * 86400
VALID_UNTIL_FACTOR = 0.75           # refresh when three quarters of the time to validUntil has passed
JOB_KIND = "metadata.refresh"
_SETTING_KEYS = ("url", "mdq", "refresh", "trust_anchor_sha256", "max_interval")   # what app.metadata_source audits
MDQ_ACCEPT = "application/samlmetadata+xml"


@dataclass(slots=True)
class RefreshResult:
    outcome: str                  # unchanged | applied | held | refused
    message: str
    reason: str | None = None     # machine code of a refusal or a hold
    diff: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)   # about the metadata applied (plain-http endpoints)


# ------------------------------------------------------------------ configuration

def source_of(app: ConnectedApp) -> MetadataSource | None:
    return db.session.get(MetadataSource, app.id)


def _settings() -> Any:
    return component("idp.settings")


def validate_url(url: str, what: str = "metadata URL") -> str:
    url = url.strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 2048:
        raise ServiceError(f"the {what} must be an absolute http:// or https:// URL (at most 2048 characters)",
                           field="metadata_url")
    if parts.username or parts.password:
        raise ServiceError(f"the {what} must not contain credentials", field="metadata_url")
    if any(ord(c) < 33 or ord(c) == 127 for c in url):
        raise ServiceError(f"the {what} must not contain spaces or control characters", field="metadata_url")
    return url


def anchor_fingerprint(pem: str | None) -> str | None:
    return cert_info(pem).fingerprint if pem else None


def configure(app: ConnectedApp, *, url: str | None | object = None, mdq: str | None | object = None,
              mode: str | None = None, trust_anchor_pem: str | None | object = None,
              max_interval_s: int | None = None) -> MetadataSource:
    """Set where the app's metadata comes from and how it is refreshed; None keeps a value, CLEAR (the apps
    package's) removes it. A URL and an MDQ service exclude each other. Audited as app.metadata_source."""
    from .apps import CLEAR

    if not app.has_saml:
        raise ServiceError("this app has no SAML settings: add its metadata first (idp apps set SLUG --metadata)",
                           field="metadata_url")
    if url is not None and mdq is not None and url is not CLEAR and mdq is not CLEAR:
        raise ServiceError("give a metadata URL or an MDQ service, not both", field="metadata_url")
    if app.source == "feed" and ((url is not None and url is not CLEAR) or (mdq is not None and mdq is not CLEAR)):
        raise ServiceError(f"app {app.slug} follows a federation feed ({app.source_ref}): its metadata comes from "
                           "the feed (idp feeds remove keeps its apps as manual apps)", field="metadata_url")
    src = source_of(app)
    created = src is None
    if src is None:
        src = MetadataSource(app_id=app.id, refresh_mode="auto", failures=0,
                             max_interval_s=_settings().metadata_refresh_max_interval_s)
    before = describe(src) if not created else None
    if url is not None:
        src.url = None if url is CLEAR else validate_url(str(url))
        if src.url is not None:
            src.mdq_base = None
    if mdq is not None:
        src.mdq_base = None if mdq is CLEAR else validate_url(str(mdq), "MDQ base URL").rstrip("/")
        if src.mdq_base is not None:
            src.url = None
    if mode is not None:
        if mode not in MODES:
            raise ServiceError(f"refresh must be one of {', '.join(MODES)}", field="refresh")
        src.refresh_mode = mode
    anchored = bool(src.trust_anchor_pem)
    if trust_anchor_pem is not None:
        if trust_anchor_pem is CLEAR:
            src.trust_anchor_pem = None
        else:
            try:
                load_trust_anchor(str(trust_anchor_pem))
            except ValueError as exc:
                raise ServiceError(str(exc), field="trust_anchor") from None
            src.trust_anchor_pem = str(trust_anchor_pem).strip() + "\n"
    if max_interval_s is not None:
        ceiling = _settings().metadata_refresh_max_interval_s
        if not MIN_INTERVAL_S <= max_interval_s <= ceiling:
            raise ServiceError(f"the maximum interval must be between {format_duration(MIN_INTERVAL_S)} and "
                               f"{format_duration(ceiling)} (IDP_METADATA_REFRESH_MAX_INTERVAL)",
                               field="max_interval")
        src.max_interval_s = max_interval_s
    if created:
        if src.url is None and src.mdq_base is None:
            raise ServiceError("give the app a metadata URL (--metadata-url) or an MDQ service (--mdq) first",
                               field="metadata_url")
        src.baseline_sp = app.sp   # the metadata in place when an admin set the source: approved
        db.session.add(src)
    # the new source (or anchor, or mode) is checked at the next run: due now; the validators of another
    # document no longer apply
    if url is not None or mdq is not None or trust_anchor_pem is not None:
        src.etag = src.last_modified = None
    if anchored != bool(src.trust_anchor_pem):
        # the SSO / SLO flows enforce validUntil only for anchored apps (AppConfig.metadata_expires_at)
        app.version += 1
        invalidate_cache()
    src.next_due_at = utcnow() if src.refresh_mode != "off" and (src.url or src.mdq_base) else None
    after = {k: v for k, v in describe(src).items() if k in _SETTING_KEYS}
    changed = {k: after[k] for k in after if before is None or before.get(k) != after[k]}
    if changed:
        audit.record("app.metadata_source", "app", app.slug,
                     before={k: before.get(k) for k in changed} if before else None, after=changed)
    db.session.flush()
    return src


def describe(src: MetadataSource | None) -> dict[str, Any]:
    """What `idp apps show`, the console and the audit trail say about an app's metadata source."""
    if src is None:
        return {}

    def iso(v: datetime | None) -> str | None:
        return v.isoformat().replace("+00:00", "Z") if v else None

    return {"url": src.url, "mdq": src.mdq_base, "request_url": request_url_of(src, None),
            "refresh": src.refresh_mode, "trust_anchor_sha256": anchor_fingerprint(src.trust_anchor_pem),
            "max_interval": format_duration(src.max_interval_s), "last_fetched": iso(src.last_fetched_at),
            "next_due": iso(src.next_due_at), "last_outcome": src.last_outcome, "last_error": src.last_error,
            "held": bool(src.held_xml), "held_sha256": held_sha256(src), "held_reason": src.held_reason,
            "held_at": iso(src.held_at),
            "held_diff": src.held_diff or [],
            "warning": PLAIN_HTTP_HOLD if plain_http_unanchored(src) else None}


def mdq_request_url(base: str, entity_id: str) -> str:
    """The MDQ request for one entity (draft-young-md-query §3.1, §3.2.1): BASE/entities/ + the
    percent-encoded entityID."""
    return f"{base.rstrip('/')}/entities/{quote(entity_id, safe='')}"


def request_url_of(src: MetadataSource, app: ConnectedApp | None) -> str | None:
    if src.url:
        return src.url
    if src.mdq_base:
        if app is None:
            app = db.session.get(ConnectedApp, src.app_id)
        return mdq_request_url(src.mdq_base, app.entity_id or "") if app is not None else None
    return None


# ------------------------------------------------------------------ refresh

def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", errors="surrogatepass")).hexdigest()


_B64 = "base64:"   # held_xml holds the fetched bytes as they came (a signed ISO-8859-1 document must verify again)


def held_bytes(src: MetadataSource) -> bytes | None:
    """The held document's bytes exactly as fetched (older rows hold UTF-8 text)."""
    if not src.held_xml:
        return None
    if src.held_xml.startswith(_B64):
        return base64.b64decode(src.held_xml[len(_B64):])
    return src.held_xml.encode("utf-8")


def held_sha256(src: MetadataSource) -> str | None:
    """SHA-256 of the held document's bytes: what an approval names (console form, `--sha256`)."""
    raw = held_bytes(src)
    return hashlib.sha256(raw).hexdigest() if raw is not None else None


def _held_text_sha256(src: MetadataSource) -> str | None:
    raw = held_bytes(src)
    return _sha256(raw.decode("utf-8", errors="replace")) if raw is not None else None


def verify_document(src: MetadataSource, app: ConnectedApp, xml: bytes, now: datetime) -> SpMetadata:
    """Trust anchor signature, validUntil rules, then the metadata rules every app has; TrustError or
    ServiceError when refused."""
    if src.trust_anchor_pem:
        verify_metadata_signature(xml, src.trust_anchor_pem)
    try:
        times = root_times(xml)
    except MetadataError as exc:
        raise ServiceError(str(exc), field="metadata") from None
    max_validity = timedelta(days=_settings().metadata_max_validity_days) if src.trust_anchor_pem else None
    check_valid_until(times.valid_until, now, max_validity=max_validity)
    sp = parse_app_metadata(xml, app.entity_id)
    if sp.valid_until is not None and sp.valid_until <= now:   # a validUntil inside the document
        raise TrustError("valid_until_past", f"the SP's validUntil ({sp.valid_until:%Y-%m-%d %H:%M} UTC) has passed")
    return sp


def stored_expiry(app: ConnectedApp) -> datetime | None:
    """validUntil of the metadata the app uses now (the earliest of the root's and the SP's)."""
    return SpMetadata.from_dict(app.sp).valid_until if app.sp else None


def _expired_message(app: ConnectedApp, src: MetadataSource, until: datetime) -> str:
    consequence = ("SAML sign-in and logout with this app are refused until a fresh signed document is applied"
                   if src.trust_anchor_pem else "a fresh document is needed")
    return f"the app's metadata expired at its validUntil ({until:%Y-%m-%d %H:%M} UTC): {consequence}"


def next_due(src: MetadataSource, xml: bytes | None, now: datetime) -> datetime:
    """cacheDuration and 3/4 of the time to validUntil of the document, bounded by MIN_INTERVAL_S and the app's
    maximum interval."""
    delay = timedelta(seconds=src.max_interval_s)
    if xml is not None:
        try:
            times = root_times(xml)
        except MetadataError:
            times = None
        if times is not None:
            if times.cache_duration is not None:
                delay = min(delay, times.cache_duration)
            if times.valid_until is not None and times.valid_until > now:
                delay = min(delay, (times.valid_until - now) * VALID_UNTIL_FACTOR)
    return now + max(delay, timedelta(seconds=MIN_INTERVAL_S))


def _retry_at(src: MetadataSource, now: datetime, expires: datetime | None = None) -> datetime:
    """After a failure: the minimum interval, doubled per failure in a row, at most the maximum interval; and
    not after the current metadata's validUntil (its expiry is then noticed and reported on time)."""
    delay = min(src.max_interval_s, MIN_INTERVAL_S * 2 ** min(src.failures - 1, 20))
    at = now + timedelta(seconds=max(MIN_INTERVAL_S, delay))
    return min(at, expires) if expires is not None and expires > now else at


def _diff_dicts(old: SpMetadata, new: SpMetadata) -> list[dict[str, Any]]:
    return [{k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(item).items()}
            for item in metadata_diff(old, new)]


def dangerous_change(old: SpMetadata, new: SpMetadata, baseline: SpMetadata | None = None) -> str | None:
    """Why a change must never be applied unattended: it removes every ACS, or every signing certificate, the app
    has now or had in its admin-approved baseline (so two unattended steps, one adding an endpoint or key and one
    dropping the old ones, are held at the second)."""
    for ref, what in ((old, ""), (baseline, " approved by an admin")):
        if ref is None:
            continue
        if ref.acs and not {e.location for e in ref.acs} & {e.location for e in new.acs}:
            return f"the change removes every Assertion Consumer Service{what}"
        if ref.signing_certs and not set(ref.signing_certs) & set(new.signing_certs):
            return f"the change removes every signing certificate{what}"
    return None


def _host(location: str) -> str:
    parts = urlsplit(location)
    return f"{parts.scheme.lower()}://{(parts.hostname or '').lower()}:{parts.port or ''}"


def unauthenticated_additions(old: SpMetadata, new: SpMetadata) -> str | None:
    """Without a trust anchor the document is not authenticated: a change that adds an ACS host or a signing
    certificate is never applied unattended."""
    hosts = sorted({_host(e.location) for e in new.acs} - {_host(e.location) for e in old.acs})
    if hosts:
        return (f"the change adds an Assertion Consumer Service host ({hosts[0].rstrip(':')}) and the metadata is "
                "not signed by a trust anchor")
    if set(new.signing_certs) - set(old.signing_certs):
        return "the change adds a signing certificate and the metadata is not signed by a trust anchor"
    return None


PLAIN_HTTP_HOLD = ("the metadata comes over plain http:// without a trust anchor: every change is held for an "
                   "admin (set a trust anchor, or an https:// URL)")


def plain_http_unanchored(src: MetadataSource, app: ConnectedApp | None = None) -> bool:
    url = request_url_of(src, app) or ""
    return url.lower().startswith("http://") and not src.trust_anchor_pem


def baseline_of(src: MetadataSource, app: ConnectedApp) -> SpMetadata:
    return SpMetadata.from_dict(src.baseline_sp if src.baseline_sp is not None else (app.sp or {}))


def refresh(app: ConnectedApp, *, now: datetime | None = None) -> RefreshResult:
    """Fetch the app's metadata now and apply, hold or refuse it (see the module docstring). An admin's yes is
    approve_held: it applies only the held document, the one whose diff was shown."""
    now = now or utcnow()
    # the row locked (PostgreSQL) and read afresh: a worker's job, a cron `--due` run and an admin's "Refresh
    # now" for one app are serialised, each deciding on what the one before it wrote
    src = db.session.get(MetadataSource, app.id, with_for_update=True, populate_existing=True)
    if src is None or not (src.url or src.mdq_base):
        raise ServiceError(f"app {app.slug} has no metadata URL or MDQ service (idp apps set {app.slug} "
                           "--metadata-url URL)", field="metadata_url")
    url = request_url_of(src, app) or ""
    s = _settings()
    from .fetch import fetch_metadata_conditional

    # the validators stand for the last document fetched: when neither the app's metadata (replaced by hand
    # since?) nor a held change is that document, a 304 would hide a difference, so the fetch is unconditional
    expires = stored_expiry(app)
    current = _sha256(app.metadata_xml or "")
    conditional = src.fetched_sha256 is not None and src.fetched_sha256 in (current, _held_text_sha256(src))
    try:
        answer = fetch_metadata_conditional(
            url, etag=src.etag if conditional else None, last_modified=src.last_modified if conditional else None,
            allow_private=s.metadata_fetch_allow_private, timeout=s.metadata_fetch_timeout_s,
            accept=MDQ_ACCEPT if src.mdq_base else "application/samlmetadata+xml, application/xml, text/xml")
    except ServiceError as exc:
        if expires is not None and expires <= now:   # the source is down (or blocked) and the metadata expired
            return _refused(app, src, "metadata_expired", f"{_expired_message(app, src, expires)}; the refresh "
                                                          f"failed: {exc}", now)
        return _refused(app, src, "fetch_failed", str(exc), now)
    src.last_fetched_at = now
    if answer.not_modified:
        if expires is not None and expires <= now:   # a 304 does not make the stored document fresh again
            return _refused(app, src, "metadata_expired", f"not modified (HTTP 304): "
                                                          f"{_expired_message(app, src, expires)}", now)
        if src.held_xml:   # the source still serves the held change: it keeps waiting for an admin
            _ok(src, "held", now, None)
            return RefreshResult("held", f"not modified (HTTP 304); the held change still waits for approval: "
                                         f"{src.held_reason}", reason="held", diff=list(src.held_diff or []))
        return _unchanged(src, "not modified (HTTP 304)", now, None if not app.metadata_xml else
                          app.metadata_xml.encode("utf-8"))
    xml = answer.body or b""
    try:
        new_sp = verify_document(src, app, xml, now)
    except TrustError as exc:
        return _refused(app, src, exc.code, str(exc), now)
    except ServiceError as exc:
        return _refused(app, src, "metadata_invalid", str(exc), now)
    text = xml.decode("utf-8", errors="replace")
    src.etag, src.last_modified, src.fetched_sha256 = answer.etag, answer.last_modified, _sha256(text)
    if text == app.metadata_xml:
        src.held_xml = src.held_diff = src.held_reason = src.held_at = None
        return _unchanged(src, "the document is unchanged", now, xml)
    old_sp = SpMetadata.from_dict(app.sp or {})
    diff = _diff_dicts(old_sp, new_sp)
    if src.rejected_sha256 == _sha256(text):
        return _unchanged(src, "the fetched document is the one an admin rejected", now, xml)
    danger = dangerous_change(old_sp, new_sp, baseline_of(src, app))
    if danger is None and not src.trust_anchor_pem:
        danger = PLAIN_HTTP_HOLD if plain_http_unanchored(src, app) else unauthenticated_additions(old_sp, new_sp)
    if src.refresh_mode == "approve" or danger:
        return _hold(app, src, diff, danger or "refresh mode approve: an admin approves each change", now, xml)
    return _apply(app, src, xml, diff, now, url)


def _ok(src: MetadataSource, outcome: str, now: datetime, xml: bytes | None) -> None:
    src.last_outcome, src.last_error, src.failures = outcome, None, 0
    src.next_due_at = next_due(src, xml, now) if src.refresh_mode != "off" else None


def _unchanged(src: MetadataSource, message: str, now: datetime, xml: bytes | None) -> RefreshResult:
    _ok(src, "unchanged", now, xml)
    return RefreshResult("unchanged", message)


def _apply(app: ConnectedApp, src: MetadataSource, xml: bytes, diff: list[dict[str, Any]], now: datetime,
           url: str, *, approved: bool = False) -> RefreshResult:
    update_metadata(app, xml, source_ref=url, approved=approved)   # approved: the new baseline
    # the warnings an admin gets when uploading by hand, recorded for a change nobody watched being applied
    warnings = plain_http_endpoint_warnings(app.sp)
    audit.record("app.metadata_refresh", "app", app.slug,
                 after={"outcome": "applied", "url": url, "diff": diff, **({"warnings": warnings} if warnings else {})})
    src.held_xml = src.held_diff = src.held_reason = src.held_at = None
    _ok(src, "applied", now, xml)
    for warning in warnings:
        log.warning("metadata refresh of app %s applied: %s", app.slug, warning)
    return RefreshResult("applied", "the new metadata was applied", diff=diff, warnings=warnings)


def _hold(app: ConnectedApp, src: MetadataSource, diff: list[dict[str, Any]], why: str, now: datetime,
          xml: bytes) -> RefreshResult:
    if held_bytes(src) != xml:   # another document replaces the held one: an approval names the one it saw
        src.held_xml = _B64 + base64.b64encode(xml).decode("ascii")
        src.held_diff, src.held_reason, src.held_at = diff, why[:300], now
        audit.record("app.metadata_held", "app", app.slug,
                     after={"reason": why, "diff": diff, "sha256": hashlib.sha256(xml).hexdigest()})
    _ok(src, "held", now, xml)
    return RefreshResult("held", f"the change is held for approval: {why}", reason="held", diff=diff)


def _apply_held(app: ConnectedApp, src: MetadataSource, now: datetime) -> RefreshResult:
    if not src.held_xml:
        raise ServiceError(f"app {app.slug} has no held metadata change", field="held")
    xml = held_bytes(src) or b""
    try:   # checked again: validUntil may have passed since it was held, the anchor may have changed
        new_sp = verify_document(src, app, xml, now)
    except (TrustError, ServiceError) as exc:
        src.held_xml = src.held_diff = src.held_reason = src.held_at = None
        return _refused(app, src, getattr(exc, "code", "metadata_invalid"), f"the held document: {exc}", now)
    # against what the app has now (its metadata may have been replaced by hand since the change was held)
    diff = _diff_dicts(SpMetadata.from_dict(app.sp or {}), new_sp)
    return _apply(app, src, xml, diff, now, request_url_of(src, app) or "", approved=True)


def _locked_held(app: ConnectedApp, sha256: str | None) -> MetadataSource:
    """The source row locked (PostgreSQL; a refresh holding another document waits or is waited for) and read
    afresh; its held document must be the one the admin reviewed when `sha256` is given."""
    src = db.session.get(MetadataSource, app.id, with_for_update=True, populate_existing=True)
    if src is None or not src.held_xml:
        raise ServiceError(f"app {app.slug} has no held metadata change", field="held")
    if sha256 is not None and sha256.strip().lower() != held_sha256(src):
        raise ServiceError("the held change is not the one reviewed (another document was fetched since): review "
                           "the change shown now and approve it again", field="held")
    return src


def approve_held(app: ConnectedApp, *, sha256: str | None, now: datetime | None = None) -> RefreshResult:
    """An admin approves the held change they reviewed (console Approve, `idp apps refresh SLUG --yes`):
    `sha256` names the document reviewed (None: whatever is held, for `--yes` without `--sha256`)."""
    src = _locked_held(app, sha256)
    return _apply_held(app, src, now or utcnow())


def reject_held(app: ConnectedApp, *, sha256: str | None = None) -> None:
    """An admin rejects the held change: it is dropped and the same document is not held again."""
    src = _locked_held(app, sha256)
    audit.record("app.metadata_rejected", "app", app.slug, after={"diff": src.held_diff or []})
    src.rejected_sha256 = _held_text_sha256(src)
    src.held_xml = src.held_diff = src.held_reason = src.held_at = None


def _refused(app: ConnectedApp, src: MetadataSource, code: str, message: str, now: datetime) -> RefreshResult:
    message = message[:2000]
    first = src.last_outcome != "refused" or src.last_error != message
    src.last_outcome, src.last_error = "refused", message
    src.failures = (src.failures or 0) + 1
    src.next_due_at = _retry_at(src, now, stored_expiry(app)) if src.refresh_mode != "off" else None
    if first:   # once per run of the same failure: admins are told, the audit trail is not flooded
        audit.record("app.metadata_refresh_failed", "app", app.slug,
                     after={"reason": code, "error": message, "url": request_url_of(src, app)})
    log.warning("metadata refresh of app %s refused (%s): %s", app.slug, code, message)
    return RefreshResult("refused", message, reason=code)


# ------------------------------------------------------------------ the schedule

def due_apps(now: datetime | None = None) -> list[ConnectedApp]:
    now = now or utcnow()
    q = (select(ConnectedApp).join(MetadataSource, MetadataSource.app_id == ConnectedApp.id)
         .where(MetadataSource.refresh_mode != "off", MetadataSource.next_due_at <= now,
                or_(MetadataSource.url.is_not(None), MetadataSource.mdq_base.is_not(None)))
         .order_by(MetadataSource.next_due_at))
    return list(db.session.scalars(q))


def refresh_by_id(app_id: int) -> RefreshResult | None:
    app = db.session.get(ConnectedApp, app_id)
    if app is None or source_of(app) is None:
        return None
    return refresh(app)


def _refresh_job(payload: dict[str, Any]) -> None:
    """The worker's job: refresh one app when it is still due (a refusal is an outcome, not a job failure)."""
    app = db.session.get(ConnectedApp, int(payload["app_id"]))
    src = source_of(app) if app is not None else None
    if app is None or src is None or src.refresh_mode == "off" or src.next_due_at is None \
            or src.next_due_at > utcnow():
        return
    refresh(app)


outbox.handler(JOB_KIND)(_refresh_job)


@outbox.periodic
def schedule_refreshes() -> None:
    """The worker calls this about once a minute: a refresh job per due app (one pending job per app)."""
    for app in due_apps():
        outbox.enqueue_once(JOB_KIND, f"metadata:{app.id}", {"app_id": app.id})


def get(slug: str) -> tuple[ConnectedApp, MetadataSource | None]:
    app = get_app(slug)
    return app, source_of(app)

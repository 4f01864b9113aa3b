"""Connected apps as stored: register from SP metadata, replace the metadata, change settings, remove, look up.

Each change is validated first (nothing is written on refusal), audited, and drops the SSO read cache.
"""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from ... import audit
from ...attributes.release import parse_source, stored_source
from ...extensions import component, db
from ...models import ConnectedApp, MetadataSource
from ...saml.constants import SignMode
from ...saml.sp_metadata import SpMetadata
from .. import ServiceError, lifecycle
from ..field_schema import current_schema
from .cache import invalidate_cache
from .settings import CLEAR, AppSettings, default_settings
from .validation import (
    RESERVED_SLUGS,
    check_issuer_free,
    check_not_an_idp_entity_id,
    parse_metadata_or_refuse,
    validate_name,
    validate_settings,
    validate_slug,
)


def slugify(text: str) -> str:
    text = re.sub(r"^[a-z]+://", "", text.lower())
    slug = re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:60].strip("-")
    return slug or "app"


def _unique_slug(base: str) -> str:
    if base in RESERVED_SLUGS:
        base = f"{base}-app"
    slug, n = base, 2
    while db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.slug == slug)) is not None:
        slug = f"{base[:58]}-{n}"
        n += 1
    return slug


def idp_entity_id() -> str:
    """The IdP's own entity ID (IDP_BASE_URL/saml/metadata)."""
    return str(component("idp.settings").entity_id)


def parse_app_metadata(xml: bytes, entity_id: str | None) -> SpMetadata:
    """The SP's metadata as an app may have it: parsed (parse_metadata_or_refuse), and refused when its entityID
    is the IdP's own or an app's per-app issuer (someone pasted the IdP's metadata, or an SP claims the IdP's
    name). Nothing is written or audited on refusal."""
    sp = parse_metadata_or_refuse(xml, entity_id)
    check_not_an_idp_entity_id(sp.entity_id, idp_entity_id())
    return sp


def register_app(xml: bytes, *, name: str | None = None, slug: str | None = None, entity_id: str | None = None,
                 source: str = "cli", source_ref: str | None = None) -> ConnectedApp:
    """Register a connected app from SP metadata; refuses with ServiceError and stores nothing on any problem."""
    if name is not None:
        name = validate_name(name)
    sp = parse_app_metadata(xml, entity_id)
    if db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.entity_id == sp.entity_id)) is not None:
        raise ServiceError(f"an app with entityID {sp.entity_id!r} is already registered", field="entity_id")
    if slug is not None:
        validate_slug(slug)
        if db.session.scalar(select(ConnectedApp.id).where(ConnectedApp.slug == slug)) is not None:
            raise ServiceError(f"slug {slug!r} is already taken", field="slug")
    else:
        slug = _unique_slug(slugify(name or sp.display_name or sp.entity_id))
    app = ConnectedApp(
        slug=slug,
        name=(name or sp.display_name or sp.entity_id)[:200],
        entity_id=sp.entity_id,
        enabled=True,
        metadata_xml=xml.decode("utf-8", errors="replace"),
        sp=sp.to_dict(),
        settings=default_settings(sp, current_schema()).to_dict(),
        source=source,
        source_ref=source_ref,
        version=1,
    )
    db.session.add(app)
    audit.record("app.add", "app", slug, after={"entity_id": sp.entity_id, "name": app.name, "source": source,
                                               "source_ref": source_ref})
    try:
        db.session.flush()
    except IntegrityError:  # registered at the same time elsewhere; the caller's unit of work rolls back
        raise ServiceError("an app with that entityID or slug was registered at the same time") from None
    return app


def update_metadata(app: ConnectedApp, xml: bytes, *, source_ref: str | None = None,
                    entity_id: str | None = None, approved: bool = True) -> bool:
    """Replace an app's metadata (same entityID); returns False when nothing changed.

    An app without SAML settings (OIDC only) gets them here: the document's SP (or `entity_id` from an
    aggregate) becomes the app's, if no other app has that entityID; the NameID and attribute choices its
    metadata suggests are taken, the access policy is kept."""
    if not app.has_saml:
        return _add_saml(app, xml, source_ref=source_ref, entity_id=entity_id)
    sp = parse_app_metadata(xml, app.entity_id)
    text = xml.decode("utf-8", errors="replace")
    if text == app.metadata_xml:
        return False
    before = metadata_summary(app.sp)
    app.metadata_xml = text
    app.sp = sp.to_dict()
    audit.record("app.metadata", "app", app.slug, before=before, after=metadata_summary(app.sp))
    if source_ref:
        app.source_ref = source_ref
    if approved:   # an admin's upload (not an unattended refresh): the baseline of the refresh's safety rule
        src = db.session.get(MetadataSource, app.id)
        if src is not None:
            src.baseline_sp = app.sp
    app.version += 1
    invalidate_cache()
    return True


def check_entity_id_free(entity_id: str) -> None:
    """Refuse an entityID another app already has (one SAML SP per entityID)."""
    taken = db.session.scalar(select(ConnectedApp.slug).where(ConnectedApp.entity_id == entity_id))
    if taken is not None:
        raise ServiceError(f"app {taken!r} already has the entityID {entity_id!r}", field="entity_id")


def _add_saml(app: ConnectedApp, xml: bytes, *, source_ref: str | None, entity_id: str | None) -> bool:
    sp = parse_app_metadata(xml, entity_id)
    check_entity_id_free(sp.entity_id)
    derived = default_settings(sp, current_schema())
    current = AppSettings.from_dict(app.settings)
    if not current.attributes:   # an app that releases nothing yet starts from what the metadata asks for
        current = replace(current, attributes=derived.attributes, attribute_formats=derived.attribute_formats,
                          friendly_names=derived.friendly_names)
    app.settings = replace(current, nameid_format=derived.nameid_format,
                           nameid_field=derived.nameid_field).to_dict()
    app.entity_id = sp.entity_id
    app.metadata_xml = xml.decode("utf-8", errors="replace")
    app.sp = sp.to_dict()
    audit.record("app.metadata", "app", app.slug, before=None,
                 after={"entity_id": sp.entity_id, **metadata_summary(app.sp)})
    if source_ref:
        app.source_ref = source_ref
    app.version += 1
    invalidate_cache()
    try:
        db.session.flush()
    except IntegrityError:  # the same entityID registered at the same time elsewhere
        raise ServiceError("an app with that entityID was registered at the same time", field="entity_id") from None
    return True


def get_app(slug: str) -> ConnectedApp:
    app = db.session.scalar(select(ConnectedApp).where(ConnectedApp.slug == slug))
    if app is None:
        raise ServiceError(f"no app with slug {slug!r}", field="slug")
    return app


def list_apps() -> list[ConnectedApp]:
    return list(db.session.scalars(select(ConnectedApp).order_by(ConnectedApp.slug)))


def metadata_summary(sp: dict[str, Any] | None) -> dict[str, Any]:
    if sp is None:
        return {}
    return {"acs": [a["location"] for a in sp.get("acs", [])], "slo": [e["location"] for e in sp.get("slo", [])],
            "signing_certs": len(sp.get("signing_certs", [])), "encryption_certs": len(sp.get("encryption_certs", [])),
            "nameid_formats": sp.get("nameid_formats", [])}


def remove_app(slug: str) -> None:
    app = get_app(slug)
    audit.record("app.remove", "app", slug, before={"entity_id": app.entity_id, "name": app.name,
                                                    "client_id": app.oidc.client_id if app.oidc else None})
    db.session.delete(app)
    invalidate_cache()


def pinned_keys() -> dict[str, list[str]]:
    """key id → slugs of the apps pinned to it."""
    out: dict[str, list[str]] = {}
    for slug, settings in db.session.execute(select(ConnectedApp.slug, ConnectedApp.settings)):
        kid = (settings or {}).get("signing_key")
        if kid:
            out.setdefault(kid, []).append(slug)
    return out


# the settings that decide who may use an app (policy.checks.check_membership)
ACCESS_KEYS = frozenset({"permitted", "allow_groups", "deny_groups", "assigned_users"})


def change_settings(app: ConnectedApp, *, enabled: bool | None = None, name: str | None = None,
                    **changes: Any) -> AppSettings:
    """Validate and apply setting changes; nothing is written if any value is invalid.

    A change of None keeps the current value; CLEAR sets an optional setting back to None.
    """
    current = AppSettings.from_dict(app.settings)
    if name is not None:
        name = validate_name(name)
    updates: dict[str, Any] = {k: (None if v is CLEAR else v) for k, v in changes.items() if v is not None}
    if updates.get("require_phishing_resistant") and "require_mfa" not in updates:
        updates["require_mfa"] = True   # phishing-resistant implies MFA
    if "attributes" in updates:
        updates["attributes"] = {name: stored_source(text) for name, text in updates["attributes"].items()}
        for key in ("attribute_formats", "friendly_names"):   # entries of attributes no longer released go too
            if key not in updates:
                updates[key] = {n: v for n, v in getattr(current, key).items() if n in updates["attributes"]}
    if updates.get("nameid_value"):
        kind, value = parse_source(updates["nameid_value"])
        updates["nameid_value"] = f"{kind}:{value}"
    new = replace(current, **updates)
    validate_settings(new)
    if new.issuer is not None and new.issuer != current.issuer:
        check_issuer_free(new.issuer)
    # only when this change asks for encryption: an app whose metadata lost its certificate since
    # (refresh, sync) must still be editable and disable-able; its SSO fails with app_misconfigured
    if new.encrypt_assertion and updates.get("encrypt_assertion") and not (app.sp or {}).get("encryption_certs"):
        raise ServiceError("this app's metadata has no encryption certificate; assertions cannot be encrypted",
                           field="encrypt_assertion")
    # only when this change asks for it, as for encryption: a metadata refresh must not lock the app
    if updates.get("sign") == SignMode.RESPONSE and (app.sp or {}).get("want_assertions_signed"):
        raise ServiceError('this app\'s metadata has WantAssertionsSigned="true": its assertions must be signed; '
                           "choose sign assertion or both", field="sign")
    before = {**current.to_dict(), "enabled": app.enabled, "name": app.name}
    app.settings = new.to_dict()
    if enabled is not None:
        app.enabled = enabled
    if name is not None:
        app.name = name
    after = {**new.to_dict(), "enabled": app.enabled, "name": app.name}
    diff_keys = [k for k in after if before.get(k) != after.get(k)]
    if diff_keys:
        audit.record("app.settings", "app", app.slug, before={k: before.get(k) for k in diff_keys},
                     after={k: after[k] for k in diff_keys})
    app.version += 1
    invalidate_cache()
    if any(k in ACCESS_KEYS for k in diff_keys):   # who may use the app changed: provisioning reconciles it
        lifecycle.emit(lifecycle.APP_ACCESS_CHANGED, app_id=app.id)
    return new

"""What an app would receive about a user, without issuing anything: the attributes (with where each value comes
from and what is left out), the NameID, the assertion as it would be signed (SAML apps) and the ID token / UserInfo
claims (OIDC apps). No event is written and nothing persists (a pairwise NameID a first sign-in would create is
made inside a savepoint that is rolled back).

The preview assumes a password sign-in now, IdP-initiated, to the app's default ACS: the same code the SSO flow
runs (attributes.release, flows.assertion.assertion_spec, responses.assertion_parts), so only IDs, instants and
the SessionIndex differ from what a real sign-in then issues.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..attributes.release import ReleasedAttribute
from ..auth import amr as amr_values
from ..auth.sessions import SessionView, UserView
from ..config import Settings
from ..errors import SamlFlowError
from ..extensions import db
from ..models import User, utcnow
from ..oidc.claims import render_claims
from ..saml.constants import AC_PASSWORD_PROTECTED, NAMEID_PERSISTENT
from ..saml.responses import assertion_parts
from ..services.apps import AppConfig
from ..services.oauth_lookups import stored_subject
from .assertion import assertion_spec
from .release import claim_fields, release_for, subject_of
from .saml_subject import name_id_for, stored_persistent_id

PREVIEW_SESSION_INDEX = "_preview"
NEW_PAIRWISE_ID = "(a new pairwise ID, created at the first sign-in)"
ASSUMPTIONS = ("a password sign-in now (amr pwd, no second factor)",
               "IdP-initiated, to the app's default AssertionConsumerService")


@dataclass(frozen=True, slots=True)
class Preview:
    app: str
    username: str
    denied: str | None = None              # why a sign-in would be refused before issuing (attribute_unavailable)
    reason: str | None = None              # its reason code
    nameid_format: str | None = None
    nameid: str | None = None
    attributes: tuple[ReleasedAttribute, ...] = ()
    omitted: tuple[tuple[str, str], ...] = ()
    assertion_xml: str | None = None       # the Assertion as it would be signed (before the Signature goes in)
    claims: dict[str, Any] | None = None   # OIDC: the user claims of the client's scopes, with sub
    assumptions: tuple[str, ...] = field(default=ASSUMPTIONS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "app": self.app, "username": self.username, "denied": self.denied, "reason": self.reason,
            "nameid": None if self.nameid is None else {"format": self.nameid_format, "value": self.nameid},
            "attributes": [{"name": a.name, "name_format": a.name_format, "friendly_name": a.friendly_name,
                            "values": list(a.values), "source": a.source} for a in self.attributes],
            "omitted": [{"name": n, "why": why} for n, why in self.omitted],
            "assertion_xml": self.assertion_xml, "claims": self.claims, "assumptions": list(self.assumptions),
        }


def preview_session(user: UserView, now: datetime) -> SessionView:
    return SessionView(id="preview", user_id=user.id, created_at=now, authn_at=now, mfa_at=None, last_seen=now,
                       ended_at=None, user=user, amr=amr_values.PASSWORD_ONLY)


def preview(app: AppConfig, user: User, settings: Settings, now: datetime | None = None) -> Preview:
    now = now or utcnow()
    view = UserView.of(user)
    session = preview_session(view, now)
    subject = subject_of(app, view, amr=session.amr, auth_time=session.authn_at, mfa=False)
    savepoint = db.session.begin_nested()
    try:
        return _preview(app, view, session, subject, settings, now)
    finally:
        savepoint.rollback()


def _preview(app: AppConfig, user: UserView, session: SessionView, subject: Any, settings: Settings,
             now: datetime) -> Preview:
    try:
        released = release_for(app, subject, with_nameid=app.has_saml)
    except SamlFlowError as exc:
        return Preview(app=app.slug, username=user.username, denied=exc.message, reason=str(exc.reason))
    attributes = released.attributes
    fmt = name_id = xml = None
    if app.has_saml:
        stored = stored_persistent_id(user.id, app.saml.entity_id)
        fmt, name_id = name_id_for(app, user, None, released.nameid_value)
        if fmt == NAMEID_PERSISTENT and released.nameid_value is None and stored is None:
            name_id = NEW_PAIRWISE_ID     # made (and kept) only by a real first sign-in
        spec = assertion_spec(app, session, released, name_id=name_id, name_id_format=fmt,
                              session_index=PREVIEW_SESSION_INDEX, destination=app.saml.default_acs().location,
                              in_response_to=None, authn_context=AC_PASSWORD_PROTECTED, settings=settings, now=now)
        xml = "".join(assertion_parts(spec))
    claims = None
    if app.oidc is not None:
        sub = stored_subject(user.id) or "(assigned at the user's first OpenID Connect sign-in)"
        claims = {"sub": sub, **render_claims(claim_fields(app, subject), app.settings.attributes, app.oidc.scopes)}
    return Preview(app=app.slug, username=user.username, nameid_format=fmt, nameid=name_id, attributes=attributes,
                   omitted=released.omitted, assertion_xml=xml, claims=claims)

"""The AssertionSpec of an assertion for an app: shared by the SSO flow (which signs and sends it) and the preview
(which shows it unsigned), so the preview is exactly what a sign-in would issue."""

from __future__ import annotations

from datetime import datetime, timedelta

from ..attributes.release import Release
from ..auth.sessions import SessionView
from ..config import Settings
from ..saml.constants import NAMEID_PERSISTENT
from ..saml.responses import AssertionSpec
from ..services.apps import AppConfig
from .release import saml_attributes


def assertion_spec(app: AppConfig, session: SessionView, released: Release, *, name_id: str, name_id_format: str,
                   session_index: str, destination: str, in_response_to: str | None, authn_context: str,
                   settings: Settings, now: datetime) -> AssertionSpec:
    session_end = session.created_at + timedelta(seconds=settings.session_lifetime_s)
    if app.settings.session_timeout:
        session_end = min(session_end, session.authn_at + timedelta(minutes=app.settings.session_timeout))
    return AssertionSpec(
        issuer=app.idp_entity_id(settings.entity_id), audience=app.saml.entity_id, destination=destination,
        in_response_to=in_response_to, name_id=name_id, name_id_format=name_id_format,
        session_index=session_index, authn_instant=session.authn_at, authn_context=authn_context,
        now=now, lifetime=timedelta(seconds=settings.assertion_lifetime_s),
        clock_skew=timedelta(seconds=settings.clock_skew_s),
        session_not_on_or_after=session_end,
        attributes=saml_attributes(released),
        sp_name_qualifier=app.saml.entity_id if name_id_format == NAMEID_PERSISTENT else None,
    )

"""The attribute release of one sign-in, for the SAML and OIDC flows and the preview: the user, session and app
as attributes.release's Subject, the app's compiled release (cached per app version and field schema), and the
outcome as the flows' errors (attribute_unavailable: a denial before anything is issued)."""

from __future__ import annotations

from datetime import datetime

from ..attributes.release import (
    AttributeUnavailable,
    CompiledRelease,
    Release,
    ReleaseConfigError,
    Subject,
    compiled_for,
    release,
)
from ..attributes.schema import Schema
from ..auth.sessions import UserView
from ..errors import AccessDenied, AppMisconfigured
from ..models import User
from ..reasons import Reason
from ..saml.constants import STATUS_RESPONDER
from ..services.apps import AppConfig
from ..services.field_schema import current_schema
from ..services.users import user_fields


def subject_of(app: AppConfig, user: User | UserView, *, amr: tuple[str, ...] = (), auth_time: datetime | None = None,
               mfa: bool = False) -> Subject:
    # `session.mfa` as the SAML flow sees it (a second factor in this session) whatever the caller knows: the
    # amr values say it too, so a token endpoint that only has the grant's amr gives formulas the same answer
    mfa = mfa or "mfa" in amr
    return Subject(fields=user_fields(user), amr=tuple(amr), auth_time=auth_time, mfa=mfa, app_slug=app.slug,
                   app_name=app.name, entity_id=app.entity_id or "")


def compiled_release(app: AppConfig, schema: Schema | None = None) -> tuple[CompiledRelease, Schema]:
    """The app's compiled release (AppMisconfigured when its stored settings no longer compile)."""
    schema = schema or current_schema()
    try:
        return compiled_for(schema, app.settings), schema
    except ReleaseConfigError as exc:
        raise AppMisconfigured(f"the app's attribute release no longer compiles: {exc}",
                               reason=Reason.RELEASE_MISCONFIGURED, saml_status=STATUS_RESPONDER) from None


def release_for(app: AppConfig, subject: Subject, *, with_nameid: bool = True) -> Release:
    """The attributes (and NameID value) `app` receives about `subject`; AccessDenied (attribute_unavailable,
    SAML status Responder) when a source has no value and the app denies then."""
    compiled, schema = compiled_release(app)
    try:
        return release(compiled, subject, schema, with_nameid=with_nameid)
    except AttributeUnavailable as exc:
        raise AccessDenied(f"attribute {exc.name} is unavailable for this user: {exc.why}",
                           reason=Reason.ATTRIBUTE_UNAVAILABLE, saml_status=STATUS_RESPONDER) from None


def saml_attributes(released: Release) -> list[tuple[str, str | None, list[str], str | None]]:
    """The released attributes as responses.AssertionSpec.attributes."""
    return [(a.name, a.name_format, list(a.values), a.friendly_name) for a in released.attributes]


def claim_fields(app: AppConfig, subject: Subject) -> dict[str, object]:
    """The fields oidc.claims.render_claims reads for `app`: the user's fields plus, under each formula source's
    stored text ("formula:..."), that formula's values for this subject. A formula without a value is absent
    (its claim is left out: the deny decision was taken at authorization, see check_release)."""
    fields = dict(subject.fields)
    try:
        compiled, schema = compiled_release(app)
    except AppMisconfigured:   # a release that no longer compiles releases no formula claim (the field ones stay)
        return fields
    formula_names = [r.name for r in compiled.rules if r.source.formula is not None]
    if not formula_names:
        return fields
    lenient = CompiledRelease(compiled.rules, None, deny_on_missing=False)
    by_name = {r.name: r.source for r in compiled.rules}
    for attr in release(lenient, subject, schema, only=formula_names, with_nameid=False).attributes:
        source = by_name[attr.name]
        assert source.formula is not None
        fields[source.text] = _claim_value(source.formula.result_kind, attr.values)
    return fields


def _claim_value(kind: str, values: tuple[str, ...]) -> object:
    """A formula's values as the JSON value its checked type says: a list stays a list (one item too), a bool a
    boolean, an int a number (as an admin-defined field of those types is released)."""
    if kind == "list":
        return list(values)
    if kind == "bool":
        return values[0] == "true"
    if kind == "int":
        try:
            return int(values[0])
        except ValueError:
            return values[0]
    return values[0]


def check_release(app: AppConfig, subject: Subject) -> None:
    """Before an OIDC authorization is answered: AccessDenied (attribute_unavailable) when the app denies on a
    missing value and one of its sources has none (as the SAML flow decides before issuing an assertion)."""
    compiled, _ = compiled_release(app)
    if compiled.deny_on_missing:
        release_for(app, subject, with_nameid=False)

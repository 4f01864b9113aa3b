"""The console forms for an app's OpenID Connect / OAuth settings: edit them, add them to a SAML-only app, register a
new OIDC app, rotate the client secret. Each field's name= is the service's setting name, so a service refusal
(ServiceError.field) lands next to its field; services.apps.oidc checks everything again when it is saved."""

from __future__ import annotations

from typing import Any

from wtforms.validators import ValidationError

from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services.apps.oidc_settings import (
    CONFIDENTIAL,
    EXPIRE_AFTER,
    EXPIRE_IF_UNUSED,
    GRANT_TYPES,
    IP_REFRESH_MODES,
    PUBLIC,
    REFRESH_LIFETIME_RANGE,
    REFRESH_POLICIES,
    TOKEN_AUTH_METHODS,
    TOKEN_LIFETIME_RANGE,
    OidcSettings,
    format_duration,
    parse_duration,
)
from idp.web.admin.forms.base import AdminForm, ListField, TextField, one_of, required, service_rule

OVERLAPS = (("0", "none: the old secret stops now"), ("1h", "1 hour"), ("1d", "1 day"), ("7d", "7 days"),
            ("30d", "30 days"))


def lines(text: str) -> tuple[str, ...]:
    """One URI per line (blank lines dropped, repeats kept once)."""
    return tuple(dict.fromkeys(line.strip() for line in text.splitlines() if line.strip()))


def _duration(bounds: tuple[int, int]) -> Any:
    def check(form: Any, field: Any) -> None:
        try:
            parse_duration(field.data, field=field.name, bounds=bounds)
        except ServiceError as exc:
            raise ValidationError(str(exc)) from None
    return check


class OidcSettingsForm(AdminForm):
    """Every changeable OIDC setting of an app (client id and type are fixed when the settings are added)."""

    redirect_uris = TextField(limit=100_000)
    post_logout_redirect_uris = TextField(limit=100_000)
    resources = TextField(limit=100_000)
    grant_types = ListField(limit=40, keep_empty=False, unique=True, max_items=10)
    scopes = TextField(limit=6000)
    token_endpoint_auth_method = TextField(limit=40, validators=[one_of(TOKEN_AUTH_METHODS, "token auth")])
    jwks_uri = TextField()
    backchannel_logout_uri = TextField()
    initiate_login_uri = TextField()
    access_token_lifetime = TextField(limit=20, validators=[required("give a lifetime, such as 10m"),
                                                            _duration(TOKEN_LIFETIME_RANGE)])
    id_token_lifetime = TextField(limit=20, validators=[required("give a lifetime, such as 10m"),
                                                        _duration(TOKEN_LIFETIME_RANGE)])
    refresh_policy = TextField(limit=40, validators=[one_of(REFRESH_POLICIES, "refresh policy")])
    refresh_lifetime = TextField(limit=20)
    ip_policy_refresh = TextField(limit=10, validators=[one_of(IP_REFRESH_MODES, "IP policy for refresh")])

    def validate_grant_types(self, field: Any) -> None:
        unknown = [g for g in field.data if g not in GRANT_TYPES]
        if unknown or not field.data:
            raise ValidationError(f"choose some of {', '.join(GRANT_TYPES)}")

    def validate_refresh_lifetime(self, field: Any) -> None:
        if self.refresh_policy.data in (EXPIRE_AFTER, EXPIRE_IF_UNUSED):
            if not field.data:
                raise ValidationError(f"{self.refresh_policy.data} needs a duration, such as 30d")
            _duration(REFRESH_LIFETIME_RANGE)(self, field)

    @classmethod
    def from_settings(cls, s: OidcSettings) -> OidcSettingsForm:
        form = cls(formdata=None)
        form.redirect_uris.data = "\n".join(s.redirect_uris)
        form.post_logout_redirect_uris.data = "\n".join(s.post_logout_redirect_uris)
        form.resources.data = "\n".join(s.resources)
        form.grant_types.data = list(s.grant_types)
        form.scopes.data = " ".join(s.scopes)
        form.token_endpoint_auth_method.data = s.token_endpoint_auth_method
        form.jwks_uri.data = s.jwks_uri or ""
        form.backchannel_logout_uri.data = s.backchannel_logout_uri or ""
        form.initiate_login_uri.data = s.initiate_login_uri or ""
        form.access_token_lifetime.data = format_duration(s.access_token_lifetime)
        form.id_token_lifetime.data = format_duration(s.id_token_lifetime)
        form.refresh_policy.data = s.refresh_policy
        form.refresh_lifetime.data = format_duration(s.refresh_lifetime) if s.refresh_lifetime else ""
        form.ip_policy_refresh.data = s.ip_policy_refresh
        return form

    def changes(self) -> dict[str, Any]:
        """The keyword arguments of services.apps.change_oidc: every value, and `clear` for the empty optional
        ones (the form holds the whole state)."""
        clear = [name for name in ("jwks_uri", "backchannel_logout_uri", "initiate_login_uri")
                 if not getattr(self, name).data]
        lifetime = None
        if self.refresh_policy.data in (EXPIRE_AFTER, EXPIRE_IF_UNUSED):
            lifetime = parse_duration(self.refresh_lifetime.data, field="refresh_lifetime")
        else:
            clear.append("refresh_lifetime")
        return {
            "redirect_uris": lines(self.redirect_uris.data),
            "post_logout_redirect_uris": lines(self.post_logout_redirect_uris.data),
            "resources": lines(self.resources.data),
            "grant_types": tuple(self.grant_types.data), "scopes": tuple(dict.fromkeys(self.scopes.data.split())),
            "token_endpoint_auth_method": self.token_endpoint_auth_method.data,
            "jwks_uri": self.jwks_uri.data or None, "backchannel_logout_uri": self.backchannel_logout_uri.data or None,
            "initiate_login_uri": self.initiate_login_uri.data or None,
            "access_token_lifetime": parse_duration(self.access_token_lifetime.data, field="access_token_lifetime"),
            "id_token_lifetime": parse_duration(self.id_token_lifetime.data, field="id_token_lifetime"),
            "refresh_policy": self.refresh_policy.data, "refresh_lifetime": lifetime,
            "ip_policy_refresh": self.ip_policy_refresh.data, "clear": tuple(clear),
        }


class AddOidcForm(AdminForm):
    """OIDC settings for an app that has none yet (a SAML-only app): redirect URIs and the client type; the rest
    starts from the defaults and is edited afterwards."""

    redirect_uris = TextField(limit=100_000, validators=[required("give at least one redirect URI")])
    client_type = TextField(limit=20, default=CONFIDENTIAL, validators=[one_of((CONFIDENTIAL, PUBLIC),
                                                                               "client type")])

    def settings(self) -> OidcSettings:
        return apps_svc.initial_settings(public=self.client_type.data == PUBLIC,
                                         redirect_uris=lines(self.redirect_uris.data))


class NewOidcAppForm(AddOidcForm):
    """Register a new app with OIDC settings only."""

    name = TextField(limit=200, validators=[required("give the app a name"), service_rule(apps_svc.validate_name)])
    slug = TextField(limit=100, validators=[required("give the app a slug"), service_rule(apps_svc.validate_slug)])


class RotateSecretForm(AdminForm):
    overlap = TextField(limit=10, default="1d", validators=[one_of([o[0] for o in OVERLAPS], "overlap")])

    @property
    def overlap_seconds(self) -> int | None:
        return None if self.overlap.data == "0" else parse_duration(self.overlap.data, field="overlap")

"""The forms on an app's page: its SAML settings and its access policy. Every value is posted each time; the
apps services check it all again when it is saved."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from wtforms import Field
from wtforms.validators import ValidationError

from idp.models import ConnectedApp
from idp.policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES
from idp.saml.constants import NAMEID_FORMATS
from idp.services import ServiceError
from idp.services.apps import (
    CLEAR,
    ENCRYPTION_ALGORITHMS,
    NAMEID_FIELDS,
    SIGN_MODES,
    SIGNATURE_ALGORITHM_NAMES,
    AppSettings,
    nameid_format_uri,
    validate_allowed_nameid_format,
    validate_issuer,
    validate_name,
    validate_relay_state_entry,
    validate_start_url,
)
from idp.web.admin.forms.base import (
    AdminForm,
    FlagField,
    ListField,
    TextField,
    Validator,
    one_of,
    optional,
    required,
    service_rule,
)
from idp.web.admin.forms.release import SamlReleaseForm

_SIGALG_BY_URI = {uri: name for name, uri in SIGNATURE_ALGORITHM_NAMES.items()}
_NAMEID_SHORT = {uri: str(short) for short, uri in NAMEID_FORMATS.items()}


def _allowed_nameid_format(value: str) -> None:
    validate_allowed_nameid_format(nameid_format_uri(value))


def _each(rule: Callable[[str], object]) -> Validator:
    """A service's check of every value of a list field (the first refusal is shown next to the field)."""
    def check(form: Any, field: Field) -> None:
        for value in field.data:
            try:
                rule(value)
            except ServiceError as exc:
                raise ValidationError(str(exc)) from None
    return check


# ---------------------------------------------------------------- SAML settings


class SamlForm(SamlReleaseForm):
    """SAML settings of one app; every value is posted each time (the same change as `idp apps set`), the
    attribute editor and NameID value included (forms.release)."""

    name = TextField(limit=300, validators=[required("the name is required"), service_rule(validate_name)])
    nameid_format = TextField(limit=40, validators=[one_of(tuple(NAMEID_FORMATS), "NameID format")])
    nameid_field = TextField(limit=40, validators=[one_of(NAMEID_FIELDS, "NameID field")])
    sign = TextField(limit=40, validators=[one_of(SIGN_MODES, "what to sign")])
    signature_algorithm = TextField(limit=200, validators=[one_of(tuple(SIGNATURE_ALGORITHM_NAMES),
                                                                  "signature algorithm")])
    encrypt_assertion = FlagField()
    encryption_algorithm = TextField(limit=40, validators=[one_of(ENCRYPTION_ALGORITHMS, "encryption algorithm")])
    signing_key = TextField(limit=64)            # "active" or a key id
    require_signed_requests = FlagField()
    allow_sha1 = FlagField()
    # NameID requests, IdP-initiated launches and the per-app issuer (the `idp apps set` flags of the same names)
    allowed_nameid_formats = ListField(limit=200, keep_empty=False, unique=True, max_items=20,
                                       validators=[_each(_allowed_nameid_format)])
    start_url = TextField(limit=1000, validators=[optional, service_rule(validate_start_url)])   # blank: none
    relay_state_allow = TextField(limit=20000, strip=False)   # as typed: one entry per line
    idp_initiated = TextField(limit=10, validators=[one_of(("on", "off"), "IdP-initiated sign-in")])
    issuer = TextField(limit=2000, validators=[optional, service_rule(validate_issuer)])        # blank: the IdP's

    def __init__(self, *args: Any, current_pin: str | None = None, published_kids: list[str] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.current_pin = current_pin
        self.published_kids = published_kids
        if not self.signing_key.data:
            self.signing_key.data = "active"

    @classmethod
    def from_app(cls, app: ConnectedApp) -> SamlForm:
        s = AppSettings.from_dict(app.settings)
        return cls(formdata=None, data={
            "name": app.name, "nameid_format": s.nameid_format, "nameid_field": s.nameid_field,
            **cls.release_data(s), "sign": s.sign,
            "signature_algorithm": _SIGALG_BY_URI.get(s.signature_algorithm, s.signature_algorithm),
            "encrypt_assertion": s.encrypt_assertion, "encryption_algorithm": s.encryption_algorithm,
            "signing_key": s.signing_key or "active", "require_signed_requests": s.require_signed_requests,
            "allow_sha1": s.allow_sha1, **cls.connected_data(s)})

    @staticmethod
    def connected_data(s: AppSettings) -> dict[str, Any]:
        """The form's values of the NameID-request, launch and issuer settings."""
        return {"allowed_nameid_formats": [_NAMEID_SHORT.get(f, f) for f in s.allowed_nameid_formats],
                "start_url": s.start_url or "", "relay_state_allow": "\n".join(s.relay_state_allow),
                "idp_initiated": "on" if s.idp_initiated else "off", "issuer": s.issuer or ""}

    def relay_state_entries(self) -> list[str]:
        return list(dict.fromkeys(line.strip() for line in self.relay_state_allow.data.splitlines() if line.strip()))

    def validate_relay_state_allow(self, field: Field) -> None:
        problems = []
        for n, line in enumerate(field.data.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                validate_relay_state_entry(line.strip())
            except ServiceError as exc:
                problems.append(f"line {n}: {exc}")
        if problems:
            raise ValidationError("; ".join(problems[:10]))

    def connected_changes(self) -> dict[str, Any]:
        """change_settings arguments for the NameID-request, launch and issuer settings (after validate()); a
        blank start URL or issuer removes it, as `idp apps set --start-url ''` / `--clear-issuer` do."""
        return {"allowed_nameid_formats": tuple(dict.fromkeys(nameid_format_uri(f)
                                                              for f in self.allowed_nameid_formats.data)),
                "start_url": self.start_url.data or CLEAR,
                "relay_state_allow": tuple(self.relay_state_entries()),
                "idp_initiated": self.idp_initiated.data == "on",
                "issuer": self.issuer.data or CLEAR}

    def validate_signature_algorithm(self, field: Field) -> None:
        if field.data == "rsa-sha1" and not self.allow_sha1.data and not field.errors:
            raise ValidationError("rsa-sha1 is for legacy SPs only: also tick “Allow SHA-1” to opt in explicitly")

    def validate_signing_key(self, field: Field) -> None:
        if field.data not in ("active", self.current_pin or "active") and self.published_kids is not None \
                and field.data not in self.published_kids:
            raise ValidationError(f"no published signing key {field.data!r}")

    def signing_key_change(self) -> str | None:
        """None when the pin stays as it is (so a no-longer-published pin does not block other edits)."""
        if self.signing_key.data == (self.current_pin or "active"):
            return None
        return str(self.signing_key.data)


# ---------------------------------------------------------------- access policy


_SPLIT_USERS = re.compile(r"[\s,]+")


def _known_groups(form: Any, field: Field) -> None:
    from idp.services.accounts import group_names

    known = set(group_names())
    unknown = [repr(g) for g in field.data if g not in known]
    if unknown:
        raise ValidationError(f"no such group: {', '.join(unknown)}")


def _known_users(form: PolicyForm, field: Field) -> None:
    from idp.services.users import find_user

    unknown = [repr(u) for u in form.usernames() if find_user(u[:150]) is None]
    if unknown:
        raise ValidationError(f"no such user: {', '.join(unknown[:20])}")


def _session_timeout(form: Any, field: Field) -> None:
    value = field.data
    if value and (not (value.isascii() and value.isdigit()) or len(value) > 6 or not 0 <= int(value) <= 10080):
        raise ValidationError("session timeout must be a whole number of minutes from 1 to 10080 (blank for none)")


class PolicyForm(AdminForm):
    """Access policy of one app; the posted state is the new policy."""

    permitted = TextField(limit=40, validators=[one_of(PERMITTED_MODES, "permitted users")])
    allow_groups = ListField(limit=150, keep_empty=False, unique=True, max_items=500, validators=[_known_groups])
    deny_groups = ListField(limit=150, keep_empty=False, unique=True, max_items=500, validators=[_known_groups])
    assigned_users = TextField(limit=20000, validators=[_known_users])     # as typed: comma separated
    ip_policy = TextField(limit=40, validators=[one_of(IP_MODES, "IP mode")])
    ip_ranges = TextField(limit=20000, strip=False)                        # as typed: one CIDR per line
    require_mfa = FlagField()
    require_phishing_resistant = FlagField()   # implies require_mfa
    mfa_action = TextField(limit=40, validators=[one_of(MFA_ACTIONS, "MFA action")])
    session_timeout = TextField(limit=20, validators=[_session_timeout])  # minutes, blank for none

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ranges: list[str] = []   # ip_ranges normalised, once validated

    @classmethod
    def from_app(cls, app: ConnectedApp) -> PolicyForm:
        s = AppSettings.from_dict(app.settings)
        return cls(formdata=None, data={
            "permitted": s.permitted, "allow_groups": list(s.allow_groups), "deny_groups": list(s.deny_groups),
            "assigned_users": ", ".join(s.assigned_users), "ip_policy": s.ip_policy,
            "ip_ranges": "\n".join(s.ip_ranges), "require_mfa": s.require_mfa, "mfa_action": s.mfa_action,
            "require_phishing_resistant": s.require_phishing_resistant,
            "session_timeout": "" if s.session_timeout is None else str(s.session_timeout)})

    def usernames(self) -> list[str]:
        return list(dict.fromkeys(u for u in _SPLIT_USERS.split(self.assigned_users.data) if u))

    def validate_ip_ranges(self, field: Field) -> None:
        from idp.services.org import normalise_cidr

        ranges, bad = [], []
        lines = [line.strip() for line in field.data.splitlines() if line.strip()]
        for n, line in enumerate(lines, start=1):
            try:
                ranges.append(normalise_cidr(line))
            except ServiceError as exc:
                bad.append(f"line {n}: {exc}")
        if bad:
            raise ValidationError("; ".join(bad[:10]))
        self.ranges = ranges

    def changes(self, current: AppSettings) -> dict[str, Any]:
        """change_settings arguments for the posted policy (after validate()); lists keep their current order,
        with additions at the end."""
        def kept(existing: tuple[str, ...], wanted: list[str]) -> tuple[str, ...]:
            return (*[x for x in existing if x in wanted], *[x for x in wanted if x not in existing])

        timeout = int(self.session_timeout.data) if self.session_timeout.data else 0
        return {
            "permitted": self.permitted.data,
            "allow_groups": kept(current.allow_groups, self.allow_groups.data),
            "deny_groups": kept(current.deny_groups, self.deny_groups.data),
            "assigned_users": kept(current.assigned_users, self.usernames()),
            "ip_policy": self.ip_policy.data, "ip_ranges": tuple(dict.fromkeys(self.ranges)),
            "require_mfa": bool(self.require_mfa.data or self.require_phishing_resistant.data),
            "require_phishing_resistant": bool(self.require_phishing_resistant.data),
            "mfa_action": self.mfa_action.data, "session_timeout": timeout or CLEAR,
        }

    def additions(self, current: AppSettings) -> dict[str, list[str]]:
        """The groups and users this change adds (services.apps.validate_policy_references arguments)."""
        return {"allow_groups": [g for g in self.allow_groups.data if g not in current.allow_groups],
                "deny_groups": [g for g in self.deny_groups.data if g not in current.deny_groups],
                "assigned_users": [u for u in self.usernames() if u not in current.assigned_users]}

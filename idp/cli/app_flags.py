"""`idp apps set` options as settings changes: add/remove flags merged into the app's current values, and the OIDC
client options."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from typing import Any

import click

from idp.services import ServiceError
from idp.services.apps import CLEAR, AppSettings, validate_policy_references
from idp.services.apps.oidc_settings import (
    GRANT_TYPES,
    IP_REFRESH_MODES,
    MAX_JWKS_BYTES,
    TOKEN_AUTH_METHODS,
    TOKEN_LIFETIME_RANGE,
    parse_duration,
    parse_jwks,
    parse_refresh_policy,
    validate_scopes,
    validate_uris,
)
from idp.services.org import normalise_cidr


def policy_changes(current: AppSettings, *, permitted: str | None = None, allow_groups: Iterable[str] = (),
                   deny_groups: Iterable[str] = (), remove_allow_groups: Iterable[str] = (),
                   remove_deny_groups: Iterable[str] = (), assign_users: Iterable[str] = (),
                   unassign_users: Iterable[str] = (), ip_policy: str | None = None, ip_ranges: Iterable[str] = (),
                   clear_ip_ranges: bool = False, require_mfa: bool | None = None, mfa_action: str | None = None,
                   session_timeout: int | None = None,
                   require_phishing_resistant: bool | None = None) -> dict[str, Any]:
    """Turn add/remove options into new setting values (change_settings arguments); unknown groups and users
    are refused, and the added groups stay locked until the change commits."""
    allow_groups, deny_groups, assign_users = list(allow_groups), list(deny_groups), list(assign_users)
    validate_policy_references(allow_groups=allow_groups, deny_groups=deny_groups, assigned_users=assign_users)

    def merged(existing: tuple[str, ...], add: Iterable[str], remove: Iterable[str]) -> tuple[str, ...] | None:
        add, remove = list(add), list(remove)
        if not add and not remove:
            return None
        out = [x for x in existing if x not in remove]
        out += [x for x in add if x not in out]
        return tuple(out)

    ranges = None
    new_ranges = [normalise_cidr(r) for r in ip_ranges]
    if clear_ip_ranges or new_ranges:
        base = () if clear_ip_ranges else current.ip_ranges
        ranges = tuple(dict.fromkeys([*base, *new_ranges]))
    changes: dict[str, Any] = {
        "permitted": permitted, "ip_policy": ip_policy, "require_mfa": require_mfa, "mfa_action": mfa_action,
        "require_phishing_resistant": require_phishing_resistant,
        "allow_groups": merged(current.allow_groups, allow_groups, remove_allow_groups),
        "deny_groups": merged(current.deny_groups, deny_groups, remove_deny_groups),
        "assigned_users": merged(current.assigned_users, assign_users, unassign_users),
        "ip_ranges": ranges,
    }
    if session_timeout is not None:
        changes["session_timeout"] = session_timeout or CLEAR
    return changes


def split_attribute(item: str, option: str = "--attribute") -> tuple[str, str]:
    """NAME=SOURCE, SOURCE being field:F, formula:EXPR or a bare field name. A formula may hold "=" (==), so the
    split is at the first "=field:" / "=formula:"; otherwise at the last "=" (a name may itself hold "=")."""
    for marker in ("=formula:", "=field:"):
        at = item.find(marker)
        if at > 0:
            return item[:at], item[at + 1:]
    name, sep, source = item.rpartition("=")
    if not sep or not name or not source:
        raise ServiceError(f"{option} expects NAME=field:FIELD or NAME=formula:EXPR, got {item[:200]!r}",
                           field="attributes")
    return name, source


def parse_attribute_option(values: list[str]) -> dict[str, str]:
    """--attribute NAME=SOURCE (repeated) as an attribute map, in the order given."""
    return dict(split_attribute(item) for item in values)


def _pairs(values: Iterable[str], option: str, field: str) -> dict[str, str]:
    """NAME=VALUE options (the last "=" splits: attribute names may hold "="); an empty VALUE removes NAME."""
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.rpartition("=")
        if not sep or not name:
            raise ServiceError(f"{option} expects NAME=VALUE, got {item[:200]!r}", field=field)
        out[name] = value
    return out


_RELEASE_FLAGS = ("add_attributes", "remove_attributes", "attribute_formats", "friendly_names", "on_missing",
                  "nameid_value", "clear_nameid_value")


def release_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The attribute release options of `idp apps set` (besides --attribute / --clear-attributes), collected
    into one `release_flags` dict."""
    options = [
        click.option("--add-attribute", "add_attributes", multiple=True,
                     help="NAME=field:FIELD or NAME=formula:EXPR added to (or replaced in) the map; repeat."),
        click.option("--remove-attribute", "remove_attributes", multiple=True, help="Stop releasing NAME; repeat."),
        click.option("--attribute-format", "attribute_formats", multiple=True,
                     help="NAME=uri|basic|unspecified: the attribute's NameFormat; NAME= back to the default; repeat."),
        click.option("--friendly-name", "friendly_names", multiple=True,
                     help="NAME=F: the attribute's FriendlyName; NAME= removes it; repeat."),
        click.option("--on-missing", type=click.Choice(["omit", "deny"]),
                     help="A source without a value for the user: leave the attribute out (omit), or refuse the "
                          "sign-in with reason attribute_unavailable (deny)."),
        click.option("--nameid-value", help="field:FIELD or formula:EXPR: the NameID value (e.g. a Federation ID) "
                                            "of every format but transient."),
        click.option("--clear-nameid-value", is_flag=True, help="Back to --nameid-field / pairwise IDs."),
    ]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["release_flags"] = {name: kwargs.pop(name) for name in _RELEASE_FLAGS}
        return command(*args, **kwargs)

    for option in reversed(options):
        run = option(run)
    return run


def release_changes(current: AppSettings, attributes: Iterable[str], clear_attributes: bool,
                    flags: dict[str, Any]) -> dict[str, Any]:
    """change_settings values for the attribute map, formats, friendly names, on-missing and NameID value.
    Formats and friendly names are merged into the app's (after the map changes), an empty value removing one."""
    attributes = list(attributes)
    if flags["nameid_value"] is not None and flags["clear_nameid_value"]:
        raise ServiceError("give --nameid-value or --clear-nameid-value, not both", field="nameid_value")
    changes: dict[str, Any] = {"on_missing": flags["on_missing"]}
    if flags["clear_nameid_value"]:
        changes["nameid_value"] = CLEAR
    elif flags["nameid_value"] is not None:
        if not flags["nameid_value"].strip():
            raise ServiceError("--nameid-value expects field:FIELD or formula:EXPR (--clear-nameid-value removes it)",
                               field="nameid_value")
        changes["nameid_value"] = flags["nameid_value"]
    edits = attributes or clear_attributes or flags["add_attributes"] or flags["remove_attributes"]
    mapping = parse_attribute_option(attributes) if attributes else ({} if clear_attributes
                                                                      else dict(current.attributes))
    for item in flags["add_attributes"]:
        name, source = split_attribute(item, "--add-attribute")
        mapping.pop(name, None)
        mapping[name] = source
    for name in flags["remove_attributes"]:
        if name not in mapping:
            raise ServiceError(f"--remove-attribute: the app does not release {name[:200]!r}", field="attributes")
        del mapping[name]
    if edits:
        changes["attributes"] = mapping
    released = mapping if edits else current.attributes
    for key, option in (("attribute_formats", "--attribute-format"), ("friendly_names", "--friendly-name")):
        given = _pairs(flags[key], option, key)
        if not given:
            continue
        merged = {n: v for n, v in getattr(current, key).items() if n in released}
        for name, value in given.items():
            if value:
                merged[name] = value
            else:
                merged.pop(name, None)
        changes[key] = merged
    return changes


# ---------------------------------------------------------------- OIDC client options of `idp apps set`

_OIDC_FLAGS = ("redirect_uris", "post_logout_redirect_uris", "clear_post_logout_redirect_uris", "resources",
               "clear_resources", "grants", "scopes",
               "refresh_policy", "access_token_lifetime", "id_token_lifetime", "backchannel_logout_uri",
               "initiate_login_uri", "token_auth", "jwks_uri", "jwks_file", "require_pkce", "ip_policy_refresh")
_CLEARABLE = {"backchannel_logout_uri", "initiate_login_uri", "jwks_uri"}


def oidc_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The OIDC options of `idp apps set`, collected into one `oidc_flags` dict (plus `oidc` and `public`)."""
    options = [
        click.option("--oidc", is_flag=True, help="Give the app OpenID Connect / OAuth client settings."),
        click.option("--public", is_flag=True, help="With --oidc: a public client (token auth none, PKCE)."),
        click.option("--redirect-uri", "redirect_uris", multiple=True,
                     help="OIDC redirect URI (exact match); repeat. Replaces the list."),
        click.option("--post-logout-redirect-uri", "post_logout_redirect_uris", multiple=True,
                     help="RP-initiated logout: where the app may send users after logout; repeat. Replaces the list."),
        click.option("--clear-post-logout-redirect-uris", is_flag=True),
        click.option("--resource", "resources", multiple=True,
                     help="RFC 8707 resource indicator (an API's absolute https URI) the app may ask for; repeat. "
                          "Replaces the list."),
        click.option("--clear-resources", is_flag=True, help="Allow no resource indicator (the default)."),
        click.option("--grant", "grants", multiple=True, type=click.Choice(GRANT_TYPES),
                     help="OIDC grant; repeat. Replaces the list."),
        click.option("--scope", "scopes", multiple=True,
                     help="Scope the app may ask for (openid profile email groups offline_access or a custom one); "
                          "repeat. Replaces the list."),
        click.option("--refresh-policy", help="until-revoked | expire-after:DURATION | expire-if-unused:DURATION | "
                                              "none"),
        click.option("--access-token-lifetime", help="Such as 10m or 1h (1m-24h)."),
        click.option("--id-token-lifetime", help="Such as 10m or 1h (1m-24h)."),
        click.option("--backchannel-logout-uri", help="OIDC Back-Channel Logout URI; '' removes it."),
        click.option("--initiate-login-uri", help="Third-party initiated login URI (the launcher shows the app); "
                                                  "'' removes it."),
        click.option("--token-auth", type=click.Choice(TOKEN_AUTH_METHODS), help="Token endpoint auth method."),
        click.option("--jwks-uri", help="The client's JWKS URI (private_key_jwt); '' removes it."),
        click.option("--jwks", "jwks_file", help="A file with the client's public JWKS (private_key_jwt); '' removes "
                                                 "it."),
        click.option("--require-pkce/--no-require-pkce", default=None,
                     help="PKCE (S256) for the authorization code grant (on by default; public clients always)."),
        click.option("--ip-policy-refresh", type=click.Choice(IP_REFRESH_MODES),
                     help="Whether the app's IP ranges also bind refresh-token use."),
    ]

    @functools.wraps(command)
    def run(*args: Any, **kwargs: Any) -> Any:
        kwargs["oidc_flags"] = {name: kwargs.pop(name) for name in _OIDC_FLAGS}
        return command(*args, **kwargs)

    for option in reversed(options):
        run = option(run)
    return run


def oidc_changes(flags: dict[str, Any]) -> dict[str, Any]:
    """The given OIDC options as change_oidc / initial_settings values: durations, the refresh policy, URIs and
    the JWKS file parsed and checked; an empty string clears an optional URI."""
    changes: dict[str, Any] = {}
    clear: list[str] = []
    if flags["redirect_uris"]:
        changes["redirect_uris"] = validate_uris(flags["redirect_uris"], field="redirect_uris")
    if flags["post_logout_redirect_uris"]:
        changes["post_logout_redirect_uris"] = validate_uris(flags["post_logout_redirect_uris"],
                                                             field="post_logout_redirect_uris",
                                                             what="post-logout redirect URI")
    elif flags["clear_post_logout_redirect_uris"]:
        changes["post_logout_redirect_uris"] = ()
    if flags["resources"] and flags["clear_resources"]:
        raise ServiceError("give --resource or --clear-resources, not both", field="resources")
    if flags["resources"]:
        changes["resources"] = validate_uris(flags["resources"], field="resources", what="resource indicator")
    elif flags["clear_resources"]:
        changes["resources"] = ()
    if flags["grants"]:
        changes["grant_types"] = tuple(dict.fromkeys(flags["grants"]))
    if flags["scopes"]:
        changes["scopes"] = validate_scopes(flags["scopes"])
    if flags["refresh_policy"] is not None:
        changes["refresh_policy"], lifetime = parse_refresh_policy(flags["refresh_policy"])
        if lifetime is None:
            clear.append("refresh_lifetime")
        else:
            changes["refresh_lifetime"] = lifetime
    for name in ("access_token_lifetime", "id_token_lifetime"):
        if flags[name] is not None:
            changes[name] = parse_duration(flags[name], field=name, bounds=TOKEN_LIFETIME_RANGE)
    for name in _CLEARABLE:
        value = flags[name]
        if value == "":
            clear.append(name)
        elif value is not None:
            changes[name] = value
    if flags["jwks_file"] == "":
        clear.append("jwks")
    elif flags["jwks_file"] is not None:
        changes["jwks"] = parse_jwks(_read_small_file(flags["jwks_file"], "jwks"))
    if flags["token_auth"] is not None:
        changes["token_endpoint_auth_method"] = flags["token_auth"]
    if flags["require_pkce"] is not None:
        changes["require_pkce"] = flags["require_pkce"]
    if flags["ip_policy_refresh"] is not None:
        changes["ip_policy_refresh"] = flags["ip_policy_refresh"]
    if clear:
        changes["clear"] = tuple(clear)
    return changes


def _read_small_file(path: str, field_name: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(MAX_JWKS_BYTES + 1)
    except OSError as exc:
        raise ServiceError(f"cannot read {path}: {exc.strerror or exc.__class__.__name__}", field=field_name) from None

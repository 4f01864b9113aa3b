"""`idp apps`: register, sync, list, show, change and remove connected apps (SAML service providers, OpenID Connect
/ OAuth clients, or both), and rotate OIDC client secrets."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from idp.certs.keystore import KeyStoreError
from idp.config import PROJECT_ROOT
from idp.flows.preview import preview
from idp.policy.model import IP_MODES, MFA_ACTIONS, PERMITTED_MODES
from idp.saml.constants import NameIdFormat, values
from idp.saml.sp_metadata import SpMetadata
from idp.services import ServiceError
from idp.services import apps as apps_svc
from idp.services import metadata_refresh as refresh_svc
from idp.services import users as users_svc
from idp.services.apps.oidc_settings import settings_of
from idp.services.apps.release_view import explain_release
from idp.services.fetch import fetch_metadata

from . import app_flags, metadata_flags
from ._common import fail, keystore, settings, unit_of_work


@click.group("apps", help="Manage connected apps (SAML service providers and OpenID Connect / OAuth clients).")
def apps_group() -> None:
    pass


def _read_metadata(source: str) -> tuple[bytes, str]:
    if source.startswith(("http://", "https://")):
        s = settings()
        return fetch_metadata(source, allow_private=s.metadata_fetch_allow_private,
                              timeout=s.metadata_fetch_timeout_s), source
    if "://" in source:
        raise ServiceError("--metadata takes a file path or an http(s) URL")
    path = Path(source)
    if not path.is_file():
        raise ServiceError(f"no metadata file at {source}")
    try:
        if path.stat().st_size > 5 * 1024 * 1024:
            raise ServiceError("metadata file is larger than 5 MiB")
        with path.open("rb") as fh:
            data = fh.read(5 * 1024 * 1024 + 1)
    except OSError as exc:
        raise ServiceError(f"cannot read {source}: {exc.strerror or exc.__class__.__name__}") from None
    return data, str(path.resolve())


@apps_group.command("add")
@click.option("--metadata", "source", help="SP metadata: a file path or an http(s) URL (SAML settings).")
@click.option("--name")
@click.option("--slug")
@click.option("--entity-id", help="Pick one SP from an aggregate (EntitiesDescriptor).")
@click.option("--oidc", is_flag=True, help="Give the app OpenID Connect / OAuth client settings.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, help="OIDC redirect URI (exact match); repeat.")
@click.option("--public", is_flag=True, help="A public OIDC client (no secret; token auth none with PKCE).")
@click.option("--grant", "grants", multiple=True, type=click.Choice(apps_svc.GRANT_TYPES),
              help="OIDC grant; repeat (default authorization_code).")
@click.option("--resource", "resources", multiple=True,
              help="RFC 8707 resource indicator (an API's absolute https URI) the client may ask for; repeat.")
@unit_of_work
def apps_add(source: str | None, name: str | None, slug: str | None, entity_id: str | None, oidc: bool,
             redirect_uris: tuple[str, ...], public: bool, grants: tuple[str, ...],
             resources: tuple[str, ...]) -> None:
    """Register an app from its SAML metadata (--metadata), as an OIDC/OAuth client (--oidc), or both.

    With --oidc, prints the client id and, once, the client secret (only its hash is stored)."""
    if not oidc and (redirect_uris or public or grants or resources):
        fail("--redirect-uri, --public, --grant and --resource are OIDC settings: add --oidc")
    if source is None and not oidc:
        fail("give --metadata (a SAML app), --oidc (an OIDC/OAuth client) or both")
    if source is None:
        if not name:
            fail("an OIDC app needs --name")
        oidc_settings = apps_svc.initial_settings(public=public, grant_types=grants or None,
                                                  redirect_uris=redirect_uris, resources=resources)
        app, secret = apps_svc.register_oidc_app(name=name, slug=slug or apps_svc.slugify(name),
                                                 settings=oidc_settings)
    else:
        xml, ref = _read_metadata(source)
        app = apps_svc.register_app(xml, name=name, slug=slug, entity_id=entity_id, source="cli", source_ref=ref)
        _warn_stale(app)
        secret = None
        if oidc:
            _, secret = apps_svc.add_oidc(app, apps_svc.initial_settings(
                public=public, grant_types=grants or None, redirect_uris=redirect_uris, resources=resources))
    click.echo(app.slug)
    if app.oidc is not None:
        _echo_client(app.oidc.client_id, secret)


def _warn_stale(app: Any) -> None:
    """Accepted metadata an admin should look at (validUntil past, plain-http endpoints): warnings on standard
    error (the command still succeeds)."""
    for warning in apps_svc.metadata_warnings(app.sp):
        click.echo(f"Warning: app {app.slug}: {warning}", err=True)


def _echo_client(client_id: str, secret: str | None) -> None:
    click.echo(f"client_id: {client_id}")
    if secret is not None:
        click.echo(f"client_secret: {secret}")
        click.echo("The client secret is shown only now and stored hashed: give it to the app's owner now.", err=True)


@apps_group.command("sync")
@click.argument("folder", required=False, type=click.Path(file_okay=False, path_type=Path))
@unit_of_work
def apps_sync(folder: Path | None) -> None:
    folder = folder or PROJECT_ROOT / "metadata"
    if not folder.is_dir():
        fail(f"no folder {folder}")
    report = apps_svc.sync_folder(folder)
    for label, items in (("added", report.added), ("updated", report.updated), ("unchanged", report.unchanged)):
        for slug in items:
            click.echo(f"{label:<9} {slug}")
    for name, why in report.refused:
        click.echo(f"refused   {name}: {why}")
    for name, warning in report.warnings:
        click.echo(f"Warning: {name}: {warning}", err=True)
    click.echo(f"{len(report.added)} added, {len(report.updated)} updated, {len(report.unchanged)} unchanged, "
               f"{len(report.refused)} refused")
    if report.refused:
        sys.exit(1)


def _app_dict(app: Any) -> dict[str, Any]:
    """What `list --format json` and `show` say about an app: never a client secret (nor its hash)."""
    cfg = apps_svc.AppSettings.from_dict(app.settings)
    d: dict[str, Any] = {"slug": app.slug, "name": app.name, "enabled": app.enabled, "source": app.source,
                         "protocols": (["saml"] if app.has_saml else []) + (["oidc"] if app.has_oidc else [])}
    if app.has_saml:
        sp = app.sp
        d.update({
            "entity_id": app.entity_id, "acs": [a for a in sp["acs"]], "slo": sp["slo"],
            "signing_certs": len(sp["signing_certs"]), "encryption_certs": len(sp["encryption_certs"]),
            "authn_requests_signed": sp["authn_requests_signed"],
            "want_assertions_signed": sp["want_assertions_signed"],
            "launch_url": settings().url(f"/apps/{app.slug}/sso"),
            # the IdP entity ID this app sees (its per-app issuer, else the IdP's) and its own IdP metadata
            "idp_entity_id": cfg.issuer or settings().entity_id,
            "idp_metadata_url": settings().url(f"/saml/metadata/{app.slug}"),
            "warnings": apps_svc.metadata_warnings(sp),
        })
        source = refresh_svc.source_of(app)
        if source is not None:
            d["metadata_refresh"] = refresh_svc.describe(source)
    d["settings"] = cfg.to_dict()
    lines, notes = explain_release(cfg, SpMetadata.from_dict(app.sp) if app.has_saml else None)
    d["release"] = {"attributes": [line.to_dict() for line in lines], "not_released": notes,
                    "on_missing": cfg.on_missing, "nameid_value": cfg.nameid_value}
    if app.oidc is not None:
        d["oidc"] = {**settings_of(app.oidc).summary(),
                     "secrets": [{"created_at": s["created_at"].isoformat(),
                                  "expires_at": s["expires_at"].isoformat() if s["expires_at"] else None}
                                 for s in apps_svc.secret_status(app)]}
    return d


@apps_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def apps_list(fmt: str) -> None:
    rows = apps_svc.list_apps()
    if fmt == "json":
        click.echo(json.dumps([_app_dict(a) for a in rows], indent=2))
        return
    if not rows:
        click.echo("no apps registered")
        return
    click.echo(f"{'SLUG':<28} {'STATUS':<9} {'PROTOCOLS':<10} {'NAMEID':<12} ENTITY ID / CLIENT ID")
    for a in rows:
        cfg = apps_svc.AppSettings.from_dict(a.settings)
        protocols = "+".join((["saml"] if a.has_saml else []) + (["oidc"] if a.has_oidc else []))
        ids = " ".join(x for x in (a.entity_id, a.oidc.client_id if a.oidc else None) if x)
        click.echo(f"{a.slug:<28} {'enabled' if a.enabled else 'disabled':<9} {protocols:<10} "
                   f"{cfg.nameid_format if a.has_saml else '-':<12} {ids}")


@apps_group.command("show")
@click.argument("slug")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
@unit_of_work
def apps_show(slug: str, fmt: str) -> None:
    d = _app_dict(apps_svc.get_app(slug))
    if fmt == "json":
        click.echo(json.dumps(d, indent=2))
        return
    for key, value in d.items():
        if key in ("acs", "slo"):
            click.echo(f"{key}:")
            for ep in value:
                click.echo(f"  - {ep['binding'].rsplit(':', 1)[-1]} {ep['location']}"
                           + (f" index={ep['index']}" if ep.get("index") is not None else "")
                           + (" default" if ep.get("is_default") else ""))
        elif key == "warnings":
            for warning in value:
                click.echo(f"Warning: {warning}")
        elif key == "settings":
            for k, v in value.items():
                click.echo(f"{k}: {v}")
        elif key == "release":
            click.echo("released attributes:" if value["attributes"] else "released attributes: none")
            for line in value["attributes"]:
                friendly = f" FriendlyName={line['friendly_name']}" if line["friendly_name"] else ""
                click.echo(f"  - {line['name']} <- {line['source']} [{line['name_format'].rsplit(':', 1)[-1]}"
                           f"{friendly}] {line['why']}")
            for note in value["not_released"]:
                click.echo(f"  ! {note}")
        elif key == "metadata_refresh":
            click.echo("metadata refresh:")
            for k, v in value.items():
                if k == "held_diff":
                    if v:
                        click.echo("  held change:")
                    for item in v:
                        click.echo(f"    {item['label']}: " + ", ".join(
                            [f"-{x}" for x in item.get("removed") or []] + [f"+{x}" for x in item.get("added") or []]
                            + ([f"{item.get('before')} -> {item.get('after')}"] if item.get("before") is not None
                               or item.get("after") is not None else [])))
                else:
                    click.echo(f"  {k}: {v if v is not None else '-'}")
        elif key == "oidc":
            click.echo("oidc:")
            for k, v in value.items():
                if isinstance(v, list) and k != "secrets":
                    v = " ".join(str(x) for x in v) or "-"
                elif k == "secrets":
                    v = ", ".join(f"made {s['created_at']}" + (f" valid until {s['expires_at']}" if s["expires_at"]
                                                               else "") for s in v) or "none valid"
                click.echo(f"  {k}: {v}")
        else:
            click.echo(f"{key}: {value}")


@apps_group.command("remove")
@click.argument("slug")
@unit_of_work
def apps_remove(slug: str) -> None:
    apps_svc.remove_app(slug)
    click.echo(f"app {slug} removed")


@apps_group.command("set")
@click.argument("slug")
@click.option("--nameid-format", type=click.Choice(values(NameIdFormat)))
@click.option("--nameid-field", type=click.Choice(apps_svc.NAMEID_FIELDS))
@click.option("--allowed-nameid-format", "allowed_nameid_formats", multiple=True,
              help="A NameIDPolicy format the SP may ask for besides --nameid-format (short name or URI); repeat. "
                   "Replaces the allow-list.")
@click.option("--clear-allowed-nameid-formats", is_flag=True, help="Only --nameid-format (or unspecified) is issued.")
@click.option("--start-url", help="Default RelayState of launches from the launcher / /apps/SLUG/sso (an absolute "
                                   "http(s) URL); '' removes it.")
@click.option("--relay-state-allow", "relay_state_allow", multiple=True,
              help="A RelayState value or URL prefix IdP-initiated launches may carry; repeat. Replaces the list.")
@click.option("--clear-relay-state-allow", is_flag=True, help="Back to the default RelayState rule (see README).")
@click.option("--idp-initiated", type=click.Choice(["on", "off"]),
              help="off: /apps/SLUG/sso refuses and the launcher does not offer the app.")
@click.option("--issuer", help="The IdP entity ID this app sees (Issuer of its responses and logout messages, "
                               "entityID of /saml/metadata/SLUG): an absolute http(s) URL or urn:, at most 1024 "
                               "characters.")
@click.option("--clear-issuer", is_flag=True, help="The app sees the IdP's own entity ID again.")
@click.option("--attribute", "attributes", multiple=True,
              help="NAME=field:FIELD or NAME=formula:EXPR (a bare FIELD works too); repeat. Replaces the attribute "
                   "map.")
@click.option("--clear-attributes", is_flag=True)
@click.option("--sign", type=click.Choice(apps_svc.SIGN_MODES))
@click.option("--enabled/--disabled", default=None)
@click.option("--name")
@click.option("--require-signed-requests/--no-require-signed-requests", default=None)
@click.option("--allow-sha1/--no-allow-sha1", default=None)
@click.option("--permitted", type=click.Choice(PERMITTED_MODES))
@click.option("--allow-group", "allow_groups", multiple=True, help="Group allowed in (admin-approved); repeat.")
@click.option("--deny-group", "deny_groups", multiple=True, help="Group always refused; repeat.")
@click.option("--remove-allow-group", "remove_allow_groups", multiple=True)
@click.option("--remove-deny-group", "remove_deny_groups", multiple=True)
@click.option("--assign-user", "assign_users", multiple=True, help="User allowed in directly; repeat.")
@click.option("--unassign-user", "unassign_users", multiple=True)
@click.option("--ip-policy", type=click.Choice(IP_MODES))
@click.option("--ip-range", "ip_ranges", multiple=True, help="IPv4/IPv6 CIDR added to the app's ranges; repeat.")
@click.option("--clear-ip-ranges", is_flag=True)
@click.option("--require-mfa/--no-require-mfa", default=None)
@click.option("--mfa-action", type=click.Choice(MFA_ACTIONS))
@click.option("--require-phishing-resistant/--no-require-phishing-resistant", default=None,
              help="Only a passkey or security key signs in to this app (implies --require-mfa).")
@click.option("--session-timeout", type=click.IntRange(0, 10080), help="Minutes; 0 removes the limit.")
@click.option("--signing-key", help="Pin the app to a published key id (see idp certs status), or 'active'.")
@click.option("--signature-algorithm", type=click.Choice(list(apps_svc.SIGNATURE_ALGORITHM_NAMES)))
@click.option("--encrypt-assertion/--no-encrypt-assertion", default=None)
@click.option("--encryption-algorithm", type=click.Choice(list(apps_svc.ENCRYPTION_ALGORITHMS)))
@click.option("--metadata", "source", help="SAML metadata (file or http(s) URL): gives an OIDC-only app its SAML "
                                          "settings, or replaces a SAML app's metadata (same entityID).")
@click.option("--entity-id", help="With --metadata: pick one SP from an aggregate.")
@app_flags.release_options
@app_flags.oidc_options
@metadata_flags.refresh_options
@unit_of_work
def apps_set(source: str | None, entity_id: str | None, oidc: bool, public: bool, oidc_flags: dict[str, Any],
             release_flags: dict[str, Any], refresh_flags: dict[str, Any],
             slug: str, nameid_format: str | None, nameid_field: str | None,
             allowed_nameid_formats: tuple[str, ...], clear_allowed_nameid_formats: bool, start_url: str | None,
             relay_state_allow: tuple[str, ...], clear_relay_state_allow: bool, idp_initiated: str | None,
             issuer: str | None, clear_issuer: bool, attributes: tuple[str, ...],
             clear_attributes: bool, sign: str | None, enabled: bool | None, name: str | None,
             require_signed_requests: bool | None, allow_sha1: bool | None, permitted: str | None,
             allow_groups: tuple[str, ...], deny_groups: tuple[str, ...], remove_allow_groups: tuple[str, ...],
             remove_deny_groups: tuple[str, ...], assign_users: tuple[str, ...], unassign_users: tuple[str, ...],
             ip_policy: str | None, ip_ranges: tuple[str, ...], clear_ip_ranges: bool, require_mfa: bool | None,
             mfa_action: str | None, require_phishing_resistant: bool | None, session_timeout: int | None,
             signing_key: str | None,
             signature_algorithm: str | None, encrypt_assertion: bool | None,
             encryption_algorithm: str | None) -> None:
    if issuer is not None and clear_issuer:
        fail("give --issuer or --clear-issuer, not both")
    app = apps_svc.get_app(slug)
    if source is not None:
        xml, ref = _read_metadata(source)
        changed = apps_svc.update_metadata(app, xml, source_ref=ref, entity_id=entity_id)
        click.echo(f"app {slug}: SAML metadata {'updated' if changed else 'unchanged'}")
        _warn_stale(app)
    elif entity_id is not None:
        fail("--entity-id goes with --metadata")
    metadata_flags.apply_refresh_flags(app, refresh_flags)
    secret = _set_oidc(app, oidc, public, oidc_flags)
    policy = app_flags.policy_changes(
        apps_svc.AppSettings.from_dict(app.settings), permitted=permitted, allow_groups=allow_groups,
        deny_groups=deny_groups, remove_allow_groups=remove_allow_groups,
        remove_deny_groups=remove_deny_groups, assign_users=assign_users, unassign_users=unassign_users,
        ip_policy=ip_policy, ip_ranges=ip_ranges, clear_ip_ranges=clear_ip_ranges, require_mfa=require_mfa,
        mfa_action=mfa_action, session_timeout=session_timeout, require_phishing_resistant=require_phishing_resistant)
    release = app_flags.release_changes(apps_svc.AppSettings.from_dict(app.settings), attributes, clear_attributes,
                                        release_flags)
    if nameid_field is None and nameid_format == "email":
        nameid_field = "email"
    allowed_formats = tuple(dict.fromkeys(apps_svc.nameid_format_uri(f) for f in allowed_nameid_formats)) \
        if allowed_nameid_formats or clear_allowed_nameid_formats else None
    apps_svc.change_settings(app, enabled=enabled, name=name, nameid_format=nameid_format,
                             nameid_field=nameid_field, allowed_nameid_formats=allowed_formats,
                             start_url=None if start_url is None else (start_url or apps_svc.CLEAR),
                             relay_state_allow=tuple(dict.fromkeys(relay_state_allow))
                             if relay_state_allow or clear_relay_state_allow else None,
                             idp_initiated=None if idp_initiated is None else idp_initiated == "on",
                             issuer=apps_svc.CLEAR if clear_issuer else issuer,
                             **release, sign=sign, require_signed_requests=require_signed_requests,
                             allow_sha1=allow_sha1, **policy,
                             **apps_svc.signing_changes(published_kids=_published_kids(signing_key),
                                                        signing_key=signing_key,
                                                        signature_algorithm=signature_algorithm,
                                                        encrypt_assertion=encrypt_assertion,
                                                        encryption_algorithm=encryption_algorithm))
    click.echo(f"app {slug} updated")
    if oidc or secret is not None:
        assert app.oidc is not None
        _echo_client(app.oidc.client_id, secret)


def _set_oidc(app: Any, oidc: bool, public: bool, flags: dict[str, Any]) -> str | None:
    """`--oidc` adds OIDC settings (with the other OIDC options as their first values); without it the OIDC
    options change the existing ones. Returns a new client secret when one was made."""
    changes = app_flags.oidc_changes(flags)
    if oidc:
        _, secret = apps_svc.add_oidc(app, apps_svc.initial_settings(public=public, **changes))
        return secret
    if public:
        fail("--public goes with --oidc (the client type is chosen when the OIDC settings are added)")
    if not changes:
        return None
    _, secret = apps_svc.change_oidc(app, **changes)
    return secret


apps_group.add_command(metadata_flags.apps_refresh)


@apps_group.group("secret", help="OIDC client secrets.")
def secret_group() -> None:
    pass


@secret_group.command("rotate")
@click.argument("slug")
@click.option("--overlap", help="How long the older secrets stay valid (such as 12h or 7d); default: they stop now.")
@unit_of_work
def secret_rotate(slug: str, overlap: str | None) -> None:
    """Make a new client secret, shown once (stored hashed); the older ones end now or after --overlap."""
    app = apps_svc.get_app(slug)
    seconds = apps_svc.parse_duration(overlap, field="overlap") if overlap is not None else None
    secret = apps_svc.rotate_secret(app, overlap=seconds)
    _echo_client(app.oidc.client_id if app.oidc else "", secret)
    click.echo("The client secret is shown only now and stored hashed" + (
        f"; the older secrets stay valid for {overlap}." if overlap else "; the older secrets no longer work."),
        err=True)


def _published_kids(requested: str | None) -> list[str] | None:
    if requested is None or requested == "active":
        return None
    try:
        return [k.kid for k in keystore().current().published]
    except KeyStoreError as exc:
        raise ServiceError(f"cannot check the key: {exc}") from None


@apps_group.command("preview")
@click.argument("slug")
@click.option("--user", "username", required=True, help="The user whose sign-in to preview.")
@click.option("--format", "fmt", type=click.Choice(["text", "xml", "json"]), default="text",
              help="text: a summary; xml: the assertion as it would be signed; json: everything.")
@unit_of_work
def apps_preview(slug: str, username: str, fmt: str) -> None:
    """What SLUG would receive about a user (attributes, NameID, assertion XML, OIDC claims): nothing is issued,
    no event is written."""
    app = apps_svc.get_app(slug)
    config = apps_svc.app_config_by_id(app.id)
    user = users_svc.find_user(username)
    if config is None or user is None:
        fail(f"no user {username!r}" if user is None else f"no app {slug!r}")
    result = preview(config, user, settings())
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    elif fmt == "xml":
        if result.denied:
            fail(f"{result.reason}: {result.denied}")
        if result.assertion_xml is None:
            fail(f"app {slug} has no SAML settings: use --format json for its OpenID Connect claims")
        click.echo(result.assertion_xml)
    else:
        _echo_preview(result)
    if result.denied:
        sys.exit(1)


def _echo_preview(result: Any) -> None:
    click.echo(f"preview of {result.app} for {result.username} (assuming {'; '.join(result.assumptions)})")
    if result.denied:
        click.echo(f"DENIED ({result.reason}): {result.denied}")
        return
    if result.nameid is not None:
        click.echo(f"NameID: {result.nameid} [{result.nameid_format}]")
    click.echo("attributes:" if result.attributes else "attributes: none")
    for a in result.attributes:
        friendly = f" FriendlyName={a.friendly_name}" if a.friendly_name else ""
        click.echo(f"  {a.name} = {' | '.join(a.values)}   ({a.source}; {a.name_format.rsplit(':', 1)[-1]}{friendly})")
    for name, why in result.omitted:
        click.echo(f"  (left out) {name}: {why}")
    if result.claims is not None:
        click.echo("OpenID Connect claims:")
        click.echo(json.dumps(result.claims, indent=2))

"""`idp org`: org-wide settings (trusted login IP ranges, first-factor enrolment, the admin console's IP ranges)."""

from __future__ import annotations

import json
import sys

import click

from idp.services import org

from ._common import fail, unit_of_work


@click.group("org", help="Org-wide settings.")
def org_group() -> None:
    pass


@org_group.command("set", help="Change org settings (only the options given).")
@click.option("--mfa-enrolment", "mfa_enrolment", metavar="trusted-ranges|link-only|grace-days:N",
              help="Who may set up a FIRST second factor without an enrolment link: only from the trusted IP "
                   "ranges (default), nobody (link-only), or within N days (1..365) of account creation.")
@click.option("--enrolment-help", "enrolment_help", metavar="TEXT",
              help="Text on the page that refuses an enrolment (whom to ask); empty to remove.")
@click.option("--admin-ip-range", "admin_ip_ranges", multiple=True, metavar="CIDR",
              help="Allow the admin console only from these IPv4/IPv6 ranges (repeat the option; replaces the list).")
@click.option("--clear-admin-ip-ranges", is_flag=True, help="Allow the admin console from any address.")
@click.option("--scim-delete", "scim_delete", type=click.Choice(org.SCIM_DELETE_MODES),
              help="What a SCIM DELETE of a user does: deactivate (default; the account stays, disabled) or delete.")
@click.option("--smtp-url", "smtp_url", metavar="URL",
              help="Email through this SMTP server: smtp://[user:password@]host[:port][?starttls=require] or "
                   "smtps://...; `-` reads the URL from standard input (keeps the password out of the shell "
                   "history). Stored sealed, shown masked. Overrides IDP_SMTP_URL.")
@click.option("--from", "smtp_from", metavar="ADDRESS",
              help="The From address of the IdP's emails (`idp@example.org` or `Name <idp@example.org>`).")
@click.option("--clear-smtp", is_flag=True, help="Remove the org's SMTP URL and From address (IDP_SMTP_URL applies).")
@click.option("--admin-email", "admin_emails", multiple=True, metavar="ADDRESS",
              help="Send the admins' emails (certificate expiring, provisioning failures, webhook disabled) to "
                   "these addresses (repeat the option; replaces the list). Default: every enabled admin user.")
@click.option("--clear-admin-emails", is_flag=True, help="Send the admins' emails to every enabled admin user.")
@unit_of_work
def org_set(mfa_enrolment: str | None, enrolment_help: str | None, admin_ip_ranges: tuple[str, ...],
            clear_admin_ip_ranges: bool, scim_delete: str | None, smtp_url: str | None, smtp_from: str | None,
            clear_smtp: bool, admin_emails: tuple[str, ...], clear_admin_emails: bool) -> None:
    from idp.services import mailer

    if admin_ip_ranges and clear_admin_ip_ranges:
        fail("--admin-ip-range and --clear-admin-ip-ranges exclude each other")
    if admin_emails and clear_admin_emails:
        fail("--admin-email and --clear-admin-emails exclude each other")
    if clear_smtp and (smtp_url is not None or smtp_from is not None):
        fail("--clear-smtp excludes --smtp-url and --from")
    if (mfa_enrolment is None and enrolment_help is None and not admin_ip_ranges and not clear_admin_ip_ranges
            and scim_delete is None and smtp_url is None and smtp_from is None and not clear_smtp
            and not admin_emails and not clear_admin_emails):
        fail("nothing to change: give --mfa-enrolment, --enrolment-help, --admin-ip-range CIDR (repeatable), "
             "--clear-admin-ip-ranges, --scim-delete, --smtp-url, --from, --clear-smtp, --admin-email ADDRESS "
             "(repeatable) or --clear-admin-emails")
    if scim_delete is not None:
        click.echo(f"scim delete: {org.set_scim_delete(scim_delete)}")
    if mfa_enrolment is not None:
        click.echo(f"mfa enrolment: {org.set_mfa_enrolment(mfa_enrolment)}")
    if enrolment_help is not None:
        text = org.set_mfa_enrolment_help(enrolment_help)
        click.echo("enrolment help text " + ("set" if text else "removed"))
    if admin_ip_ranges or clear_admin_ip_ranges:
        stored = org.set_admin_ip_ranges(() if clear_admin_ip_ranges else admin_ip_ranges)
        click.echo("admin IP ranges: " + (", ".join(stored) if stored
                                          else "none (the console answers from any address)"))
    if smtp_url == "-":
        smtp_url = sys.stdin.readline().strip()
    if smtp_url is not None or smtp_from is not None:
        smtp = mailer.set_smtp(smtp_url, smtp_from)
        click.echo(f"smtp: {smtp.masked_url} (from the {smtp.source}), from {smtp.from_addr}")
    if clear_smtp:
        removed = mailer.clear_smtp()
        left = mailer.current_config()
        click.echo(("smtp settings removed" if removed else "no org smtp settings to remove") + "; "
                   + (f"IDP_SMTP_URL applies: {left.masked_url}" if left else "email is off"))
    if admin_emails or clear_admin_emails:
        values = mailer.set_admin_emails(() if clear_admin_emails else admin_emails)
        click.echo("admin emails: " + (", ".join(values) or "every enabled admin user"))


@org_group.command("show", help="Print every org setting.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def org_show(fmt: str) -> None:
    from idp.services import mailer

    values = {**org.all_settings(), **mailer.settings_view()}
    if fmt == "json":
        click.echo(json.dumps(values, indent=2))
        return
    for key, value in values.items():
        if isinstance(value, list):
            shown = ", ".join(value) or "(none)"
        elif isinstance(value, bool):
            shown = "on" if value else "off"
        elif value is None:
            shown = "(none)"
        else:
            shown = str(value) or "(none)"
        click.echo(f"{key:<20} {shown}")


@org_group.group("ip-ranges", help="Trusted login IP ranges (IPv4/IPv6 CIDR), used by every app's IP policy.")
def ip_ranges_group() -> None:
    pass


@ip_ranges_group.command("add")
@click.argument("cidr")
@unit_of_work
def ip_ranges_add(cidr: str) -> None:
    click.echo(f"trusted range {org.add_trusted_range(cidr)} added")


@ip_ranges_group.command("remove")
@click.argument("cidr")
@unit_of_work
def ip_ranges_remove(cidr: str) -> None:
    click.echo(f"trusted range {org.remove_trusted_range(cidr)} removed")


@ip_ranges_group.command("list")
@unit_of_work
def ip_ranges_list() -> None:
    ranges = org.trusted_ranges()
    if not ranges:
        click.echo("no trusted ranges (no org-wide IP restriction)")
    for r in ranges:
        click.echo(r)


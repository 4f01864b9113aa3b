"""`idp org`: org-wide settings (trusted login IP ranges, first-factor enrolment, the admin console's IP ranges)."""

from __future__ import annotations

import json

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
@unit_of_work
def org_set(mfa_enrolment: str | None, enrolment_help: str | None, admin_ip_ranges: tuple[str, ...],
            clear_admin_ip_ranges: bool, scim_delete: str | None) -> None:
    if admin_ip_ranges and clear_admin_ip_ranges:
        fail("--admin-ip-range and --clear-admin-ip-ranges exclude each other")
    if (mfa_enrolment is None and enrolment_help is None and not admin_ip_ranges and not clear_admin_ip_ranges
            and scim_delete is None):
        fail("nothing to change: give --mfa-enrolment, --enrolment-help, --admin-ip-range CIDR (repeatable), "
             "--clear-admin-ip-ranges or --scim-delete")
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


@org_group.command("show", help="Print every org setting.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def org_show(fmt: str) -> None:
    values = org.all_settings()
    if fmt == "json":
        click.echo(json.dumps(values, indent=2))
        return
    for key, value in values.items():
        if isinstance(value, list):
            shown = ", ".join(value) or "(none)"
        elif isinstance(value, bool):
            shown = "on" if value else "off"
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


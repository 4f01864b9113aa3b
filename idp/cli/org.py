"""`idp org`: org-wide settings (trusted login IP ranges, first-factor enrolment)."""

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
@unit_of_work
def org_set(mfa_enrolment: str | None, enrolment_help: str | None) -> None:
    if mfa_enrolment is None and enrolment_help is None:
        fail("nothing to change: give --mfa-enrolment or --enrolment-help")
    if mfa_enrolment is not None:
        click.echo(f"mfa enrolment: {org.set_mfa_enrolment(mfa_enrolment)}")
    if enrolment_help is not None:
        text = org.set_mfa_enrolment_help(enrolment_help)
        click.echo("enrolment help text " + ("set" if text else "removed"))


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

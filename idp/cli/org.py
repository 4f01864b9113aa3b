"""`idp org`: org-wide settings (trusted login IP ranges, the admin console's IP ranges)."""

from __future__ import annotations

import click

from idp.services import org

from ._common import fail, unit_of_work


@click.group("org", help="Org-wide settings.")
def org_group() -> None:
    pass


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


@org_group.command("set", help="Change org-wide settings.")
@click.option("--admin-ip-range", "admin_ip_ranges", multiple=True, metavar="CIDR",
              help="Allow the admin console only from these IPv4/IPv6 ranges (repeat the option; replaces the list).")
@click.option("--clear-admin-ip-ranges", is_flag=True, help="Allow the admin console from any address.")
@unit_of_work
def org_set(admin_ip_ranges: tuple[str, ...], clear_admin_ip_ranges: bool) -> None:
    # CONTRACT(enrol): `idp org set` also takes --mfa-enrolment (the enrol helper's option), merged here.
    if admin_ip_ranges and clear_admin_ip_ranges:
        fail("--admin-ip-range and --clear-admin-ip-ranges exclude each other")
    if not admin_ip_ranges and not clear_admin_ip_ranges:
        fail("nothing to set: give --admin-ip-range CIDR (repeatable) or --clear-admin-ip-ranges")
    stored = org.set_admin_ip_ranges(() if clear_admin_ip_ranges else admin_ip_ranges)
    click.echo("admin IP ranges: " + (", ".join(stored) if stored else "none (the console answers from any address)"))

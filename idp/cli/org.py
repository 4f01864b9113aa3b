"""`idp org`: org-wide settings (trusted login IP ranges)."""

from __future__ import annotations

import click

from idp.services import org

from ._common import unit_of_work


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

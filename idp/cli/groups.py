"""`idp groups`: add, remove and list groups."""

from __future__ import annotations

import click

from idp.services import users as users_svc

from ._common import unit_of_work


@click.group("groups", help="Manage groups.")
def groups_group() -> None:
    pass


@groups_group.command("add")
@click.argument("name")
@unit_of_work
def groups_add(name: str) -> None:
    users_svc.add_group(name)
    click.echo(f"group {name} added")


@groups_group.command("remove")
@click.argument("name")
@unit_of_work
def groups_remove(name: str) -> None:
    """Delete a group and its memberships (refused while an app's access policy names it)."""
    members = users_svc.remove_group(name)
    click.echo(f"group {name} removed ({len(members)} memberships ended)")


@groups_group.command("list")
@unit_of_work
def groups_list() -> None:
    from idp.services import accounts

    for g, members in accounts.groups_with_counts():  # one GROUP BY, not a member load per group
        click.echo(f"{g.name}\t{members} members")

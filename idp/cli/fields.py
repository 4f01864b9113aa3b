"""`idp fields`: define, list and remove admin-defined user fields."""

from __future__ import annotations

import json

import click

from idp.attributes.schema import CUSTOM_FIELD_TYPES
from idp.services import user_fields as fields_svc

from ._common import unit_of_work


@click.group("fields", help="Manage admin-defined user fields (values are set with `idp users set --field`).")
def fields_group() -> None:
    pass


@fields_group.command("add", help="Define a user field. A unique field refuses a value another user holds "
                                  "(case-insensitive).")
@click.argument("name")
@click.option("--type", "type_", required=True, type=click.Choice([str(t) for t in CUSTOM_FIELD_TYPES]))
@click.option("--unique", is_flag=True)
@click.option("--label", default="")
@unit_of_work
def fields_add(name: str, type_: str, unique: bool, label: str) -> None:
    fields_svc.add_field(name, type_, unique=unique, label=label)
    click.echo(f"field {name} added ({type_}{', unique' if unique else ''})")


@fields_group.command("list")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table")
@unit_of_work
def fields_list(fmt: str) -> None:
    rows = [{"name": f.name, "label": f.label, "type": f.type, "unique": f.unique,
             "used_by": [f"{slug} ({where})" for slug, where in fields_svc.apps_using_field(f.name)]}
            for f in fields_svc.list_fields()]
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no user fields (add one with `idp fields add NAME --type string`)")
        return
    for r in rows:
        flags = "unique" if r["unique"] else ""
        used = ", ".join(r["used_by"])  # type: ignore[arg-type]
        click.echo(f"{r['name']:<24} {r['type']:<7} {flags:<7} {r['label']:<24} {used}".rstrip())


@fields_group.command("remove", help="Remove a field and every user's value of it; refused while an app's "
                                     "attributes or NameID value use it.")
@click.argument("name")
@unit_of_work
def fields_remove(name: str) -> None:
    holders = fields_svc.remove_field(name)
    click.echo(f"field {name} removed ({holders} user value{'' if holders == 1 else 's'} deleted)")

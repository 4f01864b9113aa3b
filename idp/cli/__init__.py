"""The `idp` command: database, users, groups, connected apps, events and certificates.

One module per noun; each command calls services only and runs as one unit of work
(`_common.unit_of_work`). Every change goes to the database (or the key store), so a running
server picks it up without restart.
"""

from __future__ import annotations

from flask import Flask
from flask.cli import FlaskGroup

from idp.config import load_settings

from ._common import command_actor
from .access import access_group
from .app_usage import usage_cmd
from .apps import apps_group
from .audit import audit_cmd
from .certs import certs_group
from .db import db_group
from .events import events_cmd
from .feeds import feeds_group
from .fields import fields_group
from .groups import groups_group
from .notify import notify_group
from .org import org_group
from .provisioning import provisioning_cmd
from .serve import serve_cmd
from .tokens import tokens_group
from .users import users_group
from .webhooks import webhooks_group
from .worker import outbox_group, worker_cmd

apps_group.add_command(usage_cmd)   # `idp apps usage` (its own module: read-only reports)
apps_group.add_command(provisioning_cmd)   # `idp apps provisioning SLUG`


def register_cli(app: Flask) -> None:
    for cmd in (db_group, users_group, groups_group, apps_group, events_cmd, certs_group, org_group,
                access_group, audit_cmd, serve_cmd, tokens_group, fields_group, worker_cmd, outbox_group,
                notify_group, webhooks_group, feeds_group):
        app.cli.add_command(cmd)


def main() -> None:
    from idp import audit, create_app

    # The whole process acts as the OS user, so changes made in `idp shell` are named too;
    # each command also names its actor itself (`unit_of_work`).
    audit.set_actor(command_actor())

    def factory() -> Flask:
        return create_app(load_settings())

    cli = FlaskGroup(create_app=factory, add_version_option=False, load_dotenv=False,
                     help="Manage the identity provider.")
    cli.main(prog_name="idp")

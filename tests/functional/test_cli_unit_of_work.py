"""idp.cli._common.unit_of_work: one transaction per CLI command, in the name of one audit actor."""

from __future__ import annotations

import getpass
import sys

import click
import pytest
from click.testing import Result
from flask import Flask
from sqlalchemy import select

from idp import audit
from idp.cli._common import unit_of_work
from idp.extensions import db
from idp.models import AdminAudit, Group
from idp.services import ServiceError


def stored_groups() -> list[str]:
    db.session.rollback()  # forget whatever was not committed
    return list(db.session.scalars(select(Group.name).order_by(Group.name)))


@click.command("probe")
@click.argument("outcome")
@unit_of_work
def probe(outcome: str) -> None:
    """Add a group without committing, then end as OUTCOME says."""
    db.session.add(Group(name="probe"))
    audit.record("group.add", "group", "probe")
    if outcome == "service-error":
        raise ServiceError("group probe is refused")
    if outcome == "click-error":
        raise click.ClickException("stopped")
    if outcome == "crash":
        raise RuntimeError("bug")
    if outcome == "exit-1":
        click.echo("reported partial work")
        sys.exit(1)
    click.echo("done")


def invoke(app: Flask, outcome: str) -> Result:
    return app.test_cli_runner().invoke(probe, [outcome])


def test_a_command_that_returns_is_committed(app: Flask) -> None:
    r = invoke(app, "ok")
    assert (r.exit_code, r.output) == (0, "done\n")
    assert stored_groups() == ["probe"]


def test_an_exit_status_the_command_chose_keeps_its_work(app: Flask) -> None:
    r = invoke(app, "exit-1")
    assert (r.exit_code, r.output) == (1, "reported partial work\n")
    assert stored_groups() == ["probe"]


@pytest.mark.parametrize(("outcome", "message"), [("service-error", "Error: group probe is refused\n"),
                                                  ("click-error", "Error: stopped\n")])
def test_a_refused_command_is_rolled_back_with_a_clear_error(app: Flask, outcome: str, message: str) -> None:
    r = invoke(app, outcome)
    assert (r.exit_code, r.output) == (1, message)
    assert stored_groups() == []
    assert db.session.scalar(select(AdminAudit.id)) is None


def test_a_crash_is_rolled_back(app: Flask) -> None:
    r = invoke(app, "crash")
    assert isinstance(r.exception, RuntimeError) and r.exit_code == 1
    assert stored_groups() == []


def test_the_actor_is_the_os_user_unless_the_caller_named_one(app: Flask) -> None:
    with audit.acting_as("system"):  # nobody named an actor: what `idp` sees when it starts
        assert invoke(app, "ok").exit_code == 0
        assert audit.current_actor() == "system", "the command's actor ends with the command"
    with audit.acting_as("cli:tester"):
        assert app.test_cli_runner().invoke(args=["groups", "add", "ops"]).exit_code == 0
    actors = {r.target: r.actor for r in audit.recent()}
    assert actors == {"probe": f"cli:{getpass.getuser()}", "ops": "cli:tester"}

"""What every `idp` command shares: the unit of work, the audit actor, error exits and small readers."""

from __future__ import annotations

import functools
import getpass
import sys
from collections.abc import Callable
from typing import Any, NoReturn, ParamSpec, TypeVar

import click
from flask.cli import with_appcontext

from idp import audit
from idp.extensions import component, db
from idp.services import ServiceError
from idp.services import users as users_svc

P = ParamSpec("P")
R = TypeVar("R")


def settings() -> Any:
    return component("idp.settings")


def keystore() -> Any:
    return component("idp.keystore")


def passwords() -> Any:
    return component("idp.passwords")


def fail(message: str) -> NoReturn:
    """Stop the command: `Error: <message>` on standard error, exit code 1."""
    raise click.ClickException(message)


def command_actor() -> str:
    """Who a command's audit rows name: `cli:<OS user>` (plain `cli` when the OS cannot say), unless the
    caller already named an actor (a test harness or a script embedding the commands)."""
    named = audit.current_actor()
    if named != audit.DEFAULT_ACTOR:
        return named
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def unit_of_work(command: Callable[P, R]) -> Callable[P, R]:
    """Run a command inside the app context as one unit of work, in the name of `command_actor()`.

    The session is committed when the command returns, and also when it ends with an exit status it chose
    itself (`sys.exit(1)` after reporting partial work, as `apps sync` does); any other exception rolls it
    back. A ServiceError becomes `Error: <message>` and exit code 1. Services never commit themselves: this
    is the one commit of the command.
    """

    @functools.wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with audit.acting_as(command_actor()):
            try:
                result = command(*args, **kwargs)
            except (click.exceptions.Exit, SystemExit):
                _commit()
                raise
            except ServiceError as exc:
                db.session.rollback()
                raise click.ClickException(str(exc)) from None
            except BaseException:
                db.session.rollback()
                raise
            _commit()
            return result

    return with_appcontext(run)


def _commit() -> None:
    try:
        db.session.commit()
    except BaseException:
        db.session.rollback()
        raise


def read_password_stdin() -> str:
    """The first line of standard input, checked against the password rules."""
    password = sys.stdin.readline().rstrip("\r\n")
    try:
        users_svc.validate_password(password)
    except ServiceError as exc:
        fail(str(exc))
    return password

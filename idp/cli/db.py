"""`idp db`: create or upgrade the schema, and the first admin on an empty database."""

from __future__ import annotations

import secrets

import click

from idp.extensions import MIGRATIONS_DIR, db
from idp.services import ServiceError
from idp.services import users as users_svc

from ._common import fail, passwords, settings, unit_of_work


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


def _schema_state() -> str:
    """"empty", "versioned" (under Alembic) or "unversioned" (tables but no alembic_version)."""
    from sqlalchemy import inspect
    tables = set(inspect(db.engine).get_table_names())
    if not tables - {"alembic_version"}:
        return "empty"
    return "versioned" if "alembic_version" in tables else "unversioned"


def _matches_models() -> bool:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        return not compare_metadata(MigrationContext.configure(conn), db.metadata)


@db_group.command("upgrade", help="Apply schema migrations up to the latest revision.")
@unit_of_work
def db_upgrade() -> None:
    import flask_migrate

    state = _schema_state()
    if state == "unversioned":
        fail("the database has tables but no migration history; back it up, then stamp it with "
             "`FLASK_APP=idp.wsgi flask db stamp -d idp/migrations <revision>`")
    flask_migrate.upgrade(directory=MIGRATIONS_DIR)
    click.echo("database schema is at the latest revision")
    _seal_totp_secrets()


def _seal_totp_secrets() -> None:
    """TOTP secrets stored before encryption (or under an older data key) are sealed under the current key."""
    from idp.auth import totp

    done, failed = totp.reseal_stored_secrets()
    if done:
        click.echo(f"sealed {done} TOTP secret(s) under data key {totp.data_keys().current_kid()}")
    if failed:
        click.echo(f"warning: {failed} TOTP secret(s) were sealed with a data key that is not configured "
                   f"({totp.data_keys().source}); those users cannot use their authenticator until the key is "
                   "restored or their factor is reset", err=True)


@db_group.command("init", help="Create the schema at the latest revision (or upgrade it) and the first admin.")
@unit_of_work
def db_init() -> None:
    import flask_migrate

    from idp.models import User

    state = _schema_state()
    if state == "empty":
        db.create_all()
        flask_migrate.stamp(directory=MIGRATIONS_DIR, revision="head")
    elif state == "versioned":
        flask_migrate.upgrade(directory=MIGRATIONS_DIR)
        _seal_totp_secrets()
    elif _matches_models():
        # created by create_all (an early release or a test); it is exactly the latest schema
        flask_migrate.stamp(directory=MIGRATIONS_DIR, revision="head")
    else:
        fail("the database has tables but no migration history and differs from the current schema; "
             "refusing to guess (restore a backup or stamp the right revision by hand)")
    click.echo("database ready")
    if db.session.query(User.id).first() is None:
        _create_first_admin()


def _create_first_admin() -> None:
    password = settings().admin_password
    if password is not None:
        try:
            users_svc.validate_password(password)
        except ServiceError as exc:
            fail(f"IDP_ADMIN_PASSWORD: {exc}")
    generated = password is None
    if generated:
        password = secrets.token_urlsafe(12)
    users_svc.add_user("admin", email="admin@localhost.localdomain", password_hash=passwords().hash(password),
                       first_name="Admin", is_admin=True)
    if generated:
        click.echo(f"created admin user 'admin' with password: {password}")
        click.echo("(shown once; change it after signing in)")
    else:
        click.echo("created admin user 'admin' with the password from IDP_ADMIN_PASSWORD")
    click.echo("set up the admin's second factor with a one-time link: idp users enrolment-link admin")

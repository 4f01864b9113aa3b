"""Unbound Flask extensions, bound in create_app()."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import current_app
from flask_login import LoginManager
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import DeclarativeBase


class Base(DeclarativeBase):
    pass


# expire_on_commit=False: the objects a request loaded stay usable after its commits instead of
# being re-SELECTed on the next attribute access (a request is short and re-reads what it must).
db = SQLAlchemy(model_class=Base, session_options={"expire_on_commit": False})
login_manager = LoginManager()
csrf = CSRFProtect()
migrate = Migrate()

MIGRATIONS_DIR = str(Path(__file__).resolve().parent / "migrations")


def component(name: str) -> Any:
    """A per-app singleton (settings, key store, shared state, password hasher) of the app in context.

    The one bridge between Flask's application context and the layers below the web: flows and
    services ask for what they need through here (or take it as a parameter), never from Flask.
    """
    return current_app.extensions[name]


def component_or_new(name: str, make: Callable[[], Any]) -> Any:
    """component(name), made by `make` on first use in this app (a per-app singleton the app factory need not
    know about: the anonymous-event limiter, the syslog sender)."""
    found = current_app.extensions.get(name)
    if found is None:
        found = current_app.extensions.setdefault(name, make())
    return found

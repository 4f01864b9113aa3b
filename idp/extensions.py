"""Unbound Flask extensions, bound in create_app()."""

from __future__ import annotations

from pathlib import Path

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

"""WSGI entry point for production servers: `gunicorn idp.wsgi:app`."""

from . import create_app

app = create_app()

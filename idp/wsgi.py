"""WSGI entry point for production servers: `gunicorn idp.wsgi:app`."""

from . import check_keys_at_start, create_app
from .logs import configure_logging

configure_logging()
app = create_app()
check_keys_at_start(app.extensions["idp.keystore"])  # a broken key store is logged loudly at start-up

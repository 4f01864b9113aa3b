"""WSGI entry point for production servers: `gunicorn idp.wsgi:app`."""

from . import check_keys_at_start, create_app, metrics
from .logs import configure_logging

configure_logging()
app = create_app()
check_keys_at_start(app.extensions["idp.keystore"])  # a broken key store is logged loudly at start-up
# gunicorn workers share their /metrics counters through this folder (CLI runs and tests do not spool)
_metrics_dir = app.extensions["idp.settings"].metrics_dir
if _metrics_dir is not None:
    metrics.configure(_metrics_dir)

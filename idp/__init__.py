"""SAML 2.0 identity provider. create_app() is the only wiring point."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from flask_wtf.csrf import CSRFError

from .auth.datakeys import DataKeyError, DataKeys
from .auth.passwords import Passwords
from .certs.keystore import KeyStore
from .config import Settings, load_settings
from .errors import SamlFlowError
from .extensions import MIGRATIONS_DIR, csrf, db, login_manager, migrate
from .private_files import create_private_file, secure_instance_dir


def create_app(settings: Settings | None = None, **flask_overrides: Any) -> Flask:
    settings = settings or load_settings()
    # templates and static files ship inside the package (idp/web/), so a wheel renders pages too
    app = Flask(__name__, template_folder="web/templates", static_folder="web/static",
                instance_path=str(settings.instance_dir))
    from .web.cookie_session import CachedSerializerSessionInterface
    app.session_interface = CachedSerializerSessionInterface()
    engine_options = _engine_options(settings)
    app.config.update(
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=engine_options,
        SESSION_COOKIE_NAME="idp_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.is_https,
        PERMANENT_SESSION_LIFETIME=settings.session_lifetime_s,
        MAX_CONTENT_LENGTH=settings.max_request_bytes,
        WTF_CSRF_TIME_LIMIT=None,        # tied to the session instead of a clock
        WTF_CSRF_SSL_STRICT=settings.is_https,
        PREFERRED_URL_SCHEME="https" if settings.is_https else "http",
    )
    app.config.update(flask_overrides)
    app.extensions["idp.settings"] = settings
    app.extensions["idp.keystore"] = KeyStore(settings.cert_dir)
    app.extensions["idp.state"] = _shared_state(settings)
    app.extensions["idp.passwords"] = Passwords(settings.argon2_time_cost, settings.argon2_memory_kib,
                                                settings.argon2_parallelism)
    app.extensions["idp.datakeys"] = DataKeys(settings.data_key, settings.instance_dir)
    if settings.database_url.startswith("sqlite"):
        _private_sqlite_file(settings)
        _sqlite_pragmas()
    elif settings.instance_dir.exists():
        secure_instance_dir(settings.instance_dir)

    db.init_app(app)
    migrate.init_app(app, db, directory=MIGRATIONS_DIR, render_as_batch=True)
    csrf.init_app(app)
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = None  # the server-side session record is the protection

    # outbound provisioning registers its outbox handlers and lifecycle listeners on import (services.lifecycle);
    # email notifications (notify_email) and webhooks (services.webhooks) register their bus subscribers and
    # outbox handlers; the key expiry check and retention (services.key_expiry, services.retention) their worker
    # steps; metadata_refresh and feeds their refresh / sync jobs and the worker's schedule steps
    from .services import (  # noqa: F401
        feeds,
        key_expiry,
        metadata_refresh,
        notify_email,
        provisioning,
        retention,
        webhooks,
    )
    from .web.account import bp as account_bp
    from .web.admin import bp as admin_bp
    from .web.admin import register_views as register_admin_views
    from .web.home import bp as home_bp
    from .web.login_views import bp as auth_bp
    from .web.login_views import load_principal
    from .web.mfa_views import bp as mfa_bp
    from .web.ops import bp as ops_bp
    from .web.passkey_views import bp as passkeys_bp
    from .web.saml_views import bp as saml_bp
    from .web.saml_views import handle_flow_error
    from .web.scim import bp as scim_bp
    from .web.slo_views import bp as slo_bp

    login_manager.user_loader(load_principal)
    register_admin_views()
    for bp in (auth_bp, mfa_bp, passkeys_bp, home_bp, saml_bp, slo_bp, admin_bp, account_bp, ops_bp, scim_bp):
        app.register_blueprint(bp)
    # the admin REST API (/api/v1): bearer tokens only, so no CSRF token (no cookie authenticates it)
    from .web.api import bp as api_bp
    from .web.api import register_views as register_api_views
    register_api_views()
    csrf.exempt(api_bp)
    app.register_blueprint(api_bp)
    if settings.oidc_enabled:
        # OpenID Connect / OAuth 2.0: documents, authorization (+ consent), token endpoints, logout
        from .web.oidc_authorize_views import bp as oidc_authz_bp
        from .web.oidc_logout_views import bp as oidc_logout_bp
        from .web.oidc_token_views import bp as oidc_token_bp
        from .web.oidc_views import bp as oidc_bp
        for oidc_blueprint in (oidc_bp, oidc_authz_bp, oidc_token_bp, oidc_logout_bp):
            app.register_blueprint(oidc_blueprint)
    app.register_error_handler(SamlFlowError, handle_flow_error)
    from .web import uow
    uow.init_app(app)
    _register_http_errors(app)
    app.after_request(_security_headers)
    from .web import admission
    admission.install(app)   # IDP_MAX_QUEUE_MS: shed at once what cannot be answered within the budget
    from .cli import register_cli
    register_cli(app)
    return app


def _engine_options(settings: Settings) -> dict[str, Any]:
    """Bounded pool, connect and statement timeouts: a slow or dead database fails fast (503), never hangs."""
    options: dict[str, Any] = {"pool_pre_ping": True}
    if settings.database_url.startswith("sqlite"):
        # a local file cannot drop the connection: no SELECT 1 before every checkout
        options.update(pool_pre_ping=False, connect_args={"timeout": 15})
    elif settings.database_url.startswith("postgresql"):
        # a ping only for a connection that sat idle (idp/db_liveness.py), not one round trip per request
        from .db_liveness import install
        install()
        options.update(pool_pre_ping=False, pool_size=settings.db_pool_size, max_overflow=settings.db_pool_size,
                       pool_timeout=5, pool_recycle=1800)
        options["connect_args"] = {"connect_timeout": 5,
                                   "options": f"-c statement_timeout={settings.db_statement_timeout_ms}"}
    return options


def _shared_state(settings: Settings) -> Any:
    if settings.redis_url:
        from .state.redis_state import RedisState
        return RedisState(settings.redis_url)
    from .state.db_state import DbState
    return DbState()


def check_keys_at_start(store: KeyStore) -> None:
    """A broken key store does not stop the process (health checks, admin pages) but SSO answers 503."""
    from .certs.keystore import KeyStoreError

    try:
        store.current()
    except KeyStoreError as exc:
        logging.getLogger("idp").error("SSO is stopped until the key store is fixed: %s", exc)


def _private_sqlite_file(settings: Settings) -> None:
    """The instance folder 0700 and the database file created 0600 before SQLite opens it (SQLite gives the
    -wal and -shm files the database file's mode). Existing files open to others are tightened, and logged."""
    from sqlalchemy.engine import make_url

    secure_instance_dir(settings.instance_dir)
    database = make_url(settings.database_url).database
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database)
        if path.parent.is_dir():
            create_private_file(path)


def _sqlite_pragmas() -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    if getattr(_sqlite_pragmas, "done", False):
        return

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:  # pragma: no cover - trivial
        if type(dbapi_conn).__module__.startswith("sqlite3"):
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    _sqlite_pragmas.done = True  # type: ignore[attr-defined]


# the endpoints that receive SAML protocol messages: a body refused for its size there is a refused message
SAML_MESSAGE_PATHS = frozenset({"/saml/sso", "/saml/slo"})


def _register_http_errors(app: Flask) -> None:
    from .web.api.problems import problem_response
    from .web.responses import error_page as page
    from .web.responses import plain_error_page, unavailable_page

    def error_page(status: int, title: str, detail: str) -> Response:
        """The HTML error page, or a problem document for the REST API (its clients read JSON)."""
        if request.path.startswith("/api/"):
            return problem_response(status, title, detail)
        return page(status, title, detail)

    def csrf_error(exc: CSRFError) -> Response:
        return error_page(400, "Form expired", "The form was stale or forged. Go back, reload and try again.")

    def too_large(exc: Exception) -> Response:
        if request.path in SAML_MESSAGE_PATHS:   # a refused SAML message is an event like any other
            from .errors import EventContext, MalformedRequest
            from .web.saml_views import render_denied
            limit = app.config["MAX_CONTENT_LENGTH"]
            err = MalformedRequest(f"the request body is larger than IDP_MAX_REQUEST_BYTES ({limit} bytes)",
                                   http_status=413)
            err.context = EventContext(event_type="logout" if request.path == "/saml/slo" else "sso",
                                       binding="post")
            return render_denied(err)
        return error_page(413, "Request too large", "The request body is larger than this server accepts.")

    def not_found(exc: Exception) -> Response:
        return error_page(404, "Not found", "There is nothing at this address.")

    def not_allowed(exc: Exception) -> Response:
        return error_page(405, "Method not allowed", "This address does not accept that kind of request.")

    def bad_request(exc: Exception) -> Response:
        return error_page(400, "Bad request", "The request could not be understood.")

    def forbidden(exc: Exception) -> Response:
        return error_page(403, "Forbidden", "You do not have access to this page.")

    def internal(exc: Exception) -> Response:
        logging.getLogger("idp").exception("unhandled error on %s %s", request.method, request.path)
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - the database may be the thing that failed
            pass
        if request.path.startswith("/api/"):
            return problem_response(500, "Internal error", "Something went wrong on our side; nothing was changed.")
        return plain_error_page(500, "Internal error",
                                "Something went wrong on our side. Nothing was sent to the app.")

    def unavailable(exc: Exception) -> Response:
        """Database or Redis down: 503 with Retry-After, a plain page, a clear operator log line."""
        logging.getLogger("idp").error("backend unavailable on %s %s: %s", request.method, request.path,
                                       exc.__class__.__name__)
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - the database may be the thing that failed
            pass
        return unavailable_page()

    def data_key_missing(exc: DataKeyError) -> Response:
        """TOTP secrets cannot be opened: an operator problem (key file or IDP_DATA_KEY), not the user's."""
        logging.getLogger("idp").error("data key problem on %s %s: %s", request.method, request.path, exc)
        try:
            db.session.rollback()
        except Exception:  # noqa: BLE001, S110 - keep the plain page whatever the session's state
            pass
        return unavailable_page("Sign-in with a second factor is temporarily unavailable. Please try again later "
                                "or contact your administrator.", retry_after_s=60)

    app.register_error_handler(DataKeyError, data_key_missing)
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError
    from sqlalchemy.exc import DBAPIError
    from sqlalchemy.exc import TimeoutError as PoolTimeoutError

    for exc_class in (DBAPIError, PoolTimeoutError, RedisConnectionError, RedisTimeoutError):
        app.register_error_handler(exc_class, unavailable)
    app.register_error_handler(CSRFError, csrf_error)
    app.register_error_handler(413, too_large)
    app.register_error_handler(404, not_found)
    app.register_error_handler(405, not_allowed)
    app.register_error_handler(400, bad_request)
    app.register_error_handler(403, forbidden)
    app.register_error_handler(500, internal)


def _security_headers(resp: Response) -> Response:
    from .web.context import settings

    h = resp.headers
    present = {k.lower() for k in h.keys()}  # one pass instead of a scan per header (every response)
    for name, value in _SECURITY_HEADERS:
        if name.lower() not in present:
            h.add(name, value)
    if settings().is_https and "strict-transport-security" not in present:
        h.add("Strict-Transport-Security", "max-age=31536000; includeSubDomains")
    if resp.mimetype == "text/html" and "cache-control" not in present:
        h.add("Cache-Control", "no-store")
    return resp


_SECURITY_HEADERS = (
    ("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'; object-src 'none'"),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)

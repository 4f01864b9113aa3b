"""Typed settings, read once from IDP_* environment variables."""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from .private_files import write_private_once

_SOURCE_ROOT = Path(__file__).resolve().parent.parent
# A source checkout (make run, editable install) keeps instance/ and certs/ beside the code; an installed
# wheel lives in site-packages, so its defaults are relative to the working directory instead.
PROJECT_ROOT = _SOURCE_ROOT if (_SOURCE_ROOT / "pyproject.toml").is_file() else Path.cwd()

# argon2id (RFC 9106) defaults, above OWASP's minimum: OWASP lists m=19 MiB/t=2 and m=12 MiB/t=3 (p=1)
# as equivalent; this is t=3 with 16 MiB (more memory than the second, ~1.25x the work of the first).
# It costs ~35-50 CPU-ms per check here (`make bench`), so one vCPU serves ~20-29 password logins/s
# (Keycloak sizes for 15) and building and signing the SSO Response stays ~3 % of a login. Raise them
# with IDP_ARGON2_* if logins are rare; existing hashes are upgraded at the next login.
DEFAULT_ARGON2 = (3, 16384, 1)   # time cost, memory KiB, parallelism


class ConfigError(ValueError):
    """A setting is missing or malformed; the message names the variable."""


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be >= {minimum}, got {value}")
    return value


_ENV_TRUE = frozenset({"1", "true", "yes", "on"})
_ENV_FALSE = frozenset({"0", "false", "no", "off"})


def _syslog_url(env: Mapping[str, str]) -> str | None:
    """IDP_SYSLOG_URL, checked here so that a typo stops the start instead of silently streaming nothing."""
    url = (env.get("IDP_SYSLOG_URL") or "").strip() or None
    if url is not None:
        from .siem import SyslogConfigError, parse_url
        try:
            parse_url(url)
        except SyslogConfigError as exc:
            raise ConfigError(str(exc)) from None
    return url


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A boolean setting: 1/true/yes/on or 0/false/no/off, any case; unset or empty is the default.

    The only parser of boolean settings. (XML booleans in SAML messages and metadata are xs:boolean, stricter:
    idp.saml.xstypes.parse_xs_boolean.)
    """
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _ENV_TRUE:
        return True
    if raw.lower() in _ENV_FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {raw!r}")


@dataclass(frozen=True, slots=True)
class Settings:
    base_url: str
    database_url: str
    secret_key: str
    cert_dir: Path
    instance_dir: Path
    trusted_proxies: int
    admin_password: str | None
    redis_url: str | None = None
    # SAML protocol limits (the why: saml-bindings-2.0 leaves them to deployments).
    request_max_age_s: int = 300           # IssueInstant window, past and future
    clock_skew_s: int = 60                 # NotBefore back-dating for SP clocks slightly ahead
    assertion_lifetime_s: int = 300        # NotOnOrAfter of SubjectConfirmation and Conditions
    session_lifetime_s: int = 8 * 3600     # IdP session absolute lifetime
    session_idle_s: int = 2 * 3600         # IdP session idle timeout
    admin_mfa_max_age_s: int = 2 * 3600    # the admin console asks for the second factor again after this
    step_up_max_age_s: int = 15 * 60       # account security changes (password, factors, recovery codes) likewise
    max_request_bytes: int = 256 * 1024    # HTTP body cap (413 above)
    max_inflated_bytes: int = 128 * 1024   # Redirect-binding DEFLATE output cap
    artifact_ttl_s: int = 60               # HTTP-Artifact: how long an issued artifact can be resolved (once)
    artifact_delivery: str = "redirect"    # HTTP-Artifact: SAMLart by 302 redirect, or by an auto-submitted POST form
    want_authn_requests_signed: bool = False
    db_pool_size: int = 10
    db_statement_timeout_ms: int = 5000
    # admission control (idp.admission, per server process): IDP_MAX_QUEUE_MS is the latency budget within which a
    # request must be answerable, waiting in the process and then executing (0 = off); past it, new requests get
    # 503 + Retry-After at once. The classes execute at most this many requests at once each (sign-in bounds the
    # argon2 hashing of a process).
    # server_threads: the threads of one server process (IDP_THREADS, set by `idp serve`; 0 = unknown)
    max_queue_ms: int = 250
    standing_queue_ms: int | None = None      # None: 30 % of max_queue_ms (idp.admission.STANDING_FRACTION)
    signin_concurrency: int = 1
    sso_concurrency: int = 2
    other_concurrency: int = 2
    server_threads: int = 0
    metrics_allow: tuple[str, ...] = ("127.0.0.1/32", "::1/128")
    metrics_token: str | None = None
    metrics_dir: Path | None = None        # spool shared by one server's workers (default: instance/metrics)
    metadata_signed: bool = False          # sign /saml/metadata by default (else only with ?signed=1)
    metadata_valid_days: int = 7
    metadata_fetch_allow_private: bool = False
    metadata_fetch_timeout_s: int = 10
    # metadata refresh (services.metadata_refresh): the most an app's --max-interval may be (and its default), and
    # the furthest a trust-anchored document's validUntil may lie ahead (Shibboleth's RequiredValidUntil)
    metadata_refresh_max_interval_s: int = 24 * 3600
    metadata_max_validity_days: int = 30
    # federation feeds (services.feeds): the largest aggregate accepted (its verification holds the whole tree)
    feed_max_bytes: int = 128 * 1024 * 1024
    feed_fetch_timeout_s: int = 120
    argon2_time_cost: int = DEFAULT_ARGON2[0]
    argon2_memory_kib: int = DEFAULT_ARGON2[1]
    argon2_parallelism: int = DEFAULT_ARGON2[2]
    # IDP_DATA_KEY: the key(s) sealing TOTP secrets in the database (else instance/data_key); see auth.datakeys
    data_key: str | None = field(default=None, repr=False)
    # the name authenticators show next to a passkey (IDP_PASSKEY_RP_NAME); the RP ID is the host of base_url
    passkey_rp_name: str = "Identity Provider"
    # IDP_OIDC_ENABLED: serve OpenID Connect / OAuth 2.0 (discovery, JWKS, authorize, token, userinfo, revoke,
    # introspect, logout). On by default; off, every OIDC path answers 404 (a SAML-only deployment).
    oidc_enabled: bool = True
    # IDP_OIDC_BACKCHANNEL_ALLOW_PRIVATE: let back-channel logout POSTs reach private / loopback addresses (an RP on
    # the internal network). Off: the SSRF guard of services.fetch refuses them, as for metadata URLs.
    oidc_backchannel_allow_private: bool = False
    oidc_backchannel_timeout_s: float = 3.0   # per RP; a logout never waits longer on one RP
    # SAML SOAP back-channel logout (flows.slo_soap): IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE lets the LogoutRequest POSTs
    # reach private / loopback SOAP endpoints (off: the SSRF guard refuses them); IDP_SAML_BACKCHANNEL_TIMEOUT bounds
    # one app's exchange (seconds; the apps of a session are asked in parallel); IDP_SAML_BACKCHANNEL_CLIENT_CERT /
    # _KEY: a PEM certificate and key the IdP presents to https endpoints asking for one (mutual TLS)
    saml_backchannel_allow_private: bool = False
    saml_backchannel_timeout_s: float = 3.0
    saml_backchannel_client_cert: str | None = None
    saml_backchannel_client_key: str | None = None
    # the outbox worker (`idp worker`, services.outbox): attempts before a job is dead, the backoff after a failure
    # (base x 2^(attempt-1), capped, with jitter), the lease a claimed job holds (a worker killed mid-job: the job
    # is claimable again when it ends), how long finished jobs are kept
    worker_max_attempts: int = 8
    worker_backoff_s: int = 10
    worker_backoff_max_s: int = 3600
    worker_lease_s: int = 300
    worker_poll_s: float = 2.0
    outbox_keep_days: int = 7
    # outbound provisioning (services.provisioning): IDP_PROVISIONING_ALLOW_PRIVATE lets the SCIM base URL and
    # token URL be private / loopback addresses (an app on the internal network); off, the SSRF guard refuses them
    provisioning_allow_private: bool = False
    provisioning_timeout_s: int = 10
    provisioning_reconcile_minutes: int = 60
    # webhooks (services.webhooks): IDP_WEBHOOK_ALLOW_PRIVATE lets endpoints be private / loopback addresses (off:
    # the SSRF guard of services.fetch refuses them); the time one delivery may take; an endpoint is disabled when
    # it has failed IDP_WEBHOOK_DISABLE_FAILURES attempts in a row over at least IDP_WEBHOOK_DISABLE_HOURS
    webhook_allow_private: bool = False
    webhook_timeout_s: float = 10.0
    webhook_disable_failures: int = 20
    webhook_disable_hours: float = 24.0
    # email (services.mailer): IDP_SMTP_URL smtp://[user:password@]host[:port] (STARTTLS when offered, required
    # with ?starttls=require), smtps:// (TLS from the start); IDP_SMTP_FROM the From address. The org settings
    # (`idp org set --smtp-url --from`) override them. Unset: no email is sent (the notices are still events).
    smtp_url: str | None = None
    smtp_from: str | None = None
    smtp_timeout_s: float = 10.0
    # IDP_SMTP_CA_FILE: PEM file of the CA(s) that sign the SMTP server's certificate (a private CA); unset, the
    # system's trust store. The server's name is always checked.
    smtp_ca_file: str | None = None
    # SIEM (idp.siem): IDP_SYSLOG_URL udp://host:514, tcp://host:601 or tls://host:6514 streams every event (and
    # audit row) as RFC 5424 syslog with the JSON-lines fields; unset, only the JSON lines on the log
    syslog_url: str | None = None
    # TLS: the collector's certificate is verified against the system CAs, or only this PEM bundle when set
    syslog_ca_file: Path | None = None
    # retention (services.retention, run by the worker): events older than IDP_EVENT_RETENTION_DAYS are purged;
    # audit rows older than IDP_AUDIT_RETENTION_DAYS (0: kept for ever)
    event_retention_days: int = 400
    audit_retention_days: int = 0
    # the rest of retention: known devices unseen for these many days; rows per batch (one short transaction
    # each); how often the worker looks for something to purge
    known_device_retention_days: int = 400
    retention_batch: int = 5000
    retention_every_minutes: int = 60
    # events written by unauthenticated requests (an unknown SP, a malformed request...), per client IP: at most
    # IDP_ANON_EVENTS_PER_MINUTE are stored, the rest only counted (idp_events_dropped_total)
    anon_events_per_minute: int = 120
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def entity_id(self) -> str:
        return f"{self.base_url}/saml/metadata"

    @property
    def is_https(self) -> bool:
        return self.base_url.startswith("https://")

    def url(self, path: str) -> str:
        """An absolute URL of this IdP; never derived from the request's Host header."""
        return f"{self.base_url}{path}"


def _secret_key(env: dict[str, str], instance_dir: Path) -> str:
    value = env.get("IDP_SECRET_KEY")
    if value:
        return value
    path = instance_dir / "secret_key"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        pass
    return write_private_once(path, secrets.token_urlsafe(48) + "\n").strip()


def _check_data_key(value: object) -> None:
    """IDP_DATA_KEY: base64 of 32 bytes, several separated by commas (the keys themselves: auth.datakeys)."""
    if not isinstance(value, str):
        return
    for item in value.replace(",", " ").split():
        try:
            raw = base64.urlsafe_b64decode(item.replace("+", "-").replace("/", "_") + "=" * (-len(item) % 4))
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise ConfigError("IDP_DATA_KEY must be base64 of 32 random bytes (e.g. `openssl rand -base64 32`), "
                              "several separated by commas")


def load_settings(env: dict[str, str] | None = None, **overrides: object) -> Settings:
    env = dict(os.environ if env is None else env)
    base_url = env.get("IDP_BASE_URL", "http://127.0.0.1:5000").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in {"http", "https"} or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"IDP_BASE_URL must be an absolute http(s) URL without query, got {base_url!r}")
    instance_dir = Path(env.get("IDP_INSTANCE_DIR", str(PROJECT_ROOT / "instance"))).resolve()
    database_url = env.get("IDP_DATABASE_URL") or f"sqlite:///{instance_dir / 'idp.sqlite3'}"
    values: dict[str, object] = dict(
        base_url=base_url,
        database_url=database_url,
        secret_key="",
        cert_dir=Path(env.get("IDP_CERT_DIR", str(PROJECT_ROOT / "certs"))).resolve(),
        instance_dir=instance_dir,
        trusted_proxies=_int(env, "IDP_TRUSTED_PROXIES", 0),
        admin_password=env.get("IDP_ADMIN_PASSWORD") or None,
        redis_url=env.get("IDP_REDIS_URL") or None,
        request_max_age_s=_int(env, "IDP_REQUEST_MAX_AGE", 300, 1),
        artifact_ttl_s=_int(env, "IDP_ARTIFACT_TTL", 60, 1),
        artifact_delivery=(env.get("IDP_ARTIFACT_DELIVERY") or "redirect").strip().lower(),
        session_lifetime_s=_int(env, "IDP_SESSION_LIFETIME", 8 * 3600, 60),
        session_idle_s=_int(env, "IDP_SESSION_IDLE", 2 * 3600, 60),
        admin_mfa_max_age_s=_int(env, "IDP_ADMIN_MFA_MAX_AGE", 2 * 3600, 60),
        step_up_max_age_s=_int(env, "IDP_STEP_UP_MAX_AGE", 15 * 60, 60),
        want_authn_requests_signed=env_bool(env, "IDP_WANT_AUTHN_REQUESTS_SIGNED", False),
        metadata_signed=env_bool(env, "IDP_METADATA_SIGNED", False),
        db_pool_size=_int(env, "IDP_DB_POOL_SIZE", 10, 1),
        max_queue_ms=_int(env, "IDP_MAX_QUEUE_MS", 250, 0),
        standing_queue_ms=_int(env, "IDP_STANDING_QUEUE_MS", 0, 0) or None,
        signin_concurrency=_int(env, "IDP_SIGNIN_CONCURRENCY", 1, 1),
        # SQLite: an SSO is CPU only, one at a time per process is cheapest; PostgreSQL: two, one signing while
        # the other waits for its round trips (one left a worker idle at every round trip; measured in make bench)
        sso_concurrency=_int(env, "IDP_SSO_CONCURRENCY", 2 if database_url.startswith("postgresql") else 1, 1),
        other_concurrency=_int(env, "IDP_OTHER_CONCURRENCY", 2, 1),
        server_threads=_int(env, "IDP_THREADS", 0, 0),
        db_statement_timeout_ms=_int(env, "IDP_DB_STATEMENT_TIMEOUT_MS", 5000, 100),
        metrics_allow=tuple(x.strip() for x in env.get("IDP_METRICS_ALLOW", "127.0.0.1/32,::1/128").split(",")
                            if x.strip()),
        metrics_token=env.get("IDP_METRICS_TOKEN") or None,
        metrics_dir=Path(env.get("IDP_METRICS_DIR") or instance_dir / "metrics").resolve(),
        metadata_valid_days=_int(env, "IDP_METADATA_VALID_DAYS", 7, 1),
        metadata_fetch_allow_private=env_bool(env, "IDP_METADATA_FETCH_ALLOW_PRIVATE", False),
        metadata_refresh_max_interval_s=_int(env, "IDP_METADATA_REFRESH_MAX_INTERVAL", 24 * 3600, 300),
        metadata_max_validity_days=_int(env, "IDP_METADATA_MAX_VALIDITY_DAYS", 30, 1),
        feed_max_bytes=_int(env, "IDP_FEED_MAX_BYTES", 128 * 1024 * 1024, 1024),
        feed_fetch_timeout_s=_int(env, "IDP_FEED_FETCH_TIMEOUT", 120, 1),
        argon2_time_cost=_int(env, "IDP_ARGON2_TIME_COST", DEFAULT_ARGON2[0], 1),
        argon2_memory_kib=_int(env, "IDP_ARGON2_MEMORY_KIB", DEFAULT_ARGON2[1], 8),
        argon2_parallelism=_int(env, "IDP_ARGON2_PARALLELISM", DEFAULT_ARGON2[2], 1),
        data_key=env.get("IDP_DATA_KEY") or None,
        oidc_enabled=env_bool(env, "IDP_OIDC_ENABLED", True),
        oidc_backchannel_allow_private=env_bool(env, "IDP_OIDC_BACKCHANNEL_ALLOW_PRIVATE", False),
        saml_backchannel_allow_private=env_bool(env, "IDP_SAML_BACKCHANNEL_ALLOW_PRIVATE", False),
        saml_backchannel_timeout_s=float(_int(env, "IDP_SAML_BACKCHANNEL_TIMEOUT", 3, 1)),
        saml_backchannel_client_cert=(env.get("IDP_SAML_BACKCHANNEL_CLIENT_CERT") or "").strip() or None,
        saml_backchannel_client_key=(env.get("IDP_SAML_BACKCHANNEL_CLIENT_KEY") or "").strip() or None,
        worker_max_attempts=_int(env, "IDP_WORKER_MAX_ATTEMPTS", 8, 1),
        worker_backoff_s=_int(env, "IDP_WORKER_BACKOFF", 10, 0),
        worker_backoff_max_s=_int(env, "IDP_WORKER_BACKOFF_MAX", 3600, 0),
        worker_lease_s=_int(env, "IDP_WORKER_LEASE", 300, 5),
        outbox_keep_days=_int(env, "IDP_OUTBOX_KEEP_DAYS", 7, 0),
        provisioning_allow_private=env_bool(env, "IDP_PROVISIONING_ALLOW_PRIVATE", False),
        provisioning_timeout_s=_int(env, "IDP_PROVISIONING_TIMEOUT", 10, 1),
        provisioning_reconcile_minutes=_int(env, "IDP_PROVISIONING_RECONCILE_MINUTES", 60, 1),
        webhook_allow_private=env_bool(env, "IDP_WEBHOOK_ALLOW_PRIVATE", False),
        webhook_timeout_s=float(_int(env, "IDP_WEBHOOK_TIMEOUT", 10, 1)),
        webhook_disable_failures=_int(env, "IDP_WEBHOOK_DISABLE_FAILURES", 20, 1),
        webhook_disable_hours=float(_int(env, "IDP_WEBHOOK_DISABLE_HOURS", 24, 0)),
        smtp_url=(env.get("IDP_SMTP_URL") or "").strip() or None,
        smtp_from=(env.get("IDP_SMTP_FROM") or "").strip() or None,
        smtp_timeout_s=float(_int(env, "IDP_SMTP_TIMEOUT", 10, 1)),
        smtp_ca_file=(env.get("IDP_SMTP_CA_FILE") or "").strip() or None,
        syslog_url=_syslog_url(env),
        syslog_ca_file=Path(env["IDP_SYSLOG_CA_FILE"]).resolve() if env.get("IDP_SYSLOG_CA_FILE") else None,
        event_retention_days=_int(env, "IDP_EVENT_RETENTION_DAYS", 400, 1),
        audit_retention_days=_int(env, "IDP_AUDIT_RETENTION_DAYS", 0, 0),
        known_device_retention_days=_int(env, "IDP_KNOWN_DEVICE_RETENTION_DAYS", 400, 1),
        retention_batch=_int(env, "IDP_RETENTION_BATCH", 5000, 100),
        retention_every_minutes=_int(env, "IDP_RETENTION_EVERY_MINUTES", 60, 1),
        anon_events_per_minute=_int(env, "IDP_ANON_EVENTS_PER_MINUTE", 120, 1),
        passkey_rp_name=(env.get("IDP_PASSKEY_RP_NAME") or "Identity Provider").strip()[:64] or "Identity Provider",
    )
    _check_data_key(values["data_key"])
    if values["artifact_delivery"] not in ("redirect", "post"):
        raise ConfigError(f"IDP_ARTIFACT_DELIVERY must be redirect or post, got {values['artifact_delivery']!r}")
    if bool(values["saml_backchannel_client_cert"]) != bool(values["saml_backchannel_client_key"]):
        raise ConfigError("IDP_SAML_BACKCHANNEL_CLIENT_CERT and IDP_SAML_BACKCHANNEL_CLIENT_KEY are set together "
                          "(a PEM certificate and its private key), or neither")
    values.update(overrides)
    if not values["secret_key"]:
        values["secret_key"] = _secret_key(env, Path(str(values["instance_dir"])))
    return Settings(**values)  # type: ignore[arg-type]

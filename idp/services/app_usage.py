"""Who signs in to which app, read from the event log: one app's sign-ins per UTC day, users, denials and errors
(`usage`), and every app's activity with the dormant ones (`overview`). Reads only, in the caller's session;
every figure is a GROUP BY in SQL (at most one row per day, reason or user comes back), never a loop over events.

What counts as a sign-in: an event of type "sso" with reason "ok" for the app. For SAML that is the assertion
issued to the SP; for OpenID Connect it is the authorization code issued at /oauth2/authorize (after the user
signed in and the app's policy and consent passed). Token endpoint events (type "token") are not counted: a code
exchange follows each authorization (it would count the sign-in twice), and refresh-token and client-credentials
grants are no user signing in. "sso" rows from before the protocol column existed (protocol NULL) are SAML.
Denials and errors are the app's "sso" events with outcome denied / error (consent_denied included), by reason.

The period is whole UTC days: `days` days ending with the day of `now` (today counts, so far), from 00:00 UTC of
the first day to 00:00 UTC after the last; every day of it is listed, days without sign-ins as zeros.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, String, distinct, func, select
from sqlalchemy.exc import CompileError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from ..extensions import db
from ..models import SsoEvent, utcnow
from ..reasons import Outcome, Reason
from . import ServiceError
from .apps import get_app, list_apps

MIN_DAYS, MAX_DAYS, DEFAULT_DAYS = 1, 366, 30
MAX_USERS = 10_000            # rows of the per-user list at most (distinct_users is always exact)
PROTOCOLS = ("saml", "oidc")


# ---------------------------------------------------------------- the UTC day of a timestamp, in SQL

class utc_day(FunctionElement[str]):  # noqa: N801 - an SQL function, named like one
    """The UTC calendar day of a timestamp column as 'YYYY-MM-DD', whatever the database session's time zone.

    SQLite stores the UTC wall time as text (models.UTCDateTime), so date() is that day. PostgreSQL keeps a
    timestamptz whose ::date depends on the session's TimeZone setting, so the day is taken AT TIME ZONE 'UTC'."""

    type = String()
    name = "utc_day"
    inherit_cache = True


@compiles(utc_day, "sqlite")
def _utc_day_sqlite(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"date({compiler.process(element.clauses, **kw)})"


@compiles(utc_day, "postgresql")
def _utc_day_postgresql(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    return f"to_char(({compiler.process(element.clauses, **kw)}) AT TIME ZONE 'UTC', 'YYYY-MM-DD')"


@compiles(utc_day)
def _utc_day_other(element: utc_day, compiler: SQLCompiler, **kw: Any) -> str:
    raise CompileError(f"utc_day is written for SQLite and PostgreSQL, not {compiler.dialect.name}")


# ---------------------------------------------------------------- results

def _iso(d: datetime | None) -> str | None:
    return d.isoformat().replace("+00:00", "Z") if d is not None else None


@dataclass(frozen=True, slots=True)
class Period:
    """Whole UTC days: [since, until), `days` of them, the last one containing `now`."""

    days: int
    since: datetime
    until: datetime

    @property
    def dates(self) -> list[date]:
        first = self.since.date()
        return [first + timedelta(days=i) for i in range(self.days)]

    def to_dict(self) -> dict[str, Any]:
        return {"days": self.days, "since": _iso(self.since), "until": _iso(self.until)}


@dataclass(frozen=True, slots=True)
class DayCount:
    day: date
    sign_ins: int


@dataclass(frozen=True, slots=True)
class ReasonCount:
    reason: str
    count: int


@dataclass(frozen=True, slots=True)
class UserUse:
    """One user's sign-ins to the app in the period and the last of them."""

    username: str
    last_use: datetime
    sign_ins: int


@dataclass(frozen=True, slots=True)
class AppUsage:
    app_slug: str
    app_name: str
    period: Period
    per_day: tuple[DayCount, ...]          # every day of the period, oldest first, zeros included
    sign_ins: int
    by_protocol: dict[str, int]            # saml, oidc (both keys always present)
    distinct_users: int
    denials: tuple[ReasonCount, ...]       # most frequent first
    errors: tuple[ReasonCount, ...]
    users: tuple[UserUse, ...]             # most recent use first; at most `top` (or MAX_USERS) of them

    @property
    def peak(self) -> int:
        return max((d.sign_ins for d in self.per_day), default=0)

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `idp apps usage SLUG --format json` (keys documented in the README)."""
        return {"app": self.app_slug, "name": self.app_name, **self.period.to_dict(),
                "sign_ins": self.sign_ins, "distinct_users": self.distinct_users,
                "by_protocol": dict(self.by_protocol),
                "per_day": [{"date": d.day.isoformat(), "sign_ins": d.sign_ins} for d in self.per_day],
                "denials": [{"reason": r.reason, "count": r.count} for r in self.denials],
                "errors": [{"reason": r.reason, "count": r.count} for r in self.errors],
                "users": [{"username": u.username, "last_use": _iso(u.last_use), "sign_ins": u.sign_ins}
                          for u in self.users]}


@dataclass(frozen=True, slots=True)
class AppActivity:
    """One registered app in the overview."""

    app_slug: str
    app_name: str
    enabled: bool
    sign_ins: int                  # in the period
    distinct_users: int            # in the period
    last_use: datetime | None      # the last sign-in ever (None: never used)

    @property
    def dormant(self) -> bool:
        """No sign-in in the period (never used included)."""
        return self.sign_ins == 0

    @property
    def never_used(self) -> bool:
        return self.last_use is None

    def to_dict(self) -> dict[str, Any]:
        return {"app": self.app_slug, "name": self.app_name, "enabled": self.enabled, "sign_ins": self.sign_ins,
                "distinct_users": self.distinct_users, "last_use": _iso(self.last_use), "dormant": self.dormant,
                "never_used": self.never_used}


@dataclass(frozen=True, slots=True)
class UsageOverview:
    period: Period
    apps: tuple[AppActivity, ...]   # most sign-ins first; the dormant ones last, most recently used first

    def to_dict(self) -> dict[str, Any]:
        """The JSON of `idp apps usage --format json` (keys documented in the README)."""
        return {**self.period.to_dict(), "apps": [a.to_dict() for a in self.apps]}


# ---------------------------------------------------------------- input

def validate_days(days: object) -> int:
    """`days` as an int from MIN_DAYS to MAX_DAYS; ServiceError (field "days") otherwise."""
    if isinstance(days, bool) or not isinstance(days, int) or not MIN_DAYS <= days <= MAX_DAYS:
        raise ServiceError(f"days must be a whole number from {MIN_DAYS} to {MAX_DAYS}, not {days!r}",
                           field="days")
    return days


def parse_days(text: str | None) -> int:
    """A ?days= / --days value as typed: DEFAULT_DAYS when empty, else validate_days of its number."""
    if text is None or not text.strip():
        return DEFAULT_DAYS
    value = text.strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 6:
        raise ServiceError(f"days must be a whole number from {MIN_DAYS} to {MAX_DAYS}, not {value[:20]!r}",
                           field="days")
    return validate_days(int(value))


def period_of(days: int, now: datetime | None = None) -> Period:
    days = validate_days(days)
    today = (now or utcnow()).astimezone(UTC).date()
    first = today - timedelta(days=days - 1)
    return Period(days=days, since=datetime.combine(first, time(), UTC),
                  until=datetime.combine(today + timedelta(days=1), time(), UTC))


# ---------------------------------------------------------------- queries

def _sign_in() -> tuple[ColumnElement[bool], ...]:
    return SsoEvent.event_type == "sso", SsoEvent.reason == str(Reason.OK)


def _within(p: Period) -> tuple[ColumnElement[bool], ...]:
    return SsoEvent.at >= p.since, SsoEvent.at < p.until


def usage(slug: str, days: int = DEFAULT_DAYS, now: datetime | None = None, *, top: int | None = None) -> AppUsage:
    """One registered app's usage over the period (ServiceError for an unknown slug or bad `days`). `top` limits
    the per-user list (most recent first); the counts are always over every user."""
    app = get_app(slug)
    p = period_of(days, now)
    of_app = (SsoEvent.app_slug == app.slug, *_within(p))    # the (app_slug, at) index range
    n = func.count().label("n")

    day = utc_day(SsoEvent.at).label("day")
    protocol = func.coalesce(SsoEvent.protocol, "saml").label("protocol")
    per_day: dict[str, int] = {}
    by_protocol = dict.fromkeys(PROTOCOLS, 0)
    for d, proto, count in db.session.execute(
            select(day, protocol, n).where(*of_app, *_sign_in()).group_by(day, protocol)):
        per_day[str(d)] = per_day.get(str(d), 0) + int(count)
        by_protocol[str(proto)] = by_protocol.get(str(proto), 0) + int(count)

    denials: list[ReasonCount] = []
    errors: list[ReasonCount] = []
    failed = (Outcome.DENIED.value, Outcome.ERROR.value)
    for outcome, reason, count in db.session.execute(
            select(SsoEvent.outcome, SsoEvent.reason, n)
            .where(*of_app, SsoEvent.event_type == "sso", SsoEvent.outcome.in_(failed))
            .group_by(SsoEvent.outcome, SsoEvent.reason).order_by(n.desc(), SsoEvent.reason)):
        (denials if outcome == Outcome.DENIED.value else errors).append(ReasonCount(str(reason), int(count)))

    named = (*of_app, *_sign_in(), SsoEvent.username.is_not(None))
    distinct_users = int(db.session.scalar(select(func.count(distinct(SsoEvent.username))).where(*named)) or 0)
    last = func.max(SsoEvent.at).label("last")
    limit = min(top, MAX_USERS) if top is not None else MAX_USERS
    users = tuple(UserUse(str(u), _utc(at), int(c)) for u, at, c in db.session.execute(
        select(SsoEvent.username, last, n).where(*named).group_by(SsoEvent.username)
        .order_by(last.desc(), SsoEvent.username).limit(max(limit, 0))))

    return AppUsage(app_slug=app.slug, app_name=app.name, period=p,
                    per_day=tuple(DayCount(d, per_day.get(d.isoformat(), 0)) for d in p.dates),
                    sign_ins=sum(per_day.values()), by_protocol=by_protocol, distinct_users=distinct_users,
                    denials=tuple(denials), errors=tuple(errors), users=users)


def overview(days: int = DEFAULT_DAYS, now: datetime | None = None) -> UsageOverview:
    """Every registered app's sign-ins and distinct users in the period and its last sign-in ever: two grouped
    queries, whatever the number of apps. Events of apps no longer registered are left out."""
    p = period_of(days, now)
    n = func.count().label("n")
    in_period = {str(slug): (int(c), int(u)) for slug, c, u in db.session.execute(
        select(SsoEvent.app_slug, n, func.count(distinct(SsoEvent.username)))
        .where(*_within(p), *_sign_in(), SsoEvent.app_slug.is_not(None)).group_by(SsoEvent.app_slug))}
    last_use = {str(slug): _utc(at) for slug, at in db.session.execute(
        select(SsoEvent.app_slug, func.max(SsoEvent.at))
        .where(*_sign_in(), SsoEvent.app_slug.is_not(None)).group_by(SsoEvent.app_slug))}
    rows = [AppActivity(app_slug=a.slug, app_name=a.name, enabled=a.enabled,
                        sign_ins=in_period.get(a.slug, (0, 0))[0], distinct_users=in_period.get(a.slug, (0, 0))[1],
                        last_use=last_use.get(a.slug)) for a in list_apps()]
    epoch = datetime.min.replace(tzinfo=UTC)
    rows.sort(key=lambda a: a.app_slug)
    rows.sort(key=lambda a: a.last_use or epoch, reverse=True)
    rows.sort(key=lambda a: a.sign_ins, reverse=True)
    return UsageOverview(period=p, apps=tuple(rows))


def _utc(value: datetime | str) -> datetime:
    """An aggregate's timestamp as an aware UTC datetime (max(at) keeps the column type; a string is parsed in case
    a driver hands one back)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

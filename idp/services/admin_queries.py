"""Admin console reads and key operations: event pages (keyset), 24 h overview, exports, access check, audit, certs."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .. import audit
from ..certs.generate import KeyType
from ..certs.keystore import KeyState, KeyStatus, KeyStore
from ..events import EventFilter, filtered_query, to_csv, to_json
from ..extensions import db
from ..models import AdminAudit, SsoEvent, utcnow
from ..reasons import Reason
from . import ServiceError
from .accounts import FormErrors
from .apps import pinned_keys

PAGE_SIZE = 50
EXPORT_CAP = 100_000
KEY_TYPES = (KeyType.RSA3072.value, KeyType.RSA2048.value, KeyType.EC_P256.value)   # the default first
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_SUCCESS_REASONS = (Reason.OK.value, Reason.LOGOUT.value)
_CURSOR_RE = re.compile(r"^(\d{1,17})-(\d{1,18})$")   # fits datetime and a 64-bit id


# ---------------------------------------------------------------- event log

@dataclass(frozen=True, slots=True)
class Cursor:
    """A position in the (at desc, id desc) order: keyset pagination stays fast on any page at any size."""

    at: datetime
    id: int

    def encode(self) -> str:
        return f"{(self.at - _EPOCH) // timedelta(microseconds=1)}-{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        m = _CURSOR_RE.fullmatch(text)
        if not m:
            raise ServiceError("the page position is not valid", field="cursor")
        try:
            at = _EPOCH + timedelta(microseconds=int(m.group(1)))
        except OverflowError:
            raise ServiceError("the page position is not valid", field="cursor") from None
        return cls(at, int(m.group(2)))

    @classmethod
    def of(cls, event: SsoEvent) -> Cursor:
        return cls(event.at, event.id)


@dataclass(frozen=True, slots=True)
class EventPage:
    events: list[SsoEvent]
    newer: Cursor | None = None     # pass as `after` for the previous (newer) page
    older: Cursor | None = None     # pass as `before` for the next (older) page
    first: bool = True


def _events(q: Any) -> list[SsoEvent]:
    return cast(list[SsoEvent], list(db.session.scalars(q)))


def event_page(f: EventFilter, *, before: Cursor | None = None, after: Cursor | None = None,
               limit: int = PAGE_SIZE) -> EventPage:
    """One page of the filtered log, newest first. `at <= X` keeps the index range usable for the seek."""
    q = filtered_query(f)
    if after is not None:
        q = (q.where(SsoEvent.at >= after.at, or_(SsoEvent.at > after.at, SsoEvent.id > after.id))
             .order_by(None).order_by(SsoEvent.at.asc(), SsoEvent.id.asc()))
        rows = _events(q.limit(limit + 1))
        if len(rows) <= limit:          # reached the newest events: that is simply the first page
            return event_page(f, limit=limit)
        rows = rows[:limit][::-1]
        return EventPage(rows, newer=Cursor.of(rows[0]), older=Cursor.of(rows[-1]), first=False)
    if before is not None:
        q = q.where(SsoEvent.at <= before.at, or_(SsoEvent.at < before.at, SsoEvent.id < before.id))
    rows = _events(q.limit(limit + 1))
    more = len(rows) > limit
    rows = rows[:limit]
    return EventPage(rows, newer=Cursor.of(rows[0]) if before is not None and rows else None,
                     older=Cursor.of(rows[-1]) if more else None, first=before is None)


@dataclass(frozen=True, slots=True)
class Overview:
    since: datetime
    per_app: list[tuple[str, int]] = field(default_factory=list)
    denials: list[tuple[str, int]] = field(default_factory=list)
    per_outcome: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.per_outcome.values())


def overview(now: datetime | None = None, hours: int = 24) -> Overview:
    """Events (sign-ins and logouts) per app, per outcome, and failures by reason over the last `hours`.

    Each GROUP BY filters on `at` only, so it reads one covering index, (app_slug, at), (outcome, at) or
    (reason, at), without touching the rows: ~10 ms for 30k events a day in SQLite. Filtering on
    event_type as well would need a row lookup per event (~150 ms for the same day).
    """
    since = (now or utcnow()) - timedelta(hours=hours)
    recent = SsoEvent.at >= since
    n = func.count().label("n")
    per_app = db.session.execute(select(SsoEvent.app_slug, n).where(recent).group_by(SsoEvent.app_slug)
                                 .order_by(n.desc()).limit(20))
    denials = db.session.execute(select(SsoEvent.reason, n).where(recent, SsoEvent.reason.not_in(_SUCCESS_REASONS))
                                 .group_by(SsoEvent.reason).order_by(n.desc()).limit(20))
    outcomes = db.session.execute(select(SsoEvent.outcome, n).where(recent).group_by(SsoEvent.outcome))
    return Overview(since=since, per_app=[(slug or "(no app)", int(c)) for slug, c in per_app],
                    denials=[(r, int(c)) for r, c in denials], per_outcome={o: int(c) for o, c in outcomes})


EXPORT_CHUNK = 1000


@dataclass(frozen=True, slots=True)
class Export:
    chunks: Iterator[str]
    truncated: bool             # more than `cap` events matched; the newest `cap` are exported


def export_events(f: EventFilter, fmt: str, cap: int = EXPORT_CAP) -> Export:
    """The filtered events, newest first, at most `cap`, as CSV or JSON text produced chunk by chunk.

    Plain rows (not ORM objects) in chunks of EXPORT_CHUNK: only the text grows (no identity map,
    no list of 100k dicts), and 100k rows take a few seconds. Each chunk goes through events.to_csv /
    to_json (formula-injection guard included); the chunks are stitched into one document (one CSV
    header, one JSON array).
    """
    truncated = db.session.scalar(filtered_query(f).with_only_columns(SsoEvent.id).offset(cap).limit(1)) is not None
    return Export(_export_chunks(f, fmt, cap), truncated)


def _export_chunks(f: EventFilter, fmt: str, cap: int) -> Iterator[str]:
    q = (filtered_query(f).with_only_columns(*SsoEvent.__table__.c).limit(cap)
         .execution_options(yield_per=EXPORT_CHUNK))
    first = True
    for part in db.session.execute(q).partitions():
        rows = cast(list[SsoEvent], part)    # Row objects carry the same attribute names
        if fmt == "csv":
            text = to_csv(rows)
            yield text if first else text.split("\r\n", 1)[1]
        else:
            yield ("[\n" if first else ",\n") + to_json(rows)[2:-2]   # "[\n  {...},\n  {...}\n]"
        first = False
    if fmt == "csv" and first:
        yield to_csv([])
    elif fmt != "csv":
        yield "[]" if first else "\n]"


def recent_sign_ins(username: str, limit: int = 20) -> list[SsoEvent]:
    return _events(filtered_query(EventFilter(username=username, event_type="sso")).limit(limit))


SECURITY_EVENT_TYPES = ("sso", "signin", "account")   # sign-ins to apps, failed sign-in steps, factor changes


def recent_security_events(username: str, limit: int = 20) -> list[SsoEvent]:
    """What the user sees on /account: sign-ins (and failed attempts) and factor changes (enrolments, resets,
    recovery-code uses), newest first."""
    return _events(filtered_query(EventFilter(username=username))
                   .where(SsoEvent.event_type.in_(SECURITY_EVENT_TYPES)).limit(limit))


def event_apps() -> list[str]:
    """App slugs for the filter menu: registered apps (a slug typed in the URL still filters)."""
    from ..models import ConnectedApp
    return list(db.session.scalars(select(ConnectedApp.slug).order_by(ConnectedApp.slug)))


# ---------------------------------------------------------------- audit trail

def audit_page(target: str = "", *, limit: int = PAGE_SIZE, offset: int = 0) -> tuple[list[AdminAudit], bool]:
    rows = audit.recent(limit + 1, offset, target=target.strip() or None)
    return rows[:limit], len(rows) > limit


# ---------------------------------------------------------------- signing keys (as `idp certs …`)

@dataclass(frozen=True, slots=True)
class KeyRow:
    status: KeyStatus
    pinned_by: list[str]


def key_table(store: KeyStore) -> tuple[list[KeyRow], list[str]]:
    """Every key with its state and the apps pinned to it, plus the store's warnings (KeyStoreError passes)."""
    order: dict[str, int] = {state: i for i, state in enumerate(KeyState)}
    rows = sorted(store.status(), key=lambda r: order.get(str(r.get("state")), 4))
    pins = pinned_keys()
    return [KeyRow(r, sorted(pins.get(str(r.get("kid")), []))) for r in rows], store.warnings(rows)


def validate_rotation(key_type: str, days_text: str) -> int:
    errors: dict[str, str] = {}
    days = 0
    if key_type not in KEY_TYPES:
        errors["key_type"] = f"Choose one of {', '.join(KEY_TYPES)}."
    try:
        days = int(days_text)
    except ValueError:
        errors["days"] = "Enter a whole number of days."
    else:
        if not 1 <= days <= 3650:
            errors["days"] = "Between 1 and 3650 days."
    if errors:
        raise FormErrors(errors)
    return days


def rotate_keys(store: KeyStore, common_name: str, key_type: str, days: int) -> str:
    with store.mutation():
        kid = store.rotate(common_name, key_type, days)
    audit_key_operation("certs.rotate", kid, {"key_type": key_type, "days": days})
    return kid


def activate_keys(store: KeyStore) -> tuple[str, str]:
    with store.mutation():
        new, old = store.activate()
    audit_key_operation("certs.activate", new, {"retiring": old or None})
    return new, old


def retire_keys(store: KeyStore) -> str:
    with store.mutation():
        kid = store.retire(pinned_keys())
    audit_key_operation("certs.retire", kid)
    return kid


def audit_key_operation(action: str, target: str, after: dict[str, Any] | None = None) -> bool:
    """The key operation already happened (keys work without a database); its audit row is written
    when the database allows. Returns whether it was recorded."""
    try:
        # its own short transaction, opened (and so committed or rolled back) here: the key files are
        # already written, and a missing or unreachable database must not undo or fail the command
        with Session(db.engine) as own, own.begin():
            audit.record(action, "certs", target, after=after, session=own)
    except SQLAlchemyError:
        return False
    return True

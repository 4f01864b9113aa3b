"""Users in bulk: CSV import with a per-line report (created, updated, unchanged, refused and why), and the
export it reads back unchanged.

The import runs every line in a savepoint of the caller's transaction: a refused line leaves nothing behind and
later lines see what earlier ones did (a unique value given to two lines is refused on the second). Whether the
result is kept (all-or-nothing, --skip-invalid, a dry run) is the caller's decision: it commits or rolls back.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select, update

from .. import audit, csvsafe
from ..extensions import db
from ..models import Group, User, UserField
from . import ServiceError
from .accounts import FormErrors
from .user_fields import format_value, list_fields, set_user_fields
from .users import USERNAME_RE, add_user, find_user, touch, valid_email, valid_name

MAX_BYTES = 5 * 1024 * 1024   # a file of 10,000 users with a dozen fields is well under 5 MB
MAX_LINES = 10_000            # data lines (the header not counted): one transaction stays short
BUILTIN_COLUMNS = ("username", "email", "first_name", "last_name", "groups")

CREATED, UPDATED, UNCHANGED, REFUSED = "created", "updated", "unchanged", "refused"


@dataclass(slots=True)
class LineResult:
    line: int                 # line number in the file (the header is line 1)
    username: str
    result: str               # created | updated | unchanged | refused
    reason: str = ""          # why a line was refused
    changes: list[str] = field(default_factory=list)   # the fields a created/updated line sets

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"line": self.line, "username": self.username, "result": self.result}
        if self.reason:
            d["reason"] = self.reason
        if self.changes:
            d["changes"] = self.changes
        return d


@dataclass(slots=True)
class ImportReport:
    columns: list[str]
    lines: list[LineResult] = field(default_factory=list)

    def count(self, result: str) -> int:
        return sum(1 for r in self.lines if r.result == result)

    @property
    def refused(self) -> int:
        return self.count(REFUSED)

    def summary(self) -> dict[str, int]:
        return {k: self.count(k) for k in (CREATED, UPDATED, UNCHANGED, REFUSED)}


# ---------------------------------------------------------------- reading the file

def read_csv(data: bytes) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the data rows (with their line numbers) of a CSV file; ServiceError for a file that is too
    large, not UTF-8, not CSV, without a username column or with a column no field has (nothing is read then)."""
    if len(data) > MAX_BYTES:
        raise ServiceError(f"the file is larger than {MAX_BYTES // (1024 * 1024)} MB; split it", field="file")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[:exc.start].count(b"\n") + 1
        raise ServiceError(f"the file is not UTF-8 text (line {line}); save it as CSV UTF-8", field="file") from None
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[tuple[int, list[str]]] = []
    header: list[str] | None = None
    try:
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue   # blank lines
            if header is None:
                header = [c.strip() for c in row]
                continue
            if len(rows) >= MAX_LINES:
                raise ServiceError(f"the file has more than {MAX_LINES:,} lines; split it", field="file")
            rows.append((reader.line_num, row))
    except csv.Error as exc:
        raise ServiceError(f"the file is not readable CSV (line {reader.line_num}): {exc}", field="file") from None
    if header is None:
        raise ServiceError("the file is empty: the first line must name the columns (username, ...)", field="file")
    _check_header(header)
    return header, rows


def _check_header(header: list[str]) -> None:
    known = set(BUILTIN_COLUMNS) | {f.name for f in list_fields()}
    unknown = [c for c in header if c not in known]
    if unknown:
        shown = ", ".join(repr(c) for c in unknown)
        raise ServiceError(f"unknown column{'s' if len(unknown) > 1 else ''} {shown}: the columns are username, "
                           "email, first_name, last_name, groups and user fields (`idp fields list`); nothing "
                           "was imported", field="file")
    repeated = sorted({c for c in header if header.count(c) > 1})
    if repeated:
        raise ServiceError(f"column {', '.join(repeated)} appears more than once; nothing was imported",
                           field="file")
    if "username" not in header:
        raise ServiceError("the file has no username column (the key of every line); nothing was imported",
                           field="file")


# ---------------------------------------------------------------- applying lines

def import_users(data: bytes) -> ImportReport:
    """Apply every line of a CSV file to the caller's transaction (each refused line undone by its savepoint) and
    report each. The caller keeps the result (commit) or not (rollback: a dry run, or a refused line under
    all-or-nothing)."""
    header, rows = read_csv(data)
    fields = {f.name: f for f in list_fields()}
    _begin_transaction()
    report = ImportReport(columns=header)
    seen: dict[str, int] = {}          # username -> line
    line_of_user: dict[int, int] = {}  # user id -> line that created or changed it
    for line, row in rows:
        cells = {name: csvsafe.restore(row[i]).strip() if i < len(row) else "" for i, name in enumerate(header)}
        username = cells["username"]
        if len(row) > len(header):
            report.lines.append(LineResult(line, username, REFUSED,
                                           f"{len(row)} cells but the header names {len(header)} columns"))
            continue
        if not username:
            report.lines.append(LineResult(line, "", REFUSED, "username is empty"))
            continue
        if username in seen:
            report.lines.append(LineResult(line, username, REFUSED,
                                           f"duplicate username: line {seen[username]} is the same user"))
            continue
        seen[username] = line
        try:
            with db.session.begin_nested():
                result = _apply(cells, fields)
        except FormErrors as exc:
            report.lines.append(LineResult(line, username, REFUSED, _reason(exc, line_of_user)))
            continue
        except ServiceError as exc:
            report.lines.append(LineResult(line, username, REFUSED, str(exc)))
            continue
        user, outcome, changes = result
        line_of_user[user.id] = line
        report.lines.append(LineResult(line, username, outcome, changes=changes))
    return report


def _begin_transaction() -> None:
    """SQLite's driver opens a transaction only before a data change, and a SAVEPOINT outside one is a transaction
    of its own that its RELEASE commits. A no-op UPDATE opens the caller's transaction first, so the savepoints
    below nest in it and the caller's rollback undoes every line (on PostgreSQL it matches and locks nothing)."""
    db.session.execute(update(UserField).where(UserField.id < 0).values(name=UserField.name))


def _reason(exc: FormErrors, line_of_user: dict[int, int]) -> str:
    parts = []
    for name, message in exc.errors.items():
        holder = message.removeprefix("this value is already held by ")
        if holder != message:
            other = find_user(holder)
            if other is not None and other.id in line_of_user:
                message = f"this value is already given to {holder} on line {line_of_user[other.id]}"
        parts.append(f"{name}: {message}")
    return "; ".join(parts)


def _groups(cell: str) -> list[str]:
    names = list(dict.fromkeys(g.strip() for g in cell.split(";") if g.strip()))
    if not names:
        return []
    found = set(db.session.scalars(select(Group.name).where(Group.name.in_(names))))
    missing = [g for g in names if g not in found]
    if missing:
        raise ServiceError(f"no group {', '.join(repr(g) for g in missing)} (create it with `idp groups add`)")
    return names


def _check_profile(cells: dict[str, str]) -> None:
    email = cells.get("email", "")
    if email and not valid_email(email):
        raise ServiceError(f"email {email[:80]!r} is not a valid address")
    for name in ("first_name", "last_name"):
        if cells.get(name) and not valid_name(cells[name]):
            raise ServiceError(f"{name.replace('_', ' ')} is not valid (at most 150 characters, no control "
                               "characters)")


def _apply(cells: dict[str, str], fields: dict[str, Any]) -> tuple[User, str, list[str]]:
    """Create or update the line's user; raises ServiceError (the savepoint then undoes the line)."""
    username = cells["username"]
    _check_profile(cells)
    groups = _groups(cells["groups"]) if cells.get("groups") else None
    custom = {name: value for name, value in cells.items() if name in fields and value}   # file order
    user = find_user(username)
    if user is None:
        if not USERNAME_RE.fullmatch(username):
            raise ServiceError(f"username {username[:80]!r} is not valid (letters, digits, . _ @ + -)")
        if not cells.get("email"):
            raise ServiceError("email is required for a new user")
        # no password: the user signs in after an admin sets one or sends an enrolment link, as with
        # `idp users add` without --password-stdin
        user = add_user(username, email=cells["email"], password_hash=None, first_name=cells.get("first_name", ""),
                        last_name=cells.get("last_name", ""), groups=groups)
        set_user_fields(user, custom)
        changes = [c for c in BUILTIN_COLUMNS[1:] if cells.get(c)] + list(custom)
        return user, CREATED, changes
    before: dict[str, Any] = {}
    after: dict[str, Any] = {}
    for name in ("email", "first_name", "last_name"):
        value = cells.get(name)
        if value and value != getattr(user, name):
            before[name], after[name] = getattr(user, name), value
            setattr(user, name, value)
    if groups is not None and sorted(groups) != user.group_names:
        before["groups"], after["groups"] = user.group_names, sorted(groups)
        user.groups = list(db.session.scalars(select(Group).where(Group.name.in_(groups))))
    if after:
        audit.record("user.update", "user", user.username, before=before, after=after)
    changed = set_user_fields(user, custom)
    if after and not changed:   # set_user_fields tells the lifecycle listeners itself when it changed something
        touch(user)
    changes = list(after) + list(changed)
    return user, (UPDATED if changes else UNCHANGED), changes


# ---------------------------------------------------------------- export

def export_rows() -> tuple[list[str], list[dict[str, Any]]]:
    """The columns and one dict per user (built-in and custom fields, typed: lists, bools); never password
    hashes, TOTP secrets or other credentials."""
    fields = list_fields()
    columns = [*BUILTIN_COLUMNS, *(f.name for f in fields)]
    rows = []
    for user in db.session.scalars(select(User).order_by(User.username)):
        values = user.custom_fields or {}
        row: dict[str, Any] = {"username": user.username, "email": user.email, "first_name": user.first_name,
                               "last_name": user.last_name, "groups": user.group_names}
        for f in fields:
            row[f.name] = values.get(f.name)
        rows.append(row)
    return columns, rows


def to_csv(columns: list[str], rows: Iterable[dict[str, Any]]) -> str:
    """The users as CSV, every cell guarded against formula injection (idp.csvsafe: import restores them)."""
    types = {f.name: f.type for f in list_fields()}
    lines: list[list[str]] = [columns]
    for row in rows:
        cells = []
        for col in columns:
            value = row.get(col)
            if col == "groups":
                text = ";".join(value or ())
            elif col in types:
                text = format_value(types[col], value)
            else:
                text = "" if value is None else str(value)
            cells.append(text)
        lines.append(cells)
    return csvsafe.to_text(lines, lineterminator="\n")


def to_json(rows: list[dict[str, Any]]) -> str:
    return json.dumps(rows, indent=2, ensure_ascii=False) + "\n"

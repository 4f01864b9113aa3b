"""Keyset pages for API clients: users by username, the audit trail by id (newest first). A position is the last
key of the page before, so a page stays correct and fast however deep it is and whatever was added meanwhile."""

from __future__ import annotations

import base64
import binascii

from sqlalchemy import select

from ..extensions import db
from ..models import AdminAudit, Group, User, user_groups
from . import ServiceError


def encode_position(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_position(text: str) -> str:
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
    except (binascii.Error, ValueError):
        raise ServiceError("the page position is not valid", field="cursor") from None


def users_page(*, after: str | None = None, query: str = "", group: str | None = None,
               disabled: bool | None = None, limit: int = 50) -> tuple[list[User], str | None]:
    """Users ordered by username after the position `after`; the position of the next page, or None on the last.
    `query`: username, email or name contains it (case-insensitive)."""
    q = select(User).order_by(User.username)
    if after is not None:
        q = q.where(User.username > decode_position(after))
    text = query.strip()
    if text:
        pattern = "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(User.username.ilike(pattern, escape="\\") | User.email.ilike(pattern, escape="\\")
                    | User.first_name.ilike(pattern, escape="\\") | User.last_name.ilike(pattern, escape="\\"))
    if group is not None:
        q = q.join(user_groups, user_groups.c.user_id == User.id).join(Group, Group.id == user_groups.c.group_id) \
            .where(Group.name == group)
    if disabled is not None:
        q = q.where(User.disabled.is_(disabled))
    rows = list(db.session.scalars(q.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, encode_position(rows[-1].username) if more and rows else None


def audit_page(*, before: str | None = None, target: str | None = None,
               limit: int = 50) -> tuple[list[AdminAudit], str | None]:
    """Audit rows newest first (by id) before the position `before`; the next position, or None on the last."""
    q = select(AdminAudit).order_by(AdminAudit.id.desc())
    if before is not None:
        if not (before.isascii() and before.isdigit()) or len(before) > 18:
            raise ServiceError("the page position is not valid", field="cursor")
        q = q.where(AdminAudit.id < int(before))
    if target:
        q = q.where(AdminAudit.target == target)
    rows = list(db.session.scalars(q.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, str(rows[-1].id) if more and rows else None

"""SCIM filters and sorting as SQL: the filter's syntax tree (parsed by scim2-models) becomes a SQLAlchemy
condition on users or groups. String comparisons are case-insensitive (lower() on both sides: the same on SQLite
and PostgreSQL) except externalId, which RFC 7643 makes case-exact. An attribute the IdP cannot filter on is
refused with invalidFilter (RFC 7644 §3.4.2.2), never filtered after the query (that would break the counts)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from scim2_models import InvalidFilterException
from scim2_models.path import (
    AttrPath,
    CompareOperator,
    Comparison,
    FilterNode,
    LogicalExpr,
    LogicalOperator,
    Not,
    Present,
    ValuePath,
)
from sqlalchemy import ColumnElement, and_, exists, false, func, not_, or_, select, true

from ...models import Group, User, user_groups

Op = CompareOperator


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _string(column: Any, op: CompareOperator, value: Any, *, case_exact: bool = False) -> ColumnElement[bool]:
    if value is None:
        if op == Op.eq:
            return column.is_(None)
        if op == Op.ne:
            return column.is_not(None)
        raise InvalidFilterException(detail=f"{op.value} null is not a comparison")
    if not isinstance(value, str):
        raise InvalidFilterException(detail=f"a string attribute is compared with {value!r}")
    col = column if case_exact else func.lower(column)
    text = value if case_exact else value.lower()
    if op == Op.eq:
        return col == text
    if op == Op.ne:
        return or_(col != text, column.is_(None))
    if op == Op.co:
        return col.like(f"%{_escape_like(text)}%", escape="\\")
    if op == Op.sw:
        return col.like(f"{_escape_like(text)}%", escape="\\")
    if op == Op.ew:
        return col.like(f"%{_escape_like(text)}", escape="\\")
    return {Op.gt: col > text, Op.ge: col >= text, Op.lt: col < text, Op.le: col <= text}[op]


def _parse_time(value: Any) -> datetime:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidFilterException(detail=f"{value!r} is not a dateTime") from None
    else:
        raise InvalidFilterException(detail=f"{value!r} is not a dateTime")
    moment = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)   # 0001-01-01T00:00+05:00 is before the first representable UTC instant
    except OverflowError:
        raise InvalidFilterException(detail=f"{value!r} is out of the dateTime range") from None


def _time(column: Any, op: CompareOperator, value: Any) -> ColumnElement[bool]:
    if op in (Op.co, Op.sw, Op.ew):
        raise InvalidFilterException(detail=f"{op.value} does not apply to a dateTime")
    moment = _parse_time(value)
    return {Op.eq: column == moment, Op.ne: column != moment, Op.gt: column > moment, Op.ge: column >= moment,
            Op.lt: column < moment, Op.le: column <= moment}[op]


def _row_id(value: Any, prefix: str) -> int | None:
    """The row id in a SCIM id ("u12-<stamp>" → 12 for users, "g3-<stamp>" → 3 for groups: storage.user_id and
    group_id; the stamp is checked when the row is read, a filter matches on the number)."""
    if not isinstance(value, str) or value[:1] != prefix:
        return None
    number = value[1:].partition("-")[0]
    return int(number) if number.isascii() and number.isdigit() and len(number) < 12 else None


def _id(column: Any, op: CompareOperator, value: Any, prefix: str) -> ColumnElement[bool]:
    if op not in (Op.eq, Op.ne):
        raise InvalidFilterException(detail="id is compared with eq or ne only")
    ident = _row_id(value, prefix)
    if op == Op.eq:
        return false() if ident is None else column == ident
    return true() if ident is None else column != ident


def _bool(column: Any, op: CompareOperator, value: Any, *, negate: bool = False) -> ColumnElement[bool]:
    if op not in (Op.eq, Op.ne) or not isinstance(value, bool):
        raise InvalidFilterException(detail="a boolean is compared with eq or ne and true or false")
    wanted = (value != negate) if op == Op.eq else (value == negate)
    return column.is_(wanted)


Compare = Callable[[CompareOperator, Any], ColumnElement[bool]]


def _name(path: AttrPath, sub: str | None = None) -> str:
    """The attribute's name, lower-cased, with its sub-attribute ("emails.value"); a core URN prefix dropped."""
    attr = path.attr.lower()
    sub_attr = (sub or path.sub_attr or "").lower()
    return f"{attr}.{sub_attr}" if sub_attr else attr


_USER_LAST_MODIFIED = func.coalesce(User.updated_at, User.created_at)
_GROUP_LAST_MODIFIED = func.coalesce(Group.updated_at, Group.created_at)

_USER_ATTRS: dict[str, tuple[Compare, ColumnElement[bool]]] = {
    "id": (lambda op, v: _id(User.id, op, v, "u"), true()),
    "username": (lambda op, v: _string(User.username, op, v), true()),
    "externalid": (lambda op, v: _string(User.external_id, op, v, case_exact=True), User.external_id.is_not(None)),
    "emails": (lambda op, v: _string(User.email, op, v), User.email != ""),
    "emails.value": (lambda op, v: _string(User.email, op, v), User.email != ""),
    "name.givenname": (lambda op, v: _string(User.first_name, op, v), User.first_name != ""),
    "name.familyname": (lambda op, v: _string(User.last_name, op, v), User.last_name != ""),
    "active": (lambda op, v: _bool(User.disabled, op, v, negate=True), true()),
    "meta.lastmodified": (lambda op, v: _time(_USER_LAST_MODIFIED, op, v), true()),
    "meta.created": (lambda op, v: _time(User.created_at, op, v), true()),
}


def _member(op: CompareOperator, value: Any) -> ColumnElement[bool]:
    if op != Op.eq:
        raise InvalidFilterException(detail="members are compared with eq only")
    ident = _row_id(value, "u")
    if ident is None:
        return false()
    return exists().where(user_groups.c.group_id == Group.id, user_groups.c.user_id == ident)


_GROUP_ATTRS: dict[str, tuple[Compare, ColumnElement[bool]]] = {
    "id": (lambda op, v: _id(Group.id, op, v, "g"), true()),
    "displayname": (lambda op, v: _string(Group.name, op, v), true()),
    "externalid": (lambda op, v: _string(Group.external_id, op, v, case_exact=True), Group.external_id.is_not(None)),
    "members": (_member, exists().where(user_groups.c.group_id == Group.id)),
    "members.value": (_member, exists().where(user_groups.c.group_id == Group.id)),
    "meta.lastmodified": (lambda op, v: _time(_GROUP_LAST_MODIFIED, op, v), true()),
    "meta.created": (lambda op, v: _time(Group.created_at, op, v), true()),
}


class _Translator:
    def __init__(self, attrs: dict[str, tuple[Compare, ColumnElement[bool]]]) -> None:
        self.attrs = attrs

    def _lookup(self, name: str) -> tuple[Compare, ColumnElement[bool]]:
        found = self.attrs.get(name)
        if found is None:
            raise InvalidFilterException(detail=f"filtering on {name!r} is not supported here (see the README)")
        return found

    def visit(self, node: FilterNode, prefix: str | None = None) -> ColumnElement[bool]:
        if isinstance(node, LogicalExpr):
            parts = [self.visit(t, prefix) for t in node.terms]
            return and_(*parts) if node.op == LogicalOperator.and_ else or_(*parts)
        if isinstance(node, Not):
            return not_(self.visit(node.expr, prefix))
        if isinstance(node, Comparison):
            compare, _present = self._lookup(self._full(node.attr_path, prefix))
            return compare(node.op, node.value)
        if isinstance(node, Present):
            return self._lookup(self._full(node.attr_path, prefix))[1]
        if isinstance(node, ValuePath):
            if node.sub_attr is not None:
                raise InvalidFilterException(detail="a filter takes no sub-attribute after [...]")
            return self.visit(node.val_filter, node.attr_path.attr)
        raise InvalidFilterException(detail="this filter is not supported")

    @staticmethod
    def _full(path: AttrPath, prefix: str | None) -> str:
        if prefix is not None:
            return f"{prefix.lower()}.{path.attr.lower()}"
        return _name(path)


MAX_FILTER_TERMS = 100   # comparisons in one filter (a longer one would pass SQLite's expression-depth limit)


def _terms(node: Any) -> int:
    if isinstance(node, LogicalExpr):
        return sum(_terms(t) for t in node.terms)
    if isinstance(node, Not):
        return _terms(node.expr)
    return 1


def _checked(node: FilterNode) -> FilterNode:
    if _terms(node) > MAX_FILTER_TERMS:
        raise InvalidFilterException(detail=f"a filter may hold at most {MAX_FILTER_TERMS} comparisons")
    return node


def user_condition(node: FilterNode) -> ColumnElement[bool]:
    return _Translator(_USER_ATTRS).visit(_checked(node))


def group_condition(node: FilterNode) -> ColumnElement[bool]:
    return _Translator(_GROUP_ATTRS).visit(_checked(node))


_USER_SORT: dict[str, Any] = {
    "id": User.id, "username": func.lower(User.username), "externalid": User.external_id,
    "emails": func.lower(User.email), "emails.value": func.lower(User.email),
    "name.givenname": func.lower(User.first_name), "name.familyname": func.lower(User.last_name),
    "active": User.disabled, "meta.lastmodified": _USER_LAST_MODIFIED, "meta.created": User.created_at,
}
_GROUP_SORT: dict[str, Any] = {
    "id": Group.id, "displayname": func.lower(Group.name), "externalid": Group.external_id,
    "meta.lastmodified": _GROUP_LAST_MODIFIED, "meta.created": Group.created_at,
}


def sort_column(path_text: str | None, *, group: bool) -> Any | None:
    """The column a `sortBy` path orders by; None when it is not sortable here (the default order is kept)."""
    if not path_text:
        return None
    text = path_text.rsplit(":", 1)[-1] if path_text.lower().startswith("urn:") else path_text
    return (_GROUP_SORT if group else _USER_SORT).get(text.lower())


__all__ = ["group_condition", "select", "sort_column", "user_condition"]

"""The SQL storage behind /scim/v2: scim2-server's ScimStorage over the users and groups tables. Reads build SCIM
resources from rows; writes go through the user, group and field services (validation, audit with the token's
actor, version bumps and lifecycle events), so a SCIM change is the same change as one made in the console."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from scim2_models import (
    ConflictException,
    ForbiddenException,
    InvalidFilterException,
    InvalidValueException,
    NotFoundException,
    PreconditionFailedException,
    Resource,
    ResourceType,
    ResponseParameters,
    SCIMException,
    SearchRequest,
    UniquenessException,
)
from scim2_server.storage import ScimStorage, SearchPage
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from ...extensions import db
from ...models import Group, User
from .. import ServiceError, org
from .. import users as users_svc
from ..accounts import FormErrors, UserInput, store_password, update_user
from ..user_fields import set_user_fields
from .query import group_condition, sort_column, user_condition
from .schema import ENTERPRISE_URN, GROUP_URN, IDP_URN, USER_URN, ScimSchemas

Hasher = Callable[[str], str]


def etag(version: int | None) -> str:
    return f'W/"{version or 1}"'


def _stamp(created_at: datetime) -> str:
    """The creation instant in base 36 (microseconds): part of the SCIM id, so an id is never reassigned even
    where the database reuses a deleted row's number (SQLite reuses the highest one)."""
    micros = int(created_at.timestamp() * 1_000_000)
    digits = ""
    while True:
        micros, rest = divmod(micros, 36)
        digits = "0123456789abcdefghijklmnopqrstuvwxyz"[rest] + digits
        if not micros:
            return digits


def user_id(user: User) -> str:
    """The SCIM id of a user, "u<row id>-<creation stamp>" (unique across users and groups, RFC 7643 §3.1)."""
    return f"u{user.id}-{_stamp(user.created_at)}"


def group_id(group: Group) -> str:
    return f"g{group.id}-{_stamp(group.created_at)}"


def parse_id(resource_id: str, prefix: str) -> tuple[int, str] | None:
    """(row id, stamp) of a SCIM id of the kind `prefix` ("u" or "g"), or None."""
    number, _, stamp = resource_id[1:].partition("-") if resource_id[:1] == prefix else ("", "", "")
    if not (number.isascii() and number.isdigit() and len(number) < 12 and stamp.isascii() and stamp.isalnum()):
        return None
    return int(number), stamp


def _find(model: Any, resource_id: str, prefix: str, *, lock: bool = False) -> Any:
    parsed = parse_id(resource_id, prefix)
    if parsed is None:
        return None
    query = select(model).where(model.id == parsed[0])
    row = db.session.scalar(query.with_for_update() if lock else query)
    return row if row is not None and _stamp(row.created_at) == parsed[1] else None


def _refusal(exc: ServiceError) -> SCIMException:
    """A service's refusal as the SCIM error a client understands (RFC 7644 §3.12)."""
    message = str(exc)
    if isinstance(exc, FormErrors) and any("already held" in m for m in exc.errors.values()):
        return UniquenessException(detail=message)
    if "already exists" in message or "belongs to another" in message or "already taken" in message:
        return UniquenessException(detail=message)
    if "access policy" in message or "last enabled admin" in message:
        return ConflictException(detail=message)
    return InvalidValueException(detail=message)


def emails_of(user: User) -> list[dict[str, Any]]:
    """The SCIM emails: the list the client wrote while its primary (or first) address is still `email`;
    otherwise (the address was changed in the console or CLI) just `email`, primary."""
    stored = user.scim_emails or []
    if stored:
        main = next((e for e in stored if e.get("primary")), stored[0])
        if str(main.get("value", "")).lower() == user.email.lower():
            return [dict(e) for e in stored]
    return [{"value": user.email, "primary": True}] if user.email else []


def _main_email(emails: list[dict[str, Any]]) -> str | None:
    if not emails:
        return None
    return str(next((e for e in emails if e.get("primary")), emails[0]).get("value") or "") or None


def _refuse_admin(user: User) -> None:
    """Administrators are not managed over SCIM: a provisioning token (an HR feed) must not be able to take over,
    disable or delete an admin account (its password, name, emails, state). Reading them is allowed."""
    if user.is_admin:
        raise ForbiddenException(detail=f"{user.username} is an administrator: administrators are managed in the "
                                        "console or the CLI, not over SCIM")


class SqlStorage(ScimStorage):
    """Users and groups, as scim2-server asks for them. `hasher` hashes a password a client sets."""

    def __init__(self, schemas: ScimSchemas, hasher: Hasher) -> None:
        self.schemas = schemas
        self.hasher = hasher

    # ------------------------------------------------------------ reading

    def _user_row(self, resource_id: str, *, lock: bool = False) -> User:
        user: User | None = _find(User, resource_id, "u", lock=lock)
        if user is None:
            raise NotFoundException(detail=f"no user {resource_id}")
        return user

    def _group_row(self, resource_id: str, *, lock: bool = False) -> Group:
        group: Group | None = _find(Group, resource_id, "g", lock=lock)
        if group is None:
            raise NotFoundException(detail=f"no group {resource_id}")
        return group

    def user_resource(self, user: User) -> Resource[Any]:
        data: dict[str, Any] = {
            "schemas": [USER_URN], "id": user_id(user), "userName": user.username,
            "displayName": f"{user.first_name} {user.last_name}".strip() or user.username,
            "active": not user.disabled,
            "meta": {"resourceType": "User", "created": user.created_at,
                     "lastModified": user.updated_at or user.created_at, "version": etag(user.version)},
        }
        if user.external_id:
            data["externalId"] = user.external_id
        name = {k: v for k, v in (("givenName", user.first_name), ("familyName", user.last_name)) if v}
        if name:
            data["name"] = name
        emails = emails_of(user)
        if emails:
            data["emails"] = emails
        if user.groups:
            data["groups"] = [{"value": group_id(g), "$ref": f"Groups/{group_id(g)}", "display": g.name}
                              for g in sorted(user.groups, key=lambda g: g.id)]
        values = user.custom_fields or {}
        enterprise: dict[str, Any] = {}
        for attr, fdef in self.schemas.enterprise.items():
            if values.get(fdef.name) is not None:
                enterprise[attr] = {"value": str(values[fdef.name])} if attr == "manager" else values[fdef.name]
        if enterprise:
            data["schemas"].append(ENTERPRISE_URN)
            data[ENTERPRISE_URN] = enterprise
        custom = {name: values[name] for name in self.schemas.custom if values.get(name) is not None}
        if custom:
            data["schemas"].append(IDP_URN)
            data[IDP_URN] = custom
        return self.schemas.user_model.model_validate(data)

    def group_resource(self, group: Group) -> Resource[Any]:
        data: dict[str, Any] = {
            "schemas": [GROUP_URN], "id": group_id(group), "displayName": group.name,
            "meta": {"resourceType": "Group", "created": group.created_at,
                     "lastModified": group.updated_at or group.created_at, "version": etag(group.version)},
        }
        if group.external_id:
            data["externalId"] = group.external_id
        members = sorted(group.members, key=lambda u: u.id)
        if members:
            data["members"] = [{"value": user_id(u), "$ref": f"Users/{user_id(u)}"}
                               for u in members]
        return self.schemas.group_model.model_validate(data)

    def get(self, resource_type: ResourceType, resource_id: str, *,
            response_parameters: ResponseParameters[Any] | None = None) -> Resource[Any]:
        if resource_type.name == "Group":
            return self.group_resource(self._group_row(resource_id))
        return self.user_resource(self._user_row(resource_id))

    def search(self, resource_types: list[ResourceType], search_request: SearchRequest[Any], *,
               position: Any = None) -> SearchPage:
        """Filter, sort and page in SQL. At the root (several types) the users come first, then the groups, and
        an attribute one type does not have matches none of its resources (RFC 7644 §3.4.2.1)."""
        root = len(resource_types) > 1
        queries = []
        for resource_type in resource_types:
            is_group = resource_type.name == "Group"
            try:
                queries.append((is_group, self._query(is_group, search_request)))
            except InvalidFilterException:
                if not root:
                    raise
        start = search_request.start_index_0 or 0
        left = search_request.count
        total = 0
        found: list[Resource[Any]] = []
        for is_group, (query, count_query) in queries:
            matched = db.session.scalar(count_query) or 0
            total += matched
            if left is not None and left <= 0 or start >= matched:
                start = max(0, start - matched)
                continue
            page = query.offset(start)
            if left is not None:
                page = page.limit(left)
            rows = list(db.session.scalars(page))
            build = self.group_resource if is_group else self.user_resource
            found.extend(build(r) for r in rows)
            start = 0
            if left is not None:
                left -= len(rows)
        return SearchPage(total, found)

    @staticmethod
    def _query(is_group: bool, search_request: SearchRequest[Any]) -> tuple[Any, Any]:
        model: Any = Group if is_group else User
        query = select(model)
        count_query = select(func.count()).select_from(model)
        if search_request.filter is not None:
            node = search_request.filter.ast
            condition = group_condition(node) if is_group else user_condition(node)
            query, count_query = query.where(condition), count_query.where(condition)
        column = sort_column(str(search_request.sort_by) if search_request.sort_by else None, group=is_group)
        descending = search_request.sort_order == SearchRequest.SortOrder.descending
        if column is not None:
            query = query.order_by(column.desc() if descending else column.asc(), model.id)
        else:
            query = query.order_by(model.id)
        return query, count_query

    # ------------------------------------------------------------ writing

    def create(self, resource_type: ResourceType, resource: Resource[Any]) -> Resource[Any]:
        try:
            if resource_type.name == "Group":
                return self.group_resource(self._write_group(None, resource))
            return self.user_resource(self._write_user(None, resource))
        except ServiceError as exc:
            raise _refusal(exc) from None
        except IntegrityError:
            raise UniquenessException(detail="a unique value is already taken") from None

    def update(self, resource_type: ResourceType, resource: Resource[Any], *,
               expected_version: str | None = None) -> Resource[Any]:
        is_group = resource_type.name == "Group"
        row: Any = (self._group_row if is_group else self._user_row)(str(resource.id), lock=True)
        if expected_version is not None and expected_version != etag(row.version):
            raise PreconditionFailedException(detail="the resource changed meanwhile")
        if not is_group:
            _refuse_admin(row)
        try:
            if is_group:
                return self.group_resource(self._write_group(row, resource))
            return self.user_resource(self._write_user(row, resource))
        except ServiceError as exc:
            raise _refusal(exc) from None
        except IntegrityError:
            raise UniquenessException(detail="a unique value is already taken") from None

    def delete(self, resource_type: ResourceType, resource_id: str, *, expected_version: str | None = None) -> None:
        is_group = resource_type.name == "Group"
        row: Any = (self._group_row if is_group else self._user_row)(resource_id, lock=True)
        if expected_version is not None and expected_version != etag(row.version):
            raise PreconditionFailedException(detail="the resource changed meanwhile")
        if not is_group:
            _refuse_admin(row)
        try:
            if is_group:
                users_svc.remove_group(row.name)
            elif org.scim_delete() == "delete":
                users_svc.delete_user(row)
            else:
                users_svc.set_disabled(row, True)
        except ServiceError as exc:
            raise _refusal(exc) from None

    def _write_user(self, user: User | None, resource: Resource[Any]) -> User:
        """Create (`user` None) or replace a user from a validated resource: every attribute the schema publishes
        is set, an absent one is cleared (PUT semantics; PATCH arrives here already applied)."""
        username = str(getattr(resource, "user_name", None) or "").strip()
        if not username:
            raise InvalidValueException(detail="userName is required")
        name = getattr(resource, "name", None)
        first = str(getattr(name, "given_name", None) or "") if name is not None else ""
        last = str(getattr(name, "family_name", None) or "") if name is not None else ""
        emails = [{k: v for k, v in (("value", e.value), ("type", e.type), ("primary", e.primary))
                   if v is not None} for e in (getattr(resource, "emails", None) or [])]
        emails = [e for e in emails if e.get("value")]
        if sum(1 for e in emails if e.get("primary")) > 1:
            raise InvalidValueException(detail="at most one email may be primary")
        email = _main_email(emails)
        if email is None:
            raise InvalidValueException(detail="emails: at least one address is needed")
        active = getattr(resource, "active", None)
        password = getattr(resource, "password", None)
        if password is not None:
            users_svc.validate_password(str(password))
        clash = db.session.scalar(select(User.id).where(func.lower(User.username) == username.lower(),
                                                        User.id != (user.id if user is not None else -1)))
        if clash is not None:
            raise UniquenessException(detail=f"user {username!r} already exists")
        if user is None:
            user = users_svc.add_user(username, email=email, password_hash=None, first_name=first, last_name=last)
        else:
            update_user(user, UserInput(email=email, first_name=first, last_name=last,
                                        groups=tuple(user.group_names), is_admin=user.is_admin))
        users_svc.set_identity(user, username=username, external_id=getattr(resource, "external_id", None),
                               scim_emails=emails)
        if password is not None:   # as an admin's reset: the user's sessions end (a compromise is contained)
            store_password(user, self.hasher(str(password)), "user.password_reset", None)
        users_svc.set_disabled(user, active is False)
        set_user_fields(user, self._field_values(resource))
        db.session.flush()
        return user

    def _field_values(self, resource: Resource[Any]) -> dict[str, Any]:
        """{custom field: raw value} for every field the two extensions map (None clears)."""
        values: dict[str, Any] = {}
        if self.schemas.enterprise_model is not None:
            ext = resource[self.schemas.enterprise_model]
            for attr, fdef in self.schemas.enterprise.items():
                value = None
                if ext is not None:
                    value = getattr(ext, _snake(attr), None)
                    if attr == "manager" and value is not None:
                        value = getattr(value, "value", None)
                values[fdef.name] = value
        if self.schemas.idp_model is not None:
            ext = resource[self.schemas.idp_model]
            for name in self.schemas.custom:
                values[name] = getattr(ext, name, None) if ext is not None else None
        return values

    def _write_group(self, group: Group | None, resource: Resource[Any]) -> Group:
        name = str(getattr(resource, "display_name", None) or "").strip()
        if not name:
            raise InvalidValueException(detail="displayName is required")
        members: list[User] = []
        for member in getattr(resource, "members", None) or []:
            value = str(member.value or "")
            user = _find(User, value, "u")
            if user is None:
                raise InvalidValueException(detail=f"members: no user {value!r} (groups do not nest)")
            if user not in members:
                members.append(user)
        if group is None:
            if db.session.scalar(select(Group.id).where(Group.name == name)) is not None:
                raise UniquenessException(detail=f"group {name!r} already exists")
            group = users_svc.add_group(name)
            db.session.flush()
        users_svc.set_group_identity(group, name=name, external_id=getattr(resource, "external_id", None))
        users_svc.set_members(group, members)
        db.session.flush()
        return group


def _snake(attr: str) -> str:
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in attr)

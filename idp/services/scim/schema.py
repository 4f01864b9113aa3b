"""The SCIM schemas and resource types the IdP serves, built from what it stores.

Only attributes the IdP keeps are published (a client reading the schema sees exactly what round-trips):
User: userName, name.givenName/familyName, displayName (read-only: "given family", or the userName), active,
emails (value, type, primary), password (write-only), groups (read-only), externalId. Group: displayName,
members (value, $ref), externalId. Two extensions, built from the admin-defined user fields:
the enterprise extension (employeeNumber, department, costCenter, manager.value, each only when a custom field
of the matching name exists) and `urn:ietf:params:scim:schemas:extension:idp:2.0:User` with every other custom
field (string → string, list → multi-valued string, bool → boolean, date → string "YYYY-MM-DD").
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from scim2_models import (
    Attribute,
    AuthenticationScheme,
    Bulk,
    CaseExact,
    ChangePassword,
    EnterpriseUser,
    ETag,
    Extension,
    External,
    Filter,
    Group,
    Mutability,
    Patch,
    Reference,
    Required,
    Resource,
    ResourceType,
    Schema,
    ScimPolicy,
    ScimProvider,
    ServiceProviderConfig,
    Sort,
    Uniqueness,
    User,
)

from ...attributes.schema import FieldDef, FieldType

USER_URN = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_URN = "urn:ietf:params:scim:schemas:core:2.0:Group"
ENTERPRISE_URN = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
IDP_URN = "urn:ietf:params:scim:schemas:extension:idp:2.0:User"
MAX_RESULTS = 200          # `count` is capped here (RFC 7644 §3.4.2.4: the server may return fewer)

# What the IdP tolerates from clients: attributes it does not keep are ignored rather than refused (clients send
# nickName, title, phoneNumbers...), a PATCH "remove" may carry the value it removes, and a PATCH path filter that
# matches nothing creates the entry it describes (both as Microsoft Entra sends them).
POLICY = ScimPolicy(unknown=ScimPolicy.Unknown.ignore, remove_value_as_filter=ScimPolicy.RemoveValue.apply,
                    unmatched_path_filter=ScimPolicy.UnmatchedPathFilter.create)

# enterprise attribute -> the custom field it is stored in (when an admin defined a field of that name)
ENTERPRISE_FIELDS: dict[str, str] = {"employeeNumber": "employee_number", "department": "department",
                                     "costCenter": "cost_center", "manager": "manager"}

# which sub-attributes of the core schemas are kept, and which of them the IdP computes (read-only)
_USER_KEEP: dict[str, tuple[str, ...] | None] = {
    "userName": None, "name": ("givenName", "familyName"), "displayName": None, "active": None,
    "password": None, "emails": ("value", "type", "primary"), "groups": ("value", "$ref", "display"),
}
_USER_READ_ONLY = {"displayName"}
# members carry no `display`: a client reading back what it wrote gets exactly that (the username is one GET away)
_GROUP_KEEP: dict[str, tuple[str, ...] | None] = {"displayName": None, "members": ("value", "$ref")}


def _subset(schema: Schema, keep: dict[str, tuple[str, ...] | None], read_only: set[str] | None = None,
            description: str | None = None) -> Schema:
    attrs = []
    for attr in schema.attributes or []:
        name = attr.name
        if name is None or name not in keep:
            continue
        attr = attr.model_copy(deep=True)
        subs = keep[name]
        if subs is not None and attr.sub_attributes:
            attr.sub_attributes = [s for s in attr.sub_attributes if s.name in subs]
        if name in (read_only or set()):
            attr.mutability = Mutability.read_only
        attrs.append(attr)
    out = schema.model_copy(deep=True)
    out.attributes = attrs
    if description:
        out.description = description
    return out


def _user_schema() -> Schema:
    schema = _subset(User.to_schema(), _USER_KEEP, _USER_READ_ONLY, "User Account")
    for attr in schema.attributes or []:
        if attr.name == "emails":   # every user of the IdP has an address (its primary value)
            attr.required = Required.true
            for sub in attr.sub_attributes or []:
                if sub.name == "value":
                    sub.required = Required.true
            attr.description = "Email addresses; the primary one (or the first) is the user's address in the IdP."
        if attr.name == "active":
            # an account is always enabled or disabled: it cannot be "removed" (a request that leaves it out of
            # a POST or PUT means active, see web.scim.default_active)
            attr.required = Required.true
            attr.description = "false: the account is disabled (its sessions end, its OIDC grants are revoked)."
        if attr.name == "userName":
            attr.description = ("Unique identifier for the User (case-insensitive): letters, digits and . _ @ + -, "
                                "at most 150 characters.")
    return schema


def _group_schema() -> Schema:
    schema = _subset(Group.to_schema(), _GROUP_KEEP, description="Group")
    for attr in schema.attributes or []:
        if attr.name == "members":
            for sub in attr.sub_attributes or []:
                if sub.name == "$ref":
                    sub.reference_types = ["User"]      # no nested groups
            attr.description = "The users in the group (groups do not nest)."
    return schema


def _custom_attribute(fdef: FieldDef) -> Attribute:
    multi = fdef.type == FieldType.LIST
    scim_type = Attribute.Type.boolean if fdef.type == FieldType.BOOL else Attribute.Type.string
    text = fdef.label or fdef.name
    if fdef.type == FieldType.DATE:
        text += " (a date, YYYY-MM-DD)"
    return Attribute(name=fdef.name, type=scim_type, multi_valued=multi, description=text,
                     required=Required.false, case_exact=CaseExact.false, mutability=Mutability.read_write,
                     uniqueness=Uniqueness.server if fdef.unique else Uniqueness.none)


def _enterprise_schema(names: set[str]) -> Schema | None:
    """The enterprise extension, cut to the attributes stored in a custom field (None: no such field)."""
    keep: dict[str, tuple[str, ...] | None] = {a: ("value",) if a == "manager" else None
                                               for a, f in ENTERPRISE_FIELDS.items() if f in names}
    if not keep:
        return None
    return _subset(EnterpriseUser.to_schema(), keep)


def _idp_schema(fields: Sequence[FieldDef]) -> Schema | None:
    if not fields:
        return None
    return Schema(id=IDP_URN, name="IdpUser",
                  description="The admin-defined user fields of this IdP (`idp fields list`), by their names.",
                  attributes=[_custom_attribute(f) for f in fields])


@dataclass(frozen=True)
class ScimSchemas:
    """One field schema's worth of SCIM description: the provider (schemas, resource types, configuration) and
    which custom field each extension attribute is stored in."""

    provider: ScimProvider
    user_model: type[Resource[Any]]
    group_model: type[Resource[Any]]
    enterprise: dict[str, FieldDef] = field(default_factory=dict)   # enterprise attribute -> custom field
    custom: dict[str, FieldDef] = field(default_factory=dict)       # idp extension attribute -> custom field
    enterprise_model: type[Extension] | None = None
    idp_model: type[Extension] | None = None


def service_provider_config(documentation_uri: str | None) -> ServiceProviderConfig:
    return ServiceProviderConfig(
        documentation_uri=Reference[External](documentation_uri) if documentation_uri else None,
        patch=Patch(supported=True),
        bulk=Bulk(supported=False, max_operations=0, max_payload_size=0),
        filter=Filter(supported=True, max_results=MAX_RESULTS),
        change_password=ChangePassword(supported=False),
        sort=Sort(supported=True),
        etag=ETag(supported=True),
        authentication_schemes=[AuthenticationScheme(
            type=AuthenticationScheme.Type.oauthbearertoken, name="OAuth Bearer Token", primary=True,
            description="A bearer token an admin issued with the scope `scim` (`idp tokens api create NAME "
                        "--scope scim`)",
            spec_uri=Reference[External]("https://www.rfc-editor.org/rfc/rfc6750"))],
    )


def build_schemas(custom_fields: Sequence[FieldDef], documentation_uri: str | None = None) -> ScimSchemas:
    names = {f.name: f for f in custom_fields}
    enterprise_schema = _enterprise_schema(set(names))
    enterprise = {a: names[f] for a, f in ENTERPRISE_FIELDS.items() if f in names}
    mapped = {f.name for f in enterprise.values()}
    idp_fields = [f for f in custom_fields if f.name not in mapped]
    idp_schema = _idp_schema(idp_fields)

    user_base = Resource.from_schema(_user_schema())
    group_model = Resource.from_schema(_group_schema())
    models: list[Any] = [user_base, group_model]
    extensions: list[type[Extension]] = []
    enterprise_model = idp_model = None
    if enterprise_schema is not None:
        enterprise_model = Extension.from_schema(enterprise_schema)
        extensions.append(enterprise_model)
    if idp_schema is not None:
        idp_model = Extension.from_schema(idp_schema)
        extensions.append(idp_model)
    models.extend(extensions)
    user_type = ResourceType.model_validate({
        "id": "User", "name": "User", "endpoint": "/Users", "description": "User Account", "schema": USER_URN,
        "schemaExtensions": [{"schema": str(e.__schema__), "required": False} for e in extensions]})
    group_type = ResourceType.model_validate({"id": "Group", "name": "Group", "endpoint": "/Groups",
                                              "description": "Group", "schema": GROUP_URN})
    provider = ScimProvider(models=models, resource_types=[user_type, group_type],
                            config=service_provider_config(documentation_uri), policy=POLICY)
    user_model = cast(type[Resource[Any]], provider.model_for("User"))
    return ScimSchemas(provider=provider, user_model=user_model, group_model=group_model, enterprise=enterprise,
                       custom={f.name: f for f in idp_fields}, enterprise_model=enterprise_model,
                       idp_model=idp_model)


_lock = threading.Lock()
_built: dict[tuple[FieldDef, ...], ScimSchemas] = {}


def schemas_for(custom_fields: Sequence[FieldDef]) -> ScimSchemas:
    """The (cached) description for this set of custom fields: built again only when the fields change."""
    key = tuple(custom_fields)
    with _lock:
        found = _built.get(key)
        if found is None:
            if len(_built) > 16:
                _built.clear()
            found = _built[key] = build_schemas(custom_fields)
        return found

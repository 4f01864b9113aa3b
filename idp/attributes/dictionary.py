"""The built-in attribute dictionary: the names SPs ask for in RequestedAttribute (LDAP / eduPerson OIDs, their
friendly names, Microsoft's claim URIs, bare words) and the user field each one is read from; the basic profile
a new app releases when its metadata requests nothing.

OIDs from RFC 4519 (LDAP user schema), RFC 2798 (inetOrgPerson), eduPerson (internet2) and the Active Directory
schema; the URN form is "urn:oid:<oid>" with NameFormat uri (saml-profiles §2.7 / MACE-Dir SAML attribute profile).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..saml.constants import ATTRNAME_BASIC, ATTRNAME_UNSPECIFIED, ATTRNAME_URI

# what admins type (--attribute-format NAME=uri|basic|unspecified) -> the NameFormat URI
NAME_FORMATS = {"uri": ATTRNAME_URI, "basic": ATTRNAME_BASIC, "unspecified": ATTRNAME_UNSPECIFIED}


@dataclass(frozen=True, slots=True)
class KnownAttribute:
    oid_name: str          # urn:oid:...
    friendly_name: str     # the LDAP / eduPerson short name
    field: str             # the user field it is read from


KNOWN: tuple[KnownAttribute, ...] = (
    KnownAttribute("urn:oid:0.9.2342.19200300.100.1.3", "mail", "email"),
    KnownAttribute("urn:oid:2.5.4.42", "givenName", "first_name"),
    KnownAttribute("urn:oid:2.5.4.4", "sn", "last_name"),
    KnownAttribute("urn:oid:2.16.840.1.113730.3.1.241", "displayName", "display_name"),
    KnownAttribute("urn:oid:2.5.4.3", "cn", "display_name"),
    KnownAttribute("urn:oid:0.9.2342.19200300.100.1.1", "uid", "username"),
    KnownAttribute("urn:oid:1.3.6.1.4.1.5923.1.1.1.6", "eduPersonPrincipalName", "username"),
    KnownAttribute("urn:oid:1.2.840.113556.1.2.102", "memberOf", "groups"),
    KnownAttribute("urn:oid:1.3.6.1.4.1.5923.1.5.1.1", "isMemberOf", "groups"),
    KnownAttribute("urn:oid:2.16.840.1.113730.3.1.3", "employeeNumber", "employee_number"),
    KnownAttribute("urn:oid:2.5.4.11", "ou", "department"),
    KnownAttribute("urn:oid:2.16.840.1.113730.3.1.4", "employeeType", "employee_type"),
)

# Other spellings SPs use, lower-cased -> field (Microsoft claim URIs, bare words, common product names).
_ALIASES: dict[str, str] = {
    "email": "email", "emailaddress": "email", "e-mail": "email", "user.email": "email",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/emailaddress": "email",
    "firstname": "first_name", "first_name": "first_name", "given_name": "first_name", "user.firstname": "first_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/givenname": "first_name",
    "lastname": "last_name", "last_name": "last_name", "surname": "last_name", "family_name": "last_name",
    "user.lastname": "last_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/surname": "last_name",
    "name": "display_name", "display_name": "display_name", "fullname": "display_name",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name": "display_name",
    "username": "username", "user_name": "username", "login": "username", "userid": "username",
    "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn": "username",
    "groups": "groups", "group": "groups", "roles": "groups", "role": "groups",
    "http://schemas.xmlsoap.org/claims/group": "groups",
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": "groups",
    "employee_number": "employee_number", "employeeid": "employee_number",
    "department": "department",
}


def field_for(name: str, friendly_name: str | None = None) -> str | None:
    """The user field a requested attribute name (or its FriendlyName) is read from, or None if unknown.
    The field may be an admin-defined one (employee_number, department): the caller checks it exists."""
    for known in KNOWN:
        if name == known.oid_name:
            return known.field
    for candidate in (name, friendly_name):
        if not candidate:
            continue
        low = candidate.strip().lower()
        for known in KNOWN:
            if low == known.friendly_name.lower():
                return known.field
        if low in _ALIASES:
            return _ALIASES[low]
    return None


# The basic profile: released by a new app whose metadata requests no attribute (name, FriendlyName, field).
BASIC_PROFILE: tuple[KnownAttribute, ...] = tuple(k for k in KNOWN if k.friendly_name in
                                                  ("mail", "givenName", "sn", "displayName"))

"""Inbound SCIM 2.0 (RFC 7643 / RFC 7644): the schemas this IdP serves, the SQL storage behind /scim/v2 and the
translation of SCIM filters into SQL. The protocol itself (parsing, PATCH, ETags, errors, paging) is
scim2-server's ScimHandler over scim2-models; this package only knows how users and groups are stored."""

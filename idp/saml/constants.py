"""SAML 2.0 and XML-DSig names used across the protocol core: each vocabulary defined once, as a StrEnum.

The values are the strings on the wire, in the database and in CLI flags; never change one. StrEnum members
compare equal to (and hash like) their strings, so values read back from storage match them as they are.
"""

from __future__ import annotations

from enum import StrEnum

NS_SAMLP = "urn:oasis:names:tc:SAML:2.0:protocol"
NS_SAML = "urn:oasis:names:tc:SAML:2.0:assertion"
NS_MD = "urn:oasis:names:tc:SAML:2.0:metadata"
NS_DS = "http://www.w3.org/2000/09/xmldsig#"
NS_XENC = "http://www.w3.org/2001/04/xmlenc#"
NS_XS = "http://www.w3.org/2001/XMLSchema"
NS_XSI = "http://www.w3.org/2001/XMLSchema-instance"
NS_XML = "http://www.w3.org/XML/1998/namespace"
XML_LANG = f"{{{NS_XML}}}lang"


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The plain string values of a vocabulary, in definition order: for CLI `click.Choice` and form choices
    (a Choice of enum members would match the members' names, not their values)."""
    return tuple(member.value for member in enum)


class Binding(StrEnum):
    """Protocol binding URIs (saml-bindings-2.0-os §3.4 HTTP-Redirect, §3.5 HTTP-POST)."""

    REDIRECT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect"
    POST = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"


class BindingName(StrEnum):
    """The binding a message arrived or leaves with, as decoded messages, parked requests and events name it."""

    REDIRECT = "redirect"
    POST = "post"

    @property
    def uri(self) -> Binding:
        return Binding[self.name]


BINDING_REDIRECT = Binding.REDIRECT
BINDING_POST = Binding.POST
# saml-bindings-2.0-os §3.2: the SOAP binding: back-channel logout to an SP's SOAP SingleLogoutService (outbound),
# and this IdP's ArtifactResolutionService (inbound). Not a member of Binding, which lists the bindings the IdP's
# SSO and SLO endpoints accept.
BINDING_SOAP = "urn:oasis:names:tc:SAML:2.0:bindings:SOAP"
# saml-bindings-2.0-os §3.6: responses by artifact (not a member of Binding either)
BINDING_ARTIFACT = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Artifact"
# the bindings an AssertionConsumerService may use for this IdP's responses
RESPONSE_BINDINGS = (Binding.POST, BINDING_ARTIFACT)
# saml-bindings-2.0-os §3.4.4.1: the only SAMLEncoding this IdP reads (also the default when absent)
URL_ENCODING_DEFLATE = "urn:oasis:names:tc:SAML:2.0:bindings:URL-Encoding:DEFLATE"


class KeyUse(StrEnum):
    """KeyDescriptor/@use (saml-metadata-2.0-os §2.4.1.1); a KeyDescriptor without it serves both."""

    SIGNING = "signing"
    ENCRYPTION = "encryption"


class InitiatedBy(StrEnum):
    """Who started an SSO or logout exchange (saml-profiles-2.0-os §4.1.1, §4.4.1), as events record it."""

    SP = "sp"
    IDP = "idp"


NAMEID_EMAIL = "urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"
NAMEID_UNSPECIFIED = "urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified"
NAMEID_PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
NAMEID_TRANSIENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:transient"
NAMEID_ENTITY = "urn:oasis:names:tc:SAML:2.0:nameid-format:entity"   # an Issuer's format (saml-core-2.0-os §8.3.6)


class NameIdFormat(StrEnum):
    """The NameID formats this IdP issues, by the short name app settings and CLI flags use (saml-core-2.0-os §8.3).

    `uri` is the format URI on the wire; `from_uri` goes back (None for a format this IdP does not issue).
    """

    EMAIL = "email"
    PERSISTENT = "persistent"
    TRANSIENT = "transient"
    UNSPECIFIED = "unspecified"

    @property
    def uri(self) -> str:
        return NAMEID_FORMATS[self]

    @classmethod
    def from_uri(cls, uri: str) -> NameIdFormat | None:
        return next((short for short, full in NAMEID_FORMATS.items() if full == uri), None)


# short name -> URI, in the order the IdP metadata lists them
NAMEID_FORMATS: dict[NameIdFormat, str] = {
    NameIdFormat.EMAIL: NAMEID_EMAIL,
    NameIdFormat.PERSISTENT: NAMEID_PERSISTENT,
    NameIdFormat.TRANSIENT: NAMEID_TRANSIENT,
    NameIdFormat.UNSPECIFIED: NAMEID_UNSPECIFIED,
}

ATTRNAME_BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
ATTRNAME_URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
ATTRNAME_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:attrname-format:unspecified"

CM_BEARER = "urn:oasis:names:tc:SAML:2.0:cm:bearer"

AC_PASSWORD_PROTECTED = "urn:oasis:names:tc:SAML:2.0:ac:classes:PasswordProtectedTransport"  # noqa: S105
AC_PASSWORD = "urn:oasis:names:tc:SAML:2.0:ac:classes:Password"  # noqa: S105
AC_UNSPECIFIED = "urn:oasis:names:tc:SAML:2.0:ac:classes:unspecified"
AC_MOBILE_TWO_FACTOR = "urn:oasis:names:tc:SAML:2.0:ac:classes:MobileTwoFactorContract"
AC_TIME_SYNC_TOKEN = "urn:oasis:names:tc:SAML:2.0:ac:classes:TimeSyncToken"  # noqa: S105
AC_REFEDS_MFA = "https://refeds.org/profile/mfa"


class AuthnContextComparison(StrEnum):
    """RequestedAuthnContext/@Comparison (saml-core-2.0-os §3.3.2.2.1); absent means exact."""

    EXACT = "exact"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    BETTER = "better"


# saml-core-2.0-os §3.2.2.2 status codes
STATUS_SUCCESS = "urn:oasis:names:tc:SAML:2.0:status:Success"
STATUS_REQUESTER = "urn:oasis:names:tc:SAML:2.0:status:Requester"
STATUS_RESPONDER = "urn:oasis:names:tc:SAML:2.0:status:Responder"
STATUS_VERSION_MISMATCH = "urn:oasis:names:tc:SAML:2.0:status:VersionMismatch"
STATUS_AUTHN_FAILED = "urn:oasis:names:tc:SAML:2.0:status:AuthnFailed"
STATUS_NO_PASSIVE = "urn:oasis:names:tc:SAML:2.0:status:NoPassive"
STATUS_NO_AUTHN_CONTEXT = "urn:oasis:names:tc:SAML:2.0:status:NoAuthnContext"
STATUS_REQUEST_DENIED = "urn:oasis:names:tc:SAML:2.0:status:RequestDenied"
STATUS_INVALID_NAMEID_POLICY = "urn:oasis:names:tc:SAML:2.0:status:InvalidNameIDPolicy"
STATUS_UNSUPPORTED_BINDING = "urn:oasis:names:tc:SAML:2.0:status:UnsupportedBinding"
STATUS_PARTIAL_LOGOUT = "urn:oasis:names:tc:SAML:2.0:status:PartialLogout"


class SignatureAlgorithm(StrEnum):
    """XML-DSig signature algorithm URIs (xmldsig-core §6.4, RFC 6931 §2.3), as app settings store them.

    `short_name` is the URI's fragment ("rsa-sha256"), the spelling of `--signature-algorithm`.
    """

    RSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256"
    RSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384"
    RSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512"
    ECDSA_SHA256 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256"
    ECDSA_SHA384 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384"
    ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
    RSA_SHA1 = "http://www.w3.org/2000/09/xmldsig#rsa-sha1"

    @property
    def short_name(self) -> str:
        return self.value.rpartition("#")[2]


# What an admin may choose per app (`--signature-algorithm`, the console), in the order offered. ECDSA-SHA512 is
# verified, and signed with when an EC key takes over an RSA-SHA512 app, but is not offered as a setting.
SELECTABLE_SIGNATURE_ALGORITHMS: tuple[SignatureAlgorithm, ...] = (
    SignatureAlgorithm.RSA_SHA256,
    SignatureAlgorithm.RSA_SHA384,
    SignatureAlgorithm.RSA_SHA512,
    SignatureAlgorithm.ECDSA_SHA256,
    SignatureAlgorithm.ECDSA_SHA384,
    SignatureAlgorithm.RSA_SHA1,
)

SIG_RSA_SHA1 = SignatureAlgorithm.RSA_SHA1
SIG_RSA_SHA256 = SignatureAlgorithm.RSA_SHA256
SIG_RSA_SHA384 = SignatureAlgorithm.RSA_SHA384
SIG_RSA_SHA512 = SignatureAlgorithm.RSA_SHA512
SIG_ECDSA_SHA256 = SignatureAlgorithm.ECDSA_SHA256
SIG_ECDSA_SHA384 = SignatureAlgorithm.ECDSA_SHA384
SIG_ECDSA_SHA512 = SignatureAlgorithm.ECDSA_SHA512


class DigestAlgorithm(StrEnum):
    """XML-DSig DigestMethod URIs (xmldsig-core §6.2, xmlenc-core §5.7.2, RFC 6931 §2.1)."""

    SHA1 = "http://www.w3.org/2000/09/xmldsig#sha1"
    SHA256 = "http://www.w3.org/2001/04/xmlenc#sha256"
    SHA384 = "http://www.w3.org/2001/04/xmldsig-more#sha384"
    SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"


DIGEST_SHA1 = DigestAlgorithm.SHA1
DIGEST_SHA256 = DigestAlgorithm.SHA256
DIGEST_SHA384 = DigestAlgorithm.SHA384
DIGEST_SHA512 = DigestAlgorithm.SHA512


class EncryptionAlgorithm(StrEnum):
    """Assertion data-encryption choices (xmlenc-core §5.2, xmlenc-core1 §5.2.4), as app settings store them.

    AES-CBC only by explicit per-app choice: CBC without integrity is open to padding-oracle attacks.
    """

    AES256_GCM = "aes256-gcm"
    AES128_GCM = "aes128-gcm"
    AES256_CBC = "aes256-cbc"


class SignMode(StrEnum):
    """What an SSO Response signs (saml-core-2.0-os §5): the Response, the Assertion, or both."""

    RESPONSE = "response"
    ASSERTION = "assertion"
    BOTH = "both"

    @property
    def signs_response(self) -> bool:
        return self is not SignMode.ASSERTION

    @property
    def signs_assertion(self) -> bool:
        return self is not SignMode.RESPONSE


TRANSFORM_ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
TRANSFORM_EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
TRANSFORM_EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"


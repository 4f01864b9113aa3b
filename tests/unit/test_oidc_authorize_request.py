"""oidc.authorize_request, oidc.acr and oidc.consent: table-driven, no app, no database."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from idp.oidc.acr import PAPE_MULTI_FACTOR, acr_claim, requested_classes
from idp.oidc.authorize_request import (
    AuthorizationRequest,
    collect_params,
    parse_authorization_request,
    read_client_params,
    redirect_uri_registered,
)
from idp.oidc.consent import consent_needed, describe_scopes
from idp.oidc.errors import InvalidRequest, OAuthError
from idp.saml.constants import AC_PASSWORD_PROTECTED, AC_REFEDS_MFA

CB = "https://rp.example.com/cb"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


@dataclass(frozen=True)
class Client:
    client_id: str = "c1"
    redirect_uris: tuple[str, ...] = (CB,)
    grant_types: tuple[str, ...] = ("authorization_code",)
    scopes: tuple[str, ...] = ("openid", "profile", "email")
    require_pkce: bool = True
    is_public: bool = False
    resources: tuple[str, ...] = ("https://api.example/orders",)


def pairs(**over: str | None) -> list[tuple[str, str]]:
    p: dict[str, str | None] = {"client_id": "c1", "redirect_uri": CB, "response_type": "code",
                                "scope": "openid profile", "code_challenge": CHALLENGE,
                                "code_challenge_method": "S256", "state": "s"}
    p.update(over)
    return [(k, v) for k, v in p.items() if v is not None]


def parse(client: Client | None = None, **over: str | None) -> AuthorizationRequest:
    return parse_authorization_request(collect_params(pairs(**over)), client or Client(), CB)


def test_openid_request_ignores_scopes_the_client_may_not_have() -> None:
    # OIDC Core 3.1.2.1: scope values not understood SHOULD be ignored (the token response says what was granted)
    assert parse(scope="openid address phone profile").scopes == ("openid", "profile")
    # ... but never the `openid` scope itself: a client without it gets an error, not a silent plain OAuth code
    for scope in ("openid", "openid profile", "openid api.read"):
        with pytest.raises(OAuthError) as exc:
            parse(Client(scopes=("api.read", "profile")), scope=scope)
        assert exc.value.error == "invalid_scope"


def test_parses_a_good_request_and_round_trips() -> None:
    req = parse(prompt="login consent", max_age="0", acr_values="a b a", nonce="n", claims_locales="de en")
    assert req.scopes == ("openid", "profile") and req.is_openid and req.prompt_login and req.prompt_consent
    assert req.max_age == 0 and req.acr_values == ("a", "b") and req.claims_locales == ("de", "en")
    assert AuthorizationRequest.from_dict(req.to_dict()) == req


@pytest.mark.parametrize(("over", "error"), [
    ({"response_type": None}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
    ({"scope": ""}, "invalid_scope"),
    ({"scope": "profile admin"}, "invalid_scope"),      # plain OAuth: a scope the client may not have is an error
    ({"code_challenge_method": None}, "invalid_request"),
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge": "x" * 42}, "invalid_request"),
    ({"code_challenge": "x" * 43 + "!"}, "invalid_request"),
    ({"prompt": "none consent"}, "invalid_request"),
    ({"prompt": "bogus"}, "invalid_request"),
    ({"max_age": "1.5"}, "invalid_request"),
    ({"max_age": "12345678901"}, "invalid_request"),
    ({"response_mode": "form_post"}, "invalid_request"),
    ({"request": "x"}, "request_not_supported"),
    ({"request_uri": "x"}, "request_uri_not_supported"),
    ({"resource": "/relative"}, "invalid_target"),
    ({"resource": "https://api.example/#frag"}, "invalid_target"),
    ({"resource": "https://api.example/other"}, "invalid_target"),       # not registered for the client
    ({"resource": "https://api.example/orders/"}, "invalid_target"),     # registered URIs match exactly
    ({"state": "a\nb"}, "invalid_request"),
])
def test_refusals(over: dict[str, str | None], error: str) -> None:
    with pytest.raises(OAuthError) as exc:
        parse(**over)
    assert exc.value.error == error


def test_registered_resources_are_accepted() -> None:
    assert parse(resource="https://api.example/orders").resources == ("https://api.example/orders",)
    with pytest.raises(OAuthError) as exc:
        parse(Client(resources=()), resource="https://api.example/orders")
    assert exc.value.error == "invalid_target"


def test_pkce_required_only_for_public_or_require_pkce() -> None:
    assert parse(Client(require_pkce=False), code_challenge=None, code_challenge_method=None).code_challenge is None
    with pytest.raises(InvalidRequest):
        parse(Client(require_pkce=False, is_public=True), code_challenge=None, code_challenge_method=None)


def test_client_without_code_grant() -> None:
    with pytest.raises(OAuthError) as exc:
        parse(Client(grant_types=("client_credentials",)))
    assert exc.value.error == "unauthorized_client"


def test_repeats_and_sizes() -> None:
    raw = collect_params([*pairs(), ("state", "t"), ("resource", "https://a.example"),
                          ("resource", "https://b.example")])
    assert raw.repeated == {"state"} and raw.state is None and raw.resources == ("https://a.example",
                                                                                 "https://b.example")
    with pytest.raises(InvalidRequest):
        parse_authorization_request(raw, Client(), CB)
    with pytest.raises(InvalidRequest):
        read_client_params(collect_params([*pairs(), ("client_id", "c2")]))
    with pytest.raises(InvalidRequest):
        read_client_params(collect_params(pairs(client_id="c" * 65)))
    with pytest.raises(InvalidRequest):
        read_client_params(collect_params(pairs(client_id=None)))
    assert collect_params([*pairs(), *((f"p{i}", "") for i in range(60))]).too_many


@pytest.mark.parametrize("uri", [CB, None, CB + "/", CB.upper(), CB + "?a=1", "https://rp.example.com:443/cb"])
def test_redirect_uri_exact(uri: str | None) -> None:
    assert redirect_uri_registered(uri, (CB,)) is (uri == CB)


def test_acr_mapping() -> None:
    assert requested_classes(["urn:unknown", PAPE_MULTI_FACTOR, AC_PASSWORD_PROTECTED]) == (AC_REFEDS_MFA,)
    assert requested_classes(["urn:unknown"]) == ()
    assert acr_claim(AC_REFEDS_MFA, [PAPE_MULTI_FACTOR]) == PAPE_MULTI_FACTOR
    assert acr_claim(AC_REFEDS_MFA, []) == AC_REFEDS_MFA


def test_consent_rules() -> None:
    assert consent_needed(["openid"], None, prompt_consent=False)
    assert not consent_needed(["openid"], ["openid", "email"], prompt_consent=False)
    assert consent_needed(["openid", "groups"], ["openid", "email"], prompt_consent=False)
    assert consent_needed(["openid"], ["openid"], prompt_consent=True)
    lines = describe_scopes(["email", "orders:read"])
    assert lines[0].text == "Your email address" and "orders:read" in lines[1].text

"""Self-check of the independent RPs against a real OpenID Provider that is not the IdP (pyoidc's provider, see
pyoidc_op.py): both RPs complete code + PKCE S256 + state + nonce with ID token validation, UserInfo, refresh and
an RP-initiated logout URL; what pyoidc's provider does not do (PKCE verification, client credentials) is checked
on the requests it received. The IdP's own round trips use the same RPs once its endpoints exist.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from tests.oidc_rp import RPError
from tests.oidc_rp.fixtures import make_oidc_rp, oidc_rp_kind  # noqa: F401
from tests.oidc_rp.pyoidc_op import USER, USERS, ReferenceOP, serve_reference_op

# Client ids and secrets are alphanumeric here: openid-client form-encodes them in HTTP Basic (RFC 6749 2.3.1,
# "-" becomes %2D) and pyoidc's provider does not decode them. The IdP must decode them (a test there covers it).
REDIRECT_URI = "http://127.0.0.1:9/cb"  # never fetched: the test reads the redirect's Location
POST_LOGOUT_URI = "http://127.0.0.1:9/bye"


@pytest.fixture(scope="module")
def reference_op() -> Iterator[ReferenceOP]:
    with serve_reference_op() as op:
        yield op


def browser_to_callback(auth_url: str, browser: requests.Session | None = None) -> str:
    """The browser part: pyoidc's provider signs the user in without a form and redirects to the RP at once."""
    answer = (browser or requests.Session()).get(auth_url, allow_redirects=False, timeout=30)
    assert answer.status_code in (302, 303), answer.text
    location = answer.headers["Location"]
    assert location.startswith(REDIRECT_URI + "?"), location
    return location


@pytest.mark.parametrize("token_auth", ["client_secret_basic", "client_secret_post"])
def test_code_pkce_userinfo_refresh_logout(reference_op, make_oidc_rp, oidc_rp_kind, token_auth):  # noqa: F811
    client_id = f"{oidc_rp_kind}{token_auth}".replace("-", "").replace("_", "")
    reference_op.register(client_id, "s3cret" + client_id, REDIRECT_URI, POST_LOGOUT_URI, token_auth)
    rp = make_oidc_rp(
        reference_op.issuer,
        client_id,
        client_secret="s3cret" + client_id,
        redirect_uri=REDIRECT_URI,
        token_auth=token_auth,
    )

    # offline_access asks for a refresh token; OIDC Core 11 requires prompt=consent with it
    auth_url = rp.start(scope="openid profile email offline_access", prompt="consent")
    sent = parse_qs(urlsplit(auth_url).query)
    assert sent["code_challenge_method"] == ["S256"]
    assert sent["state"][0] and sent["nonce"][0]

    browser = requests.Session()
    result = rp.finish(browser_to_callback(auth_url, browser))
    sub = result.claims["sub"]  # pyoidc's provider issues a hashed public subject identifier
    assert sub and sub != USER
    assert result.claims["iss"] == reference_op.issuer
    assert result.claims["aud"] in (client_id, [client_id])
    assert result.claims["nonce"] == sent["nonce"][0]
    assert {"access_token", "refresh_token", "id_token"} <= result.tokens.keys()

    # the RP proved possession of the PKCE verifier it committed to (pyoidc's provider does not check it)
    token_request = reference_op.seen("/token")[-1]
    verifier = token_request["code_verifier"][0]
    digest = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    assert digest == sent["code_challenge"][0]
    assert ("client_secret" in token_request) == (token_auth == "client_secret_post")

    info = rp.userinfo()
    assert info["sub"] == sub and info["email"] == USERS[USER]["email"]

    refreshed = rp.refresh()
    assert refreshed.tokens["access_token"] != result.tokens["access_token"]
    if refreshed.claims is not None:
        assert refreshed.claims["sub"] == sub
    assert rp.userinfo()["sub"] == sub  # the new access token works

    logout = rp.logout_url(post_logout_redirect_uri=POST_LOGOUT_URI, state="bye-state")
    assert logout.startswith(reference_op.issuer + "/end_session?")
    sent = parse_qs(urlsplit(logout).query)
    assert sent["id_token_hint"] == [refreshed.tokens.get("id_token", result.tokens["id_token"])]  # the latest
    assert sent["post_logout_redirect_uri"] == [POST_LOGOUT_URI]
    # the provider accepts it (id_token_hint, registered post-logout URI) and moves on to its logout confirmation,
    # carrying the redirect back to the RP in a JWT it signed
    answer = browser.get(logout, allow_redirects=False, timeout=30)
    assert answer.status_code == 303, answer.text
    sjwt = parse_qs(urlsplit(answer.headers["Location"]).query)["sjwt"][0]
    confirmation = reference_op.provider.unpack_signed_jwt(sjwt)
    assert confirmation["redirect_uri"] == POST_LOGOUT_URI and confirmation["state"] == "bye-state"
    assert confirmation["client_id"] == client_id


def test_tampered_callback_is_refused(reference_op, make_oidc_rp, oidc_rp_kind):  # noqa: F811
    client_id = oidc_rp_kind.replace("-", "") + "tamper"
    reference_op.register(client_id, "s3cret", REDIRECT_URI, POST_LOGOUT_URI, "client_secret_basic")
    rp = make_oidc_rp(reference_op.issuer, client_id, client_secret="s3cret", redirect_uri=REDIRECT_URI)
    callback = browser_to_callback(rp.start())
    with pytest.raises(RPError) as refused:
        rp.finish(callback.replace("state=", "state=x"))
    assert refused.value.step == "finish"


def test_client_credentials_request(reference_op, make_oidc_rp, oidc_rp_kind):  # noqa: F811
    client_id = oidc_rp_kind.replace("-", "") + "cc"
    reference_op.register(client_id, "s3cret", REDIRECT_URI, POST_LOGOUT_URI, "client_secret_basic")
    rp = make_oidc_rp(reference_op.issuer, client_id, client_secret="s3cret")
    # pyoidc's provider refuses this grant; the RP must send it and report the server's OAuth error
    with pytest.raises(RPError) as refused:
        rp.client_credentials(scope="api")
    assert refused.value.error == "unsupported_grant_type"
    sent = reference_op.seen("/token")[-1]
    assert sent["grant_type"] == ["client_credentials"] and sent["scope"] == ["api"]

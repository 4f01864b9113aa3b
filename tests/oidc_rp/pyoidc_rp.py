"""An independent OpenID Connect relying party on pyoidc (`oic` 1.7.0), with the same steps as node/rp.mjs.

pyoidc does the protocol work (discovery, JWKS, client authentication, ID token signature, iss, aud and exp).
Where pyoidc is lenient, this RP adds the check a careful RP makes, so the tests hold the IdP to it:
the callback's state must be the one sent, the ID token must carry the nonce sent (pyoidc skips a missing one),
must be signed (pyoidc accepts alg none in the code flow), the UserInfo `sub` must equal the ID token's.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from oic.oauth2.message import CCAccessTokenRequest, ErrorResponse
from oic.oic import Client
from oic.oic.message import AccessTokenResponse, AuthorizationResponse, OpenIDSchema, RegistrationResponse
from oic.utils.authn.client import CLIENT_AUTHN_METHOD
from oic.utils.settings import OicClientSettings

from tests.oidc_rp.base import RelyingParty, RPError, RPResult


class PyoidcRP(RelyingParty):
    name = "pyoidc"

    def __init__(
        self,
        issuer: str,
        client_id: str,
        client_secret: str | None = None,
        redirect_uri: str | None = None,
        token_auth: str | None = None,
    ) -> None:
        super().__init__(issuer, client_id, client_secret, redirect_uri, token_auth)
        self.client = Client(
            client_id=client_id,
            client_authn_method=CLIENT_AUTHN_METHOD,
            settings=OicClientSettings(timeout=30),
        )
        self._call("discovery", self.client.provider_config, issuer)
        registration: dict[str, Any] = {"client_id": client_id, "token_endpoint_auth_method": self.token_auth}
        if client_secret:
            registration["client_secret"] = client_secret
        if redirect_uri:
            registration["redirect_uris"] = [redirect_uri]
        self.client.store_registration_info(RegistrationResponse(**registration))
        self._request: dict[str, Any] = {}
        self._code_verifier = ""
        self.session: dict[str, Any] = {}

    @property
    def _authn_method(self) -> str:
        # pyoidc sends no client credentials at all for an empty method: a public client's client_id goes in the body
        return "" if self.token_auth == "none" else self.token_auth

    def _call(self, step: str, func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            answer = func(*args, **kwargs)
        except RPError:
            raise
        except Exception as exc:  # pyoidc raises many unrelated classes; report them the same way
            raise RPError(self.name, step, {"name": type(exc).__name__, "message": str(exc)}) from exc
        if isinstance(answer, ErrorResponse):
            raise RPError(self.name, step, {"name": "ErrorResponse", **answer.to_dict()})
        return answer

    def start(self, scope: str = "openid", **params: Any) -> str:
        args, self._code_verifier = self.client.add_code_challenge()  # S256 unless configured otherwise
        request: dict[str, Any] = {
            **{k: str(v) for k, v in params.items()},
            "response_type": "code",
            "scope": scope.split(),
            "state": self._random(),
            "nonce": self._random(),
            "redirect_uri": self.redirect_uri,
            **args,
        }
        self._request = request
        areq = self.client.construct_AuthorizationRequest(request_args=dict(request))
        return str(areq.request(self.client.authorization_endpoint))

    def finish(self, callback_url: str) -> RPResult:
        query = urlsplit(callback_url).query
        aresp = self._call(
            "finish", self.client.parse_response, AuthorizationResponse, info=query, sformat="urlencoded"
        )
        if aresp.get("state") != self._request["state"]:
            raise RPError(self.name, "finish", {"name": "StateMismatch", "message": "state differs from the request"})
        if "iss" in aresp and aresp["iss"] != self.client.provider_info["issuer"]:
            raise RPError(self.name, "finish", {"name": "IssuerMismatch", "message": "iss differs from the issuer"})
        state = self._request["state"]
        atr = self._call(
            "finish",
            self.client.do_access_token_request,
            state=state,
            request_args={"redirect_uri": self.redirect_uri, "code_verifier": self._code_verifier},
            authn_method=self._authn_method,
        )
        id_token = atr.get("id_token")
        if id_token is None:
            raise RPError(self.name, "finish", {"name": "MissingIdToken", "message": "no ID token"})
        if id_token.jws_header.get("alg") in (None, "none"):
            raise RPError(self.name, "finish", {"name": "UnsignedIdToken", "message": "ID token is not signed"})
        if id_token.get("nonce") != self._request["nonce"]:
            raise RPError(self.name, "finish", {"name": "NonceMismatch", "message": "nonce missing or different"})
        self._call("finish", self.client.verify_id_token, id_token, self._request)
        claims = id_token.to_dict()
        self.session = {**self._tokens(atr), "sub": claims["sub"], "state": state}
        return RPResult(tokens=self._tokens(atr), claims=claims)

    def userinfo(self) -> dict[str, Any]:
        info = self._call("userinfo", self.client.do_user_info_request, state=self.session["state"])
        if not isinstance(info, OpenIDSchema):
            raise RPError(self.name, "userinfo", {"name": type(info).__name__, "message": str(info)})
        claims = info.to_dict()
        if claims.get("sub") != self.session["sub"]:
            raise RPError(self.name, "userinfo", {"name": "SubjectMismatch", "message": "sub differs from ID token"})
        return claims

    def refresh(self, **params: Any) -> RPResult:
        atr = self._call(
            "refresh",
            self.client.do_access_token_refresh,
            state=self.session["state"],
            request_args=params or None,
            authn_method=self._authn_method,
        )
        claims = None
        id_token = atr.get("id_token")
        if id_token is not None:
            claims = id_token.to_dict()
            if claims.get("sub") != self.session["sub"]:
                raise RPError(self.name, "refresh", {"name": "SubjectMismatch", "message": "ID token changed sub"})
        self.session.update(self._tokens(atr))
        return RPResult(tokens=self._tokens(atr), claims=claims)

    def client_credentials(self, **params: Any) -> dict[str, Any]:
        atr = self._call(
            "client_credentials",
            self.client.do_any,
            CCAccessTokenRequest,
            endpoint=self.client.token_endpoint,
            request_args={k: str(v) for k, v in params.items()},
            response=AccessTokenResponse,
            authn_method=self._authn_method,
        )
        return self._tokens(atr)

    def logout_url(self, **params: Any) -> str:
        args = {k: str(v) for k, v in params.items()}
        if "id_token_hint" not in args and "id_token" in self.session:
            args["id_token_hint"] = self.session["id_token"]
        req = self.client.construct_EndSessionRequest(request_args=args, state=self.session.get("state", ""))
        return str(req.request(self.client.end_session_endpoint))

    @staticmethod
    def _tokens(atr: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in ("access_token", "token_type", "expires_in", "refresh_token", "scope"):
            if name in atr:
                value = atr[name]
                out[name] = " ".join(value) if name == "scope" and isinstance(value, list) else value
        if "id_token_jwt" in atr:  # the raw JWT (pyoidc replaces "id_token" with the parsed IdToken)
            out["id_token"] = atr["id_token_jwt"]
        return out

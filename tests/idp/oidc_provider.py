"""A local OpenID Connect provider built on Authlib's server side (Flask), for the SSO tests.

Authorization code flow with PKCE required, RS256 ID tokens, a JWKS endpoint, discovery
and userinfo. It logs in `provider.user` without asking, and can be told to misbehave
(`mode`): sign with a key not in its JWKS, address another audience, or echo a wrong nonce;
`claims_patch` sets (or, with `DROP`, removes) any ID-token claim the IdP then signs.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core.grants import OpenIDCode
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, jsonify, request
from joserfc.jwk import RSAKey
from werkzeug.serving import make_server

DROP = object()  # a `claims_patch` value: leave the claim out


def _patched(claims: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    for name, value in patch.items():
        if value is DROP:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


@dataclass
class IdpUser:
    sub: str
    email: str
    groups: list[str] = field(default_factory=list)
    name: str = "Test User"


@dataclass
class Client(ClientMixin):
    client_id: str
    client_secret: str
    redirect_uris: list[str]

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str:
        return self.redirect_uris[0]

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in {"openid", "email", "profile", "groups"})

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class Code(AuthorizationCodeMixin):
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: IdpUser
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


class OidcProvider:
    def __init__(self) -> None:
        self.key = RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig"})
        # Same key id, different key: a token it signs fails signature verification.
        self.rogue_key = RSAKey.generate_key(2048, parameters={"kid": "idp-1", "use": "sig"})
        self.clients: dict[str, Client] = {}
        self.codes: dict[str, Code] = {}
        self.tokens: dict[str, IdpUser] = {}
        self.user = IdpUser("sub-1", "alice@example.com")
        self.mode = "ok"  # ok | bad_signature | wrong_audience | wrong_nonce
        self.groups_in_id_token = True
        self.claims_patch: dict[str, Any] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.app = self._build()
        self._server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> OidcProvider:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)

    def register(self, redirect_uri: str) -> Client:
        client = Client(secrets.token_hex(8), secrets.token_urlsafe(24), [redirect_uri])
        self.clients[client.client_id] = client
        return client

    def _build(self) -> Flask:
        app = Flask(__name__)
        idp = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                idp.codes[code] = Code(
                    code,
                    req.client.client_id,
                    req.payload.redirect_uri,
                    req.payload.scope,
                    req.user,
                    req.payload.data.get("nonce"),
                    req.payload.data.get("code_challenge"),
                    req.payload.data.get("code_challenge_method"),
                    int(time.time()),
                )

            def query_authorization_code(self, code: str, client: Client) -> Code | None:
                found = idp.codes.get(code)
                return found if found and found.client_id == client.client_id else None

            def delete_authorization_code(self, authorization_code: Code) -> None:
                idp.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: Code) -> IdpUser:
                return authorization_code.user

        class IdToken(OpenIDCode):
            def resolve_client_private_key(self, client: Client) -> RSAKey:
                return idp.rogue_key if idp.mode == "bad_signature" else idp.key

            def get_encode_header(self, client: Client) -> dict[str, str]:
                return {"alg": "RS256", "kid": "idp-1"}

            def get_client_claims(self, client: Client) -> dict[str, Any]:
                audience = "someone-else" if idp.mode == "wrong_audience" else client.client_id
                claims = {"iss": idp.issuer, "aud": [audience], "exp": int(time.time()) + 300}
                return _patched(claims, idp.claims_patch)

            def get_authorization_code_claims(self, authorization_code: Code) -> dict[str, Any]:
                claims = super().get_authorization_code_claims(authorization_code)
                if idp.mode == "wrong_nonce":
                    claims["nonce"] = "not-the-nonce-you-sent"
                return _patched(claims, idp.claims_patch)

            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in idp.codes.values())

            def generate_user_info(self, user: IdpUser, scope: str) -> UserInfo:
                return UserInfo(idp.claims(user, with_groups=idp.groups_in_id_token))

        server = AuthorizationServer(
            app,
            query_client=self.clients.get,
            save_token=lambda token, req: self.tokens.__setitem__(token["access_token"], req.user),
        )
        server.register_grant(
            CodeGrant, [IdToken(require_nonce=True), CodeChallenge(required=True)]
        )

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(
                issuer=self.issuer,
                authorization_endpoint=f"{self.issuer}/authorize",
                token_endpoint=f"{self.issuer}/token",
                userinfo_endpoint=f"{self.issuer}/userinfo",
                jwks_uri=f"{self.issuer}/jwks",
                response_types_supported=["code"],
                subject_types_supported=["public"],
                id_token_signing_alg_values_supported=["RS256"],
                code_challenge_methods_supported=["S256"],
                token_endpoint_auth_methods_supported=["client_secret_basic"],
            )

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(keys=[self.key.as_dict(private=False)])

        @app.get("/authorize")
        def authorize() -> Any:
            self.authorize_requests.append(dict(request.args))
            grant = server.get_consent_grant(end_user=self.user)  # the consent page, skipped
            return server.create_authorization_response(grant_user=self.user, grant=grant)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo() -> Any:
            scheme, _, value = request.headers.get("Authorization", "").partition(" ")
            user = self.tokens.get(value) if scheme.lower() == "bearer" else None
            if user is None:
                return jsonify(error="invalid_token"), 401
            return jsonify(self.claims(user, with_groups=True))

        return app

    @staticmethod
    def claims(user: IdpUser, *, with_groups: bool) -> dict[str, Any]:
        claims: dict[str, Any] = {
            "sub": user.sub,
            "email": user.email,
            "email_verified": True,
            "name": user.name,
        }
        if with_groups:
            claims["groups"] = list(user.groups)
        return claims

"""Authlib's authorization server, driven from async routes.

Authlib's server side is synchronous and has no FastAPI integration. Its hooks never touch
the database here: a route first loads, asynchronously, everything a request can need (the
client, the single-use code or refresh token, the user's membership), builds a server over
those values, lets Authlib validate and answer, then stores what Authlib produced (codes,
refresh tokens, registered clients). Requests become `OAuth2Request`s the way Authlib's
Flask integration builds them (`authlib/integrations/flask_oauth2/requests.py`).

Protocol choices: the code flow only, PKCE required with S256 only (a request naming no
method or `plain` is refused, not defaulted), public clients (`token_endpoint_auth_method
none`), refresh tokens rotated on every use.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeMixin,
    InvalidRequestError,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from control_plane.services.keys import KeyRing
from control_plane.services.oauth import SCOPES
from control_plane.services.oauth.clients import Client
from control_plane.services.oauth.tokens import GrantClaims, sign_access_token

CODE_TTL_SECONDS = 60


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, data: Mapping[str, list[str]]) -> None:
        self._lists = data

    @property
    def data(self) -> dict[str, str]:
        return {k: v[0] for k, v in self._lists.items() if v}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return defaultdict(list, {k: list(v) for k, v in self._lists.items()})


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """A query string (authorize) or form body (token) as Authlib's request."""

    def __init__(self, method: str, uri: str, params: Mapping[str, list[str]]) -> None:
        super().__init__(method=method, uri=uri, headers={})
        self.payload = _Payload(params)
        self._params = params

    @property
    def args(self) -> dict[str, str]:
        return dict(self.payload.data) if self.method == "GET" else {}

    @property
    def form(self) -> dict[str, str]:
        return dict(self.payload.data) if self.method == "POST" else {}


class _JsonBody(JsonPayload):  # type: ignore[misc]
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    @property
    def data(self) -> dict[str, Any]:
        return self._body


def json_request(uri: str, body: dict[str, Any]) -> JsonRequest:
    request = JsonRequest("POST", uri, {})
    request.payload = _JsonBody(body)
    return request


@dataclass
class PendingCode(AuthorizationCodeMixin):  # type: ignore[misc]
    """An authorization code's record (kept under its hash, single use)."""

    client_id: str
    redirect_uri: str
    scope: str
    code_challenge: str
    code_challenge_method: str
    grant: dict[str, str]
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class GrantUser:
    """The resource owner of a token request: the grant and who the user is now."""

    grant: GrantClaims
    email: str
    role: str
    teams: list[str]

    def get_user_id(self) -> str:
        return self.grant.user_id


@dataclass
class RefreshRecord:
    user: GrantUser

    def check_client(self, client: Client) -> bool:
        return bool(client.client_id == self.user.grant.client_id)

    def get_scope(self) -> str:
        return self.user.grant.scope


class S256Only(CodeChallenge):  # type: ignore[misc]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError(
                "code_challenge_method must be S256", redirect_uri=redirect_uri
            )
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        server: McpAuthorizationServer = self.server
        data = request.payload.data
        server.issued_codes.append(
            (
                code,
                PendingCode(
                    client_id=request.client.client_id,
                    redirect_uri=data.get("redirect_uri") or "",
                    scope=request.scope or "",
                    code_challenge=data["code_challenge"],
                    code_challenge_method="S256",
                    grant={},
                    expires_at=time.time() + CODE_TTL_SECONDS,
                ),
            )
        )

    def query_authorization_code(self, code: str, client: Client) -> PendingCode | None:
        server: McpAuthorizationServer = self.server
        found = server.code
        if found is None or found.client_id != client.client_id or found.expires_at < time.time():
            return None
        return found

    def delete_authorization_code(self, authorization_code: PendingCode) -> None:
        return None  # already taken out of the store, before Authlib saw it

    def authenticate_user(self, authorization_code: PendingCode) -> GrantUser | None:
        user: GrantUser | None = self.server.user
        return user


class _RefreshGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ["none"]
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: every refresh answers a new one

    def authenticate_refresh_token(self, refresh_token: str) -> RefreshRecord | None:
        user: GrantUser | None = self.server.user
        return RefreshRecord(user) if user is not None else None

    def authenticate_user(self, refresh_token: RefreshRecord) -> GrantUser:
        return refresh_token.user

    def revoke_old_credential(self, refresh_token: RefreshRecord) -> None:
        return None  # consumed when it was loaded


@dataclass
class McpAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    """One request's server over what the route loaded."""

    keys: KeyRing
    clients: dict[str, Client]
    access_token_ttl: int
    code: PendingCode | None = None
    user: GrantUser | None = None
    refresh_token: str | None = None  # the new one the route has already stored
    issued_codes: list[tuple[str, PendingCode]] = field(default_factory=list)
    tokens: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        AuthorizationServer.__init__(self, scopes_supported=list(SCOPES))
        self.register_grant(_CodeGrant, [S256Only(required=True)])
        self.register_grant(_RefreshGrant)
        self.register_token_generator("default", self._generate)

    def query_client(self, client_id: str) -> Client | None:
        client = self.clients.get(client_id)
        return client if client is not None and not client.blocked else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        self.tokens.append(token)

    def create_oauth2_request(self, request: OAuth2Request) -> OAuth2Request:
        return request

    def create_json_request(self, request: JsonRequest) -> JsonRequest:
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, Any]:
        return status, body, headers

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        return None

    def _generate(
        self,
        grant_type: str,
        client: Client,
        user: GrantUser | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        if user is None:
            raise InvalidRequestError("no user for this grant")
        access = sign_access_token(
            self.keys,
            user.grant,
            email=user.email,
            role=user.role,
            teams=user.teams,
            ttl=self.access_token_ttl,
        )
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": access,
            "expires_in": self.access_token_ttl,
            "scope": user.grant.scope,
        }
        if include_refresh_token and self.refresh_token is not None:
            token["refresh_token"] = self.refresh_token
        return token


class Registration(ClientRegistrationEndpoint):  # type: ignore[misc]
    """RFC 7591 over Authlib's claim checks; the route stores the client it produced."""

    def __init__(self, server: McpAuthorizationServer, metadata: dict[str, Any]) -> None:
        super().__init__(server)
        self._metadata = metadata
        self.saved: dict[str, Any] | None = None

    def authenticate_token(self, request: JsonRequest) -> bool:
        return True  # open registration, gated by the organisation's setting in the route

    def get_server_metadata(self) -> dict[str, Any]:
        return self._metadata

    def generate_client_id(self, request: JsonRequest) -> str:
        return "mcp_" + secrets.token_urlsafe(24)

    def generate_client_info(self, request: JsonRequest) -> dict[str, Any]:
        return {
            "client_id": self.generate_client_id(request),
            "client_id_issued_at": int(time.time()),
        }

    def save_client(
        self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: JsonRequest
    ) -> dict[str, Any]:
        self.saved = {**client_metadata, **client_info}
        return self.saved


def server_metadata(issuer: str, *, dynamic_registration: bool) -> dict[str, Any]:
    """RFC 8414 metadata of one organisation's issuer, checked by Authlib's validator."""
    metadata: dict[str, Any] = {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "jwks_uri": issuer.split("/oauth/")[0] + "/.well-known/jwks.json",
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_methods_supported": ["none"],
        "code_challenge_methods_supported": ["S256"],
        "authorization_response_iss_parameter_supported": True,
        "client_id_metadata_document_supported": True,
    }
    if dynamic_registration:
        metadata["registration_endpoint"] = f"{issuer}/register"
    AuthorizationServerMetadata(metadata).validate()
    return metadata

"""The authorization server's requests, end to end: authorize → consent → code → token,
and dynamic registration. Routes call these; Authlib decides (server.py)."""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from authlib.oauth2 import OAuth2Error
from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError

from control_plane.db.models import OAuthClient, Organization
from control_plane.db.session import Database
from control_plane.errors import Forbidden, NotFound, Unauthenticated
from control_plane.services.audit import Actor
from control_plane.services.auth import Authenticator
from control_plane.services.keys import KeyRing
from control_plane.services.kv import KeyValueStore
from control_plane.services.oauth import clients, grants, issuer_url
from control_plane.services.oauth.server import (
    CODE_TTL_SECONDS,
    FormRequest,
    GrantUser,
    McpAuthorizationServer,
    PendingCode,
    Registration,
    json_request,
    server_metadata,
)
from control_plane.services.oauth.tokens import GrantClaims, RefreshTokens
from control_plane.services.principal import Principal
from control_plane.settings import Settings

CONSENT_TTL_SECONDS = 600
NO_STORE = {"cache-control": "no-store", "pragma": "no-cache"}

Answer = tuple[int, dict[str, Any], dict[str, str]]


class InvalidTarget(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the resource is not one this server issues tokens for."""

    error = "invalid_target"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


async def _known(session: Any, organization_id: uuid.UUID) -> None:
    if await session.get(Organization, organization_id) is None:
        raise NotFound("no such issuer")


def _error(error: OAuth2Error, status: int = 400) -> Answer:
    body = {"error": error.error}
    if error.description:
        body["error_description"] = error.description
    return status, body, NO_STORE


class OAuthFlow:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        kv: KeyValueStore,
        keys: KeyRing,
        auth: Authenticator,
    ) -> None:
        self.settings, self.db, self.kv, self.keys, self.auth = settings, db, kv, keys, auth
        self.refresh_tokens = RefreshTokens(kv, settings.refresh_token_ttl_seconds)

    def issuer(self, organization_id: uuid.UUID) -> str:
        return issuer_url(self.settings.control_plane_url, organization_id)

    def _server(self, found: dict[str, clients.Client]) -> McpAuthorizationServer:
        return McpAuthorizationServer(self.keys, found, self.settings.access_token_ttl_seconds)

    async def metadata(self, organization_id: uuid.UUID) -> dict[str, Any]:
        async with self.db.session(organization_id) as session:
            await _known(session, organization_id)
            setting = await clients.settings_of(session)
        return server_metadata(
            self.issuer(organization_id), dynamic_registration=setting.dynamic_registration
        )

    # -- authorize: validate, remember, send the browser to the consent page -------------------

    async def authorize(
        self, organization_id: uuid.UUID, params: dict[str, list[str]]
    ) -> tuple[int, dict[str, Any] | None, str | None]:
        """(302, None, location) or (400, error body, None) when no redirect is safe."""
        issuer = self.issuer(organization_id)
        request = FormRequest("GET", f"{issuer}/authorize", params)
        client_id = request.payload.data.get("client_id") or ""
        async with self.db.session(organization_id) as session:
            await _known(session, organization_id)
            try:
                client = await clients.resolve(
                    session, organization_id, client_id, self.settings.outbound_guard
                )
            except clients.ClientError as exc:
                return 400, {"error": "invalid_client", "error_description": str(exc)}, None
            server = self._server({client_id: client} if client else {})
            try:
                grant = server.get_consent_grant(request)
                redirect_uri = grant.validate_authorization_request()
            except OAuth2Error as error:
                if error.redirect_uri:
                    return 302, None, self._redirect(error.redirect_uri, request, error=error)
                return 400, _error(error)[1], None
            resource = request.payload.data.get("resource")
            gateway = await grants.gateway_for_resource(session, resource) if resource else None
            if gateway is None:
                target = InvalidTarget("resource must name one gateway's MCP URL of this issuer")
                return 302, None, self._redirect(redirect_uri, request, error=target)
            pending = {
                "org": str(organization_id),
                "params": {k: v[0] for k, v in params.items() if v},
                "client_ref": str(client.id) if client else "",
                "client_name": client.client_name if client else "",
                "client_id": client_id,
                "redirect_uri": redirect_uri,
                "scope": grant.request.scope or "",
                "gateway_id": str(gateway.id),
                "gateway": gateway.name,
                "resource": resource,
            }
        request_id = secrets.token_urlsafe(24)
        await self.kv.set(
            f"oauth-consent:{request_id}", json.dumps(pending), ttl=CONSENT_TTL_SECONDS
        )
        base = self.settings.control_plane_url.rstrip("/")
        return 302, None, f"{base}/oauth-consent?{urlencode({'request': request_id})}"

    def _redirect(
        self,
        redirect_uri: str,
        request: FormRequest,
        *,
        error: OAuth2Error | None = None,
        code: str | None = None,
        issuer: str | None = None,
    ) -> str:
        params: list[tuple[str, str]] = []
        if code is not None:
            params.append(("code", code))
        if error is not None:
            params.append(("error", error.error))
            if error.description:
                params.append(("error_description", error.description))
        if state := request.payload.data.get("state"):
            params.append(("state", state))
        if issuer is not None:
            params.append(("iss", issuer))
        separator = "&" if "?" in redirect_uri else "?"
        return f"{redirect_uri}{separator}{urlencode(params)}"

    # -- consent: the studio shows the pending request and posts the user's answer ------------

    async def pending(self, request_id: str, principal: Principal) -> dict[str, Any]:
        raw = await self.kv.get(f"oauth-consent:{request_id}") if len(request_id) < 100 else None
        pending: dict[str, Any] | None = json.loads(raw) if raw else None
        if pending is None or pending["org"] != str(principal.organization_id):
            raise NotFound("no such authorization request (it may have expired)")
        if principal.kind != "user":
            raise Forbidden("only a person can approve an MCP client, not an API key")
        return pending

    async def decide(
        self, request_id: str, principal: Principal, actor: Actor, *, approve: bool
    ) -> str:
        """Where the browser goes next: the client's redirect URI with a code or an error."""
        pending = await self.pending(request_id, principal)
        await self.kv.delete(f"oauth-consent:{request_id}")
        org = principal.organization_id
        issuer = self.issuer(org)
        request = FormRequest(
            "GET", f"{issuer}/authorize", {k: [v] for k, v in pending["params"].items()}
        )
        if not approve:
            denied = OAuth2Error(description="the user denied the request")
            denied.error = "access_denied"
            return self._redirect(pending["redirect_uri"], request, error=denied, issuer=issuer)
        async with self.db.session(org) as session:
            client_row = await session.get(OAuthClient, uuid.UUID(pending["client_ref"]))
            gateway = await grants.gateway_for_resource(session, pending["resource"])
            if client_row is None or client_row.blocked_at is not None or gateway is None:
                raise NotFound("the client or the gateway of this request is gone")
            client = clients.Client.of(client_row)
            server = self._server({client.client_id: client})
            grant = server.get_consent_grant(request, end_user=principal.id)
            server.create_authorization_response(request, grant_user=principal.id, grant=grant)
            code, record = server.issued_codes[0]
            record_grant = await grants.create(
                session,
                org,
                actor,
                client_ref=client.id,
                user_id=principal.id,
                gateway=gateway,
                scope=pending["scope"],
            )
        record.grant = asdict(
            GrantClaims(
                issuer=issuer,
                resource=record_grant.resource,
                organization_id=str(org),
                user_id=str(principal.id),
                session_id=record_grant.session_id,
                grant_id=str(record_grant.id),
                client_id=client.client_id,
                scope=pending["scope"],
            )
        )
        await self.kv.set(
            f"oauth-code:{_digest(code)}", json.dumps(asdict(record)), ttl=CODE_TTL_SECONDS
        )
        return self._redirect(pending["redirect_uri"], request, code=code, issuer=issuer)

    # -- token --------------------------------------------------------------------------------

    async def token(self, organization_id: uuid.UUID, form: dict[str, list[str]]) -> Answer:
        issuer = self.issuer(organization_id)
        request = FormRequest("POST", f"{issuer}/token", form)
        data = request.payload.data
        grant_type, client_id = data.get("grant_type"), data.get("client_id") or ""
        code: PendingCode | None = None
        claims: GrantClaims | None = None
        if grant_type == "authorization_code":
            raw = await self.kv.pop(f"oauth-code:{_digest(data.get('code') or '')}")
            if raw is not None:
                code = PendingCode(**json.loads(raw))
                claims = GrantClaims(**code.grant)
        elif grant_type == "refresh_token":
            claims, reused = await self.refresh_tokens.redeem(data.get("refresh_token") or "")
            if reused is not None and reused.organization_id == str(organization_id):
                await self._end(organization_id, uuid.UUID(reused.grant_id), "refresh token reused")
                return _error(InvalidGrantError("refresh token already used; grant revoked"))
        if claims is not None and claims.organization_id != str(organization_id):
            claims = None
        resource = data.get("resource")
        if claims is not None and resource is not None and resource != claims.resource:
            return _error(InvalidTarget("resource is not the one this grant was given for"))
        async with self.db.session(organization_id) as session:
            client = await clients.resolve(
                session, organization_id, client_id, self.settings.outbound_guard, fetch=False
            )
            live = claims is not None and (
                await grants.active(session, uuid.UUID(claims.grant_id)) is not None
            )
        user = await self._grant_user(claims, live)
        server = self._server({client_id: client} if client else {})
        server.code, server.user = code, user
        if user is not None:
            server.refresh_token = await self.refresh_tokens.issue(user.grant)
        status, body, _headers = server.create_token_response(request)
        if isinstance(body, str):
            body = json.loads(body)
        return status, body, NO_STORE

    async def _grant_user(self, claims: GrantClaims | None, live: bool) -> GrantUser | None:
        if claims is None or not live:
            return None
        try:
            role, email, teams = await self.auth.member(
                uuid.UUID(claims.user_id), uuid.UUID(claims.organization_id)
            )
        except Unauthenticated:  # no longer a member: the grant is worth nothing
            return None
        return GrantUser(claims, email, role, teams)

    async def _end(self, organization_id: uuid.UUID, grant_id: uuid.UUID, why: str) -> None:
        async with self.db.session(organization_id) as session:
            try:
                sid = await grants.revoke(
                    session,
                    organization_id,
                    Actor("system", None, "oauth token endpoint"),
                    grant_id,
                    user_id=None,
                    why=why,
                )
            except NotFound:
                return
        await self.auth.revoke_session(sid, organization_id)

    # -- dynamic registration -----------------------------------------------------------------

    async def register(self, organization_id: uuid.UUID, body: Any) -> Answer:
        issuer = self.issuer(organization_id)
        async with self.db.session(organization_id) as session:
            await _known(session, organization_id)
            setting = await clients.settings_of(session)
            if not setting.dynamic_registration:
                return (
                    400,  # RFC 7591 §3.2.2: registration errors are 400
                    {
                        "error": "access_denied",
                        "error_description": "dynamic client registration is off for this "
                        "organisation; use a Client ID Metadata Document or ask an administrator",
                    },
                    NO_STORE,
                )
            if not isinstance(body, dict):
                return _error(InvalidRequestError("the body must be a JSON object"))
            # Public clients only: whatever else was asked is replaced (RFC 7591 §3.2.1).
            body = {**body, "token_endpoint_auth_method": "none"}
            body.setdefault("grant_types", ["authorization_code", "refresh_token"])
            body.setdefault("response_types", ["code"])
            metadata = server_metadata(issuer, dynamic_registration=True)
            endpoint = Registration(self._server({}), metadata)
            try:
                status, answer, _headers = endpoint(json_request(f"{issuer}/register", body))
                kept = clients.registration_metadata(answer)
            except OAuth2Error as error:
                return _error(error)
            except clients.ClientError as exc:
                return (
                    400,
                    {"error": "invalid_redirect_uri", "error_description": str(exc)},
                    NO_STORE,
                )
            session.add(
                OAuthClient(
                    organization_id=organization_id,
                    client_id=answer["client_id"],
                    kind="dynamic",
                    client_name=kept["client_name"],
                    redirect_uris=kept["redirect_uris"],
                    client_metadata=kept,
                )
            )
        return status, {**answer, **kept, "token_endpoint_auth_method": "none"}, NO_STORE

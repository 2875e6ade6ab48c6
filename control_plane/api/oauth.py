"""The OAuth 2.1 authorization server's protocol endpoints (one issuer per organisation).

Unauthenticated by design: metadata, authorize (which sends the browser to the studio's
consent page, where the user logs in), token and dynamic registration. Errors are OAuth's
JSON (`error`, `error_description`), never a 500."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, RedirectResponse, Response

from control_plane.api.deps import OAuthFlowDep
from control_plane.services.oauth.flow import NO_STORE

router = APIRouter(tags=["oauth"])
MAX_FORM_BYTES = 16 * 1024


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers or NO_STORE)


@router.get("/.well-known/oauth-authorization-server/oauth/{organization_id}")
async def authorization_server_metadata(organization_id: uuid.UUID, flow: OAuthFlowDep) -> Any:
    """RFC 8414 metadata of the organisation's issuer `…/oauth/{organization_id}`."""
    return await flow.metadata(organization_id)


@router.get("/.well-known/openid-configuration/oauth/{organization_id}")
async def openid_configuration(organization_id: uuid.UUID, flow: OAuthFlowDep) -> Any:
    """The same metadata where OIDC-discovery clients look for it."""
    return await flow.metadata(organization_id)


@router.get("/oauth/{organization_id}/authorize", response_model=None)
async def authorize(organization_id: uuid.UUID, request: Request, flow: OAuthFlowDep) -> Response:
    """Validate the request (client, redirect URI, PKCE S256, `resource`) and send the
    browser to the studio's consent page."""
    params = parse_qs(request.url.query, keep_blank_values=True)
    status, body, location = await flow.authorize(organization_id, params)
    if location is not None:
        return RedirectResponse(location, status_code=302, headers=NO_STORE)
    return _json(status, body)


async def _form(request: Request) -> dict[str, list[str]] | None:
    if request.headers.get("content-type", "").split(";")[0].strip() != (
        "application/x-www-form-urlencoded"
    ):
        return None
    raw = await request.body()
    if len(raw) > MAX_FORM_BYTES:
        return None
    try:
        return parse_qs(raw.decode(), keep_blank_values=True, strict_parsing=False)
    except UnicodeDecodeError:
        return None


@router.post("/oauth/{organization_id}/token", response_model=None)
async def token(organization_id: uuid.UUID, request: Request, flow: OAuthFlowDep) -> Response:
    """Authorization code (with the PKCE verifier) or refresh token → an access token whose
    `aud` is the gateway's MCP URL, and a new refresh token (rotation)."""
    form = await _form(request)
    if form is None:
        return _json(
            400,
            {
                "error": "invalid_request",
                "error_description": "body must be application/x-www-form-urlencoded (≤ 16 KiB)",
            },
        )
    return _json(*await flow.token(organization_id, form))


@router.post("/oauth/{organization_id}/register", response_model=None)
async def register(organization_id: uuid.UUID, request: Request, flow: OAuthFlowDep) -> Response:
    """RFC 7591 dynamic registration of a public client, when the organisation allows it."""
    try:
        body = await request.json()
    except ValueError:
        body = None
    return _json(*await flow.register(organization_id, body))

"""A public MCP client driven by hand over HTTP: register, authorize with PKCE, consent as
a logged-in user, exchange the code (shared by the OAuth integration and e2e tests)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT = "http://127.0.0.1:33418/callback"


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode()).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


@dataclass
class Authorized:
    code: str
    verifier: str
    redirect: dict[str, str]


async def enable_registration(http: httpx.AsyncClient, headers: dict[str, str]) -> str:
    """Turn dynamic registration on; the organisation's issuer."""
    answer = await http.put(
        "/api/v1/oauth/settings",
        json={"dynamic_registration": True, "metadata_documents": True},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["issuer"])


async def register(http: httpx.AsyncClient, issuer: str, **extra: Any) -> str:
    body = {"client_name": "Test IDE", "redirect_uris": [REDIRECT], **extra}
    answer = await http.post(f"{_path(issuer)}/register", json=body)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


def _path(url: str) -> str:
    """An absolute URL as a path on the test client's base URL (the ASGI app)."""
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


async def authorize(
    http: httpx.AsyncClient,
    issuer: str,
    client_id: str,
    resource: str,
    user_headers: dict[str, str],
    *,
    scope: str = "mcp:connect mcp:list agents:invoke",
    approve: bool = True,
    **overrides: str,
) -> Authorized:
    verifier = secrets.token_urlsafe(48)
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "st-" + secrets.token_hex(4),
        "code_challenge": s256(verifier),
        "code_challenge_method": "S256",
        "resource": resource,
        "scope": scope,
        **overrides,
    }
    started = await http.get(f"{_path(issuer)}/authorize", params=params)
    assert started.status_code == 302, started.text
    location = started.headers["location"]
    if not urlsplit(location).path.endswith("/oauth-consent"):
        return Authorized("", verifier, query(location))
    request_id = query(location)["request"]
    shown = await http.get(f"/api/v1/oauth/requests/{request_id}", headers=user_headers)
    assert shown.status_code == 200, shown.text
    decided = await http.post(
        f"/api/v1/oauth/requests/{request_id}", json={"approve": approve}, headers=user_headers
    )
    assert decided.status_code == 200, decided.text
    redirect = query(decided.json()["redirect_to"])
    assert redirect["state"] == params["state"]
    return Authorized(redirect.get("code", ""), verifier, redirect)


async def exchange(
    http: httpx.AsyncClient, issuer: str, client_id: str, got: Authorized, **extra: str
) -> httpx.Response:
    return await http.post(
        f"{_path(issuer)}/token",
        data={
            "grant_type": "authorization_code",
            "code": got.code,
            "redirect_uri": REDIRECT,
            "client_id": client_id,
            "code_verifier": got.verifier,
            **extra,
        },
    )

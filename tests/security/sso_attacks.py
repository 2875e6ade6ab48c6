"""What the SSO attacks share: a real local OIDC provider, domains verified through a real
local DNS server, and an organisation whose member's address falls in another
organisation's verified domain (the victim of a cross-tenant sign-in)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.conftest import PASSWORD, Account, signup
from tests.idp.dns_server import LocalDns
from tests.idp.oidc_provider import IdpUser, OidcProvider
from tests.integration.sso_support import verify_domain

DOMAIN = "acme-corp.example.net"
MAPPING = [{"group": "staff", "role": "developer"}, {"group": "admins", "role": "admin"}]


@pytest.fixture(scope="module")
def running_idp() -> Iterator[OidcProvider]:
    provider = OidcProvider().start()
    yield provider
    provider.stop()


@pytest.fixture
def idp(running_idp: OidcProvider) -> OidcProvider:
    running_idp.mode = "ok"
    running_idp.claims_patch = {}
    running_idp.groups_in_id_token = True
    running_idp.user = IdpUser(f"sub-{uuid.uuid4().hex[:6]}", f"new@{DOMAIN}", ["staff"])
    return running_idp


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as http:
        yield http


async def provider(
    client: httpx.AsyncClient, owner: Account, idp: OidcProvider, **overrides: Any
) -> dict[str, Any]:
    registration = idp.register("pending")
    body = {
        "type": "oidc",
        "name": f"idp-{uuid.uuid4().hex[:6]}",
        "issuer": idp.issuer,
        "client_id": registration.client_id,
        "client_secret": registration.client_secret,
        "group_mapping": MAPPING,
        **overrides,
    }
    response = await client.post("/api/v1/sso/providers", json=body, headers=owner.headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    registration.redirect_uris[:] = [created["redirect_uri"]]
    return created


async def org_with_idp(
    client: httpx.AsyncClient, owner: Account, idp: OidcProvider, dns: LocalDns
) -> dict[str, Any]:
    """`owner`'s organisation with DOMAIN verified and an OIDC provider routing it."""
    await verify_domain(client, owner, dns, DOMAIN)
    return await provider(client, owner, idp, email_domains=[DOMAIN])


async def callback(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, created: dict[str, Any]
) -> httpx.Response:
    """Log in at the IdP as `idp.user`; the control plane's answer to the callback."""
    start = await client.get(f"/api/v1/auth/oidc/{created['id']}/login")
    assert start.status_code == 302, start.text
    at_idp = await browser.get(start.headers["location"])
    assert at_idp.status_code == 302, at_idp.text
    parts = urlsplit(at_idp.headers["location"])
    return await client.get(f"{parts.path}?{parts.query}")


async def sso_tokens(
    client: httpx.AsyncClient, browser: httpx.AsyncClient, created: dict[str, Any]
) -> dict[str, Any]:
    back = await callback(client, browser, created)
    assert back.status_code == 302, back.text
    code = parse_qs(urlsplit(back.headers["location"].removeprefix("/#")).query)["code"][0]
    tokens = await client.post("/api/v1/auth/sso/exchange", json={"code": code})
    assert tokens.status_code == 200, tokens.text
    body: dict[str, Any] = tokens.json()
    return body


def bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def member_of_other_org(
    client: httpx.AsyncClient, email: str, role: str = "developer"
) -> tuple[Account, str]:
    """Another organisation (its owner) with a password member at `email`; (owner, user id)."""
    other = await signup(client, "Other")
    created = await client.post(
        "/api/v1/users",
        json={"email": email, "password": PASSWORD, "role": role},
        headers=other.headers,
    )
    assert created.status_code == 201, created.text
    return other, created.json()["id"]


async def emails(client: httpx.AsyncClient, owner: Account) -> list[str]:
    users = await client.get("/api/v1/users", headers=owner.headers)
    return sorted(u["email"] for u in users.json()["items"])


async def actions(client: httpx.AsyncClient, owner: Account) -> list[str]:
    events = await client.get("/api/v1/audit-events", headers=owner.headers)
    return [e["action"] for e in events.json()["items"]]

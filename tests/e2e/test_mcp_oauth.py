"""Milestone M11 end to end: an MCP client connects by OAuth from nothing but the URL.

Real parts: a control-plane process (PostgreSQL + Redis) as the authorization server, two
gateways' sidecars (`kaizen-studio sidecar`, each bound to its gateway's MCP URL), the
gateway process and a real Envoy in front of each. The official MCP SDK's
`OAuthClientProvider` meets the sidecar's 401, reads the RFC 9728 document (served through
Envoy without a credential), discovers the organisation's issuer (RFC 8414), registers
(RFC 7591), sends the user to consent (the test plays the browser: it follows the
authorization redirect and approves over the studio's consent API as the logged-in user),
exchanges the code with PKCE S256 and the `resource`, then lists only the tools policy
allows and calls one. The attacks: the token at another gateway, tokens with a wrong or
missing audience, expired, or signed by an unknown key (401 with `resource_metadata`), PKCE
without S256, and a foreign Origin (403).
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from control_plane.services.crypto import unseal
from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs
from tests.e2e.mcp_oauth_client import Browser, Memory, connect
from tests.integration.oauth_support import query, s256

POLICY = """\
kind: RolePolicy
metadata: {name: mcp-users}
spec:
  roles:
    - name: mcp-user
      permissions:
        - {resource: "agent:support-bot", actions: [invoke]}
        - {resource: "mcp:*", actions: [connect, list]}
  bindings:
    - {subject: "user:%(email)s", role: mcp-user}
"""
AGENTS = """\
kind: Agent
metadata: {name: support-bot, description: Answers support questions}
spec:
  model: {provider: demo, name: demo}
  system_prompt: You are a helpful support agent.
---
kind: Agent
metadata: {name: payroll-bot, description: Not for this user}
spec:
  model: {provider: demo, name: demo}
  system_prompt: Payroll.
"""
CALLBACK = "http://127.0.0.1:33419/callback"
MCP_HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
PING = b'{"jsonrpc": "2.0", "id": 1, "method": "ping"}'


@dataclass
class Authority:
    control_plane: procs.ControlPlane
    master_key: bytes
    database: str


@pytest.fixture
def authority(database: str, tmp_path: Path) -> Iterator[Authority]:
    """The control plane whose public URL (the issuers' base) is where it listens."""
    master_key = secrets.token_bytes(32)
    cp = procs.ControlPlane.configured(
        tmp_path / "cp",
        database_url=database,
        redis_url=REDIS_URL,
        redis_prefix=f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
        master_key=base64.b64encode(master_key).decode(),
    )
    cp.env["KAIZEN_CONTROL_PLANE_URL"] = cp.url
    cp.start()
    try:
        yield Authority(cp, master_key, database)
    finally:
        cp.stop()


async def _signing_key(authority: Authority, kid: str) -> Ed25519PrivateKey:
    """The control plane's own key for `kid`, to forge tokens only its claims tell apart."""
    engine = create_async_engine(authority.database)
    try:
        async with engine.connect() as connection:
            sealed = (
                await connection.execute(
                    text("SELECT private_key_encrypted FROM signing_keys WHERE kid = :kid"),
                    {"kid": kid},
                )
            ).scalar_one()
    finally:
        await engine.dispose()
    der = unseal(authority.master_key, sealed, kid.encode())
    key = serialization.load_der_private_key(der, password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key


def _resign(token: str, key: Ed25519PrivateKey, **changes: Any) -> str:
    header = jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update({k: v for k, v in changes.items() if v is not None})
    for name in [k for k, v in changes.items() if v is None]:
        claims.pop(name)
    return jwt.encode(
        claims, key, algorithm="EdDSA", headers={"kid": header["kid"], "typ": header["typ"]}
    )


def _challenge(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    return response.headers["www-authenticate"]


def _serving(url: str, agents: int) -> bool:
    try:
        health = httpx.get(f"{url}/healthz", timeout=2)
    except httpx.TransportError:
        return False
    return health.status_code == 200 and health.json()["agents"] == agents


def test_mcp_sdk_connects_by_oauth_from_the_bare_url(
    authority: Authority, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp_url = authority.control_plane.url
    cp = httpx.Client(base_url=cp_url, timeout=30)
    request.addfinalizer(cp.close)
    email = f"owner-{secrets.token_hex(3)}@example.com"
    owner = cp.post(
        "/api/v1/auth/signup", json={"email": email, "password": PASSWORD, "organization": "M11"}
    ).json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}

    def created(path: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        response = cp.request(method, path, json=body, headers=admin)
        assert response.status_code in (200, 201), response.text
        return dict(response.json())

    issuer = created(
        "/api/v1/oauth/settings", {"dynamic_registration": True, "metadata_documents": True}, "PUT"
    )["issuer"]
    created("/api/v1/policies", {"source": POLICY % {"email": email}})
    created("/api/v1/policies/publish", {})
    created("/api/v1/agents", {"source": AGENTS})

    ports = [procs.free_port() for _ in range(9)]
    listen_a, admin_a, grpc_a, http_a, gateway_port, listen_b, admin_b, grpc_b, http_b = ports
    envoy_a, envoy_b = f"http://127.0.0.1:{listen_a}", f"http://127.0.0.1:{listen_b}"
    gateway_a = created(
        "/api/v1/gateways", {"name": "edge-a", "environment": "prod", "url": envoy_a}
    )
    gateway_b = created(
        "/api/v1/gateways", {"name": "edge-b", "environment": "prod", "url": envoy_b}
    )
    for name in ("support-bot", "payroll-bot"):
        created(
            "/api/v1/deployments", {"gateway_id": gateway_a["id"], "kind": "agent", "name": name}
        )

    def sidecar(home: str, grpc: int, http: int, gateway: dict[str, Any]) -> Any:
        # No MCP URL is configured: each sidecar finds its gateway's in the signed bundle,
        # under its own credential's binding (the gateways were registered after publish).
        return procs.start_sidecar(
            tmp_path / home,
            grpc,
            http,
            KAIZEN_GATEWAY_TOKEN=gateway["credential"],
            KAIZEN_CONTROL_PLANE_URL=cp_url,
        )

    def envoy(listen: int, admin_port: int, grpc: int, http: int) -> Any:
        config = procs.envoy_config(listen, admin_port, grpc, gateway_port, sidecar_http=http)
        return procs.start_envoy(config, tmp_path, admin_port)

    gateway_process = procs.spawn(
        [str(procs.BIN / "kaizen-studio"), "gateway"],
        env=procs.clean_env(
            KAIZEN_HOME=str(tmp_path / "gateway"),
            KAIZEN_GATEWAY_PORT=str(gateway_port),
            KAIZEN_GATEWAY_TOKEN=gateway_a["credential"],
            KAIZEN_CONTROL_PLANE_URL=cp_url,
            KAIZEN_SIDECAR_URL=f"http://127.0.0.1:{http_a}",
            KAIZEN_GATEWAY_PUBLIC_URL=envoy_a,
            KAIZEN_GATEWAY_MCP_ALLOWED_ORIGINS="https://studio.example.com",
        ),
    )
    with (
        procs.running(gateway_process),
        procs.running(sidecar("sidecar-a", grpc_a, http_a, gateway_a)),
        procs.running(sidecar("sidecar-b", grpc_b, http_b, gateway_b)),
        procs.running(envoy(listen_a, admin_a, grpc_a, http_a)),
        procs.running(envoy(listen_b, admin_b, grpc_b, http_b)),
    ):
        deadline = time.monotonic() + 30
        while not _serving(f"http://127.0.0.1:{gateway_port}", 2):
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway is not serving: {procs.output(gateway_process)}")
            time.sleep(0.1)

        # Discovery through Envoy needs no credential; /mcp without one names the document.
        metadata_url = f"{envoy_a}/.well-known/oauth-protected-resource/mcp"
        document = httpx.get(metadata_url, timeout=10)
        assert document.status_code == 200, document.text
        assert document.json()["resource"] == f"{envoy_a}/mcp"
        assert document.json()["authorization_servers"] == [issuer]
        assert document.json()["scopes_supported"] == ["mcp:connect", "mcp:list", "agents:invoke"]
        assert httpx.get(f"{envoy_a}/.well-known/oauth-protected-resource").status_code == 200
        assert httpx.get(f"{metadata_url}/x", timeout=10).status_code == 401  # exactly those
        bare = httpx.post(f"{envoy_a}/mcp", content=PING, headers=MCP_HEADERS, timeout=10)
        assert _challenge(bare) == f'Bearer realm="kaizen", resource_metadata="{metadata_url}"'

        # The SDK from nothing but the URL: discover, register, consent, token, list, call.
        browser = Browser(cp_url, admin)
        storage = Memory()
        tools, answer = asyncio.run(
            connect(f"{envoy_a}/mcp", browser, storage, call="support-bot", callback=CALLBACK)
        )
        assert tools == {"support-bot"}  # payroll-bot is deployed, but policy does not allow it
        assert "demo provider" in answer
        (shown,) = browser.shown
        assert shown["client_name"] == "E2E IDE"
        assert shown["gateway"] == "edge-a"
        assert set(shown["scopes"]) == {"mcp:connect", "mcp:list", "agents:invoke"}
        assert storage.tokens is not None
        assert storage.client is not None
        token = storage.tokens.access_token
        claims = jwt.decode(token, options={"verify_signature": False})
        assert claims["aud"] == f"{envoy_a}/mcp"
        assert claims["iss"] == issuer
        bearer = {**MCP_HEADERS, "authorization": f"Bearer {token}"}
        assert httpx.post(f"{envoy_a}/mcp", content=PING, headers=bearer).status_code == 200

        # The same token at gateway B: refused, and B names its own document.
        at_b = httpx.post(f"{envoy_b}/mcp", content=PING, headers=bearer, timeout=10)
        challenge = _challenge(at_b)
        assert f"audience is not {envoy_b}/mcp" in challenge
        assert (
            f'resource_metadata="{envoy_b}/.well-known/oauth-protected-resource/mcp"' in challenge
        )
        # Nor anywhere but /mcp at its own gateway.
        invoke = httpx.post(
            f"{envoy_a}/v1/agents/support-bot/invoke", json={"input": "x"}, headers=bearer
        )
        assert invoke.status_code == 401

        # Forged tokens with the control plane's own key: only the claims are wrong.
        key = asyncio.run(_signing_key(authority, jwt.get_unverified_header(token)["kid"]))
        now = int(time.time())
        forged = {
            "wrong audience": _resign(token, key, aud=f"{envoy_b}/mcp"),
            "audience list": _resign(token, key, aud=[f"{envoy_a}/mcp", f"{envoy_b}/mcp"]),
            "missing audience": _resign(token, key, aud=None),
            "expired": _resign(token, key, iat=now - 600, exp=now - 300),
            "unknown key": _resign(token, Ed25519PrivateKey.generate()),
        }
        for what, value in forged.items():
            headers = {**MCP_HEADERS, "authorization": f"Bearer {value}"}
            refused = httpx.post(f"{envoy_a}/mcp", content=PING, headers=headers, timeout=10)
            challenge = _challenge(refused)
            assert 'error="invalid_token"' in challenge, what
            assert f'resource_metadata="{metadata_url}"' in challenge, what

        # A foreign Origin is refused even with a good token; the configured one is served.
        evil = {**bearer, "origin": "https://evil.example"}
        assert httpx.post(f"{envoy_a}/mcp", content=PING, headers=evil).status_code == 403
        good = {**bearer, "origin": "https://studio.example.com"}
        assert httpx.post(f"{envoy_a}/mcp", content=PING, headers=good).status_code == 200

        # PKCE without S256 is refused at the authorization endpoint.
        client_id = storage.client.client_id
        verifier = secrets.token_urlsafe(48)
        for method, challenge_value in (("plain", verifier), (None, s256(verifier))):
            params = {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": CALLBACK,
                "state": "s",
                "code_challenge": challenge_value,
                "resource": f"{envoy_a}/mcp",
            }
            if method is not None:
                params["code_challenge_method"] = method
            refused = httpx.get(f"{issuer}/authorize", params=params)
            assert refused.status_code == 302, refused.text
            location = refused.headers["location"]
            assert urlsplit(location).path == "/callback", location
            assert query(location)["error"] == "invalid_request", location

        # The user sees the client among their grants and revokes it: the token stops.
        grants = cp.get("/api/v1/oauth/grants", headers=admin).json()
        (grant,) = [g for g in grants if g["client_id"] == client_id]
        assert cp.delete(f"/api/v1/oauth/grants/{grant['id']}", headers=admin).status_code == 204
        deadline = time.monotonic() + 30
        while httpx.post(f"{envoy_a}/mcp", content=PING, headers=bearer).status_code != 401:
            if time.monotonic() > deadline:
                pytest.fail("the revoked grant's token still works after 30 s")
            time.sleep(0.2)

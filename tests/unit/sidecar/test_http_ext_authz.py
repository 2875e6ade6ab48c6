"""`/ext_authz`: Envoy's HTTP ext_authz (http_service) against the real server and the
Authorizer: the original request is the request line after the prefix, the answers are
those of gRPC and /authz, and only a trusted proxy's word is taken."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.http_protocol import Request
from authz_sidecar.http_server import HEADERS_TO_REMOVE, SidecarHttp, start_http_server
from tests.e2e.sidecar_procs import free_port
from tests.unit.sidecar.factory import ALICE, BOB, GATEWAY_TOKEN, ORG, Keys, access_token


async def _serve(app: SidecarHttp) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    server = await start_http_server(app, "127.0.0.1", port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client
    server.close()
    await app.close_connections()
    await server.wait_closed()


@pytest.fixture
async def http(authorizer: Authorizer) -> AsyncIterator[httpx.AsyncClient]:
    async for client in _serve(SidecarHttp(authorizer, max_body=1 << 20)):
        yield client


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_allow_carries_the_upstream_headers_and_drops_the_callers(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    headers = {
        **_bearer(access_token(keys, ALICE)),
        "x-kaizen-principal": "user:mallory@example.com",
        "x-kaizen-decision": "forged.jwt.value",
        "x-kaizen-workspace": "prod",
    }
    response = await http.post("/ext_authz/v1/agents/a/invoke", headers=headers, content=b"{}")
    assert response.status_code == 200
    assert response.headers["x-kaizen-principal"] == f"user:{ALICE}"
    assert response.headers["x-kaizen-organization"] == ORG
    assert response.headers["x-kaizen-decision-id"] == response.json()["decision_id"]
    # Ours overwrite same-named caller headers at Envoy; the caller's others are removed.
    assert response.headers[HEADERS_TO_REMOVE] == "x-kaizen-workspace"


async def test_deny_401_and_require_approval_answer_as_on_the_other_transports(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    denied = await http.post(
        "/ext_authz/v1/agents/a/invoke", headers=_bearer(access_token(keys, BOB))
    )
    assert denied.status_code == 403
    assert denied.json()["outcome"] == "deny"
    assert denied.headers["x-kaizen-decision-id"] == denied.json()["decision_id"]
    assert HEADERS_TO_REMOVE not in denied.headers
    anonymous = await http.post("/ext_authz/v1/agents/a/invoke")
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    held = await http.post(
        "/ext_authz/v1/agents/deployer/invoke", headers=_bearer(access_token(keys))
    )
    assert held.status_code == 403
    assert held.json()["outcome"] == "require_approval"
    assert held.headers["x-kaizen-approval-request-id"] == held.json()["approval_request_id"]


async def test_the_original_method_and_query_come_from_the_request_line(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    wrong_method = await http.get(
        "/ext_authz/v1/agents/a/invoke?x=1", headers=_bearer(access_token(keys))
    )
    assert wrong_method.status_code == 403
    assert "use POST" in wrong_method.json()["reasons"][0]
    # X-Original-URI is nginx's word; on /ext_authz it names nothing.
    unmapped = await http.post(
        "/ext_authz/admin",
        headers={**_bearer(access_token(keys)), "x-original-uri": "/v1/agents/a/invoke"},
    )
    assert unmapped.status_code == 403
    assert "no gateway route" in unmapped.json()["reasons"][0]


async def test_a_prefix_without_a_path_is_refused(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.post("/ext_authzv1/agents/a/invoke", headers=_bearer(access_token(keys)))
    assert response.status_code == 403
    assert "must be followed by the original path" in response.json()["reasons"][0]


async def test_an_untrusted_peer_cannot_ask_ext_authz(authorizer: Authorizer, keys: Keys) -> None:
    app = SidecarHttp(
        authorizer, max_body=1 << 20, gateway_token=GATEWAY_TOKEN, trusted_proxies=["10.9.0.0/16"]
    )
    async for client in _serve(app):
        response = await client.post(
            "/ext_authz/v1/agents/a/invoke",
            # Not even the gateway credential opens /ext_authz: its headers are the caller's.
            headers={**_bearer(access_token(keys)), "x-kaizen-gateway-token": GATEWAY_TOKEN},
        )
        assert response.status_code == 403
        assert "only accepted from a trusted proxy" in response.json()["reasons"][0]


def test_facts_take_envoys_source_address_and_partial_body_flag(
    authorizer: Authorizer,
) -> None:
    app = SidecarHttp(authorizer, max_body=1 << 20)
    body = b'{"input": 1}'
    facts = app._ext_authz_facts(
        Request(
            "POST",
            "/ext_authz/v1/agents/a/invoke?q=1",
            {"x-ext-authz-source-ip": "203.0.113.7", "x-forwarded-for": "198.51.100.9"},
            body,
            "127.0.0.1",
        )
    )
    assert (facts.path, facts.source_ip, facts.refusal) == (
        "/v1/agents/a/invoke?q=1",
        "203.0.113.7",
        None,
    )
    assert facts.body_sha256() == hashlib.sha256(body).hexdigest()
    partial = app._ext_authz_facts(
        Request("POST", "/ext_authz/mcp", {"x-envoy-auth-partial-body": "true"}, body, "::1")
    )
    assert partial.body_truncated
    assert partial.body_sha256() is None
    assert partial.source_ip == "::1"  # Envoy named none: the peer
    forged = app._ext_authz_facts(
        Request("POST", "/ext_authz/mcp", {"x-ext-authz-source-ip": "not-an-ip"}, b"", "127.0.0.1")
    )
    assert forged.source_ip == "127.0.0.1"

"""Response shapes over real sockets: HTTP `/authz` & co., and gRPC ext_authz Check."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import grpc
import httpx
import jwt
import pytest
from envoy.service.auth.v3 import external_auth_pb2, external_auth_pb2_grpc
from google.rpc import code_pb2

from authz_sidecar.authorizer import Authorizer
from authz_sidecar.budgets import InMemoryReservationBook
from authz_sidecar.engine_holder import EngineHolder
from authz_sidecar.grants import InMemoryReplayGuard
from authz_sidecar.grpc_server import start_grpc_server
from authz_sidecar.http_server import SidecarHttp, start_http_server
from policy.engine.budgets import InMemoryBudgetLedger
from tests.e2e.sidecar_procs import free_port
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    AUDIENCE,
    BOB,
    ISSUER,
    ORG,
    Keys,
    access_token,
)


@pytest.fixture
async def http(authorizer: Authorizer) -> AsyncIterator[httpx.AsyncClient]:
    port = free_port()
    app = SidecarHttp(authorizer, max_body=1 << 20, gateway_token=GATEWAY_TOKEN)
    server = await start_http_server(app, "127.0.0.1", port)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
        yield client
    server.close()
    await app.close_connections()
    await server.wait_closed()


@pytest.fixture
async def stub(authorizer: Authorizer) -> AsyncIterator[external_auth_pb2_grpc.AuthorizationStub]:
    port = free_port()
    server = await start_grpc_server(authorizer, "127.0.0.1", port, 1 << 20)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        yield external_auth_pb2_grpc.AuthorizationStub(channel)
    await server.stop(None)


GATEWAY_TOKEN = "kgw_unit-test-gateway-credential"
GATEWAY = {"Authorization": f"Bearer {GATEWAY_TOKEN}"}


def original(path: str, token: str | None, method: str = "POST") -> dict[str, str]:
    headers = {"X-Original-Method": method, "X-Original-URI": path}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return headers


async def test_http_authz_allow(http: httpx.AsyncClient, keys: Keys) -> None:
    response = await http.get("/authz", headers=original("/v1/agents/a/invoke", access_token(keys)))
    assert response.status_code == 200
    assert response.headers["x-kaizen-principal"] == f"user:{ALICE}"
    assert response.headers["x-kaizen-organization"] == ORG
    assert response.headers["x-kaizen-decision-id"] == response.json()["decision_id"]
    assert response.headers["x-kaizen-decision"].count(".") == 2


async def test_http_authz_deny_401_and_require_approval(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    denied = await http.post(
        "/authz", headers=original("/v1/agents/a/invoke", access_token(keys, BOB))
    )
    assert denied.status_code == 403
    body = denied.json()
    assert set(body) == {"decision_id", "outcome", "reasons", "bundle_revision"}
    assert (body["outcome"], body["bundle_revision"]) == ("deny", "1")
    assert denied.headers["x-kaizen-decision-id"] == body["decision_id"]
    anonymous = await http.post("/authz", headers=original("/v1/agents/a/invoke", None))
    assert anonymous.status_code == 401
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    held = await http.post(
        "/authz", headers=original("/v1/agents/deployer/invoke", access_token(keys))
    )
    assert held.status_code == 403
    assert held.json()["outcome"] == "require_approval"
    assert held.headers["x-kaizen-approval-request-id"] == held.json()["approval_request_id"]


async def test_health_status_metrics(http: httpx.AsyncClient, authorizer: Authorizer) -> None:
    assert (await http.get("/healthz")).json() == {"status": "ok", "bundle_revision": "1"}
    status = (await http.get("/status", headers=GATEWAY)).json()
    assert (status["ready"], status["bundle_revision"], status["key_id"]) == (True, "1", "cp-key-1")
    metrics = (await http.get("/metrics")).text
    assert "kaizen_sidecar_decision_seconds_bucket" in metrics
    authorizer.holder.current = None
    unready = await http.get("/healthz")
    assert unready.status_code == 503
    assert unready.json()["reason"] == "no verified policy bundle loaded"
    denied = await http.post("/authz", headers=original("/v1/agents/a/invoke", "x"))
    assert denied.status_code == 403
    assert denied.json()["reasons"] == ["no verified policy bundle loaded"]


async def test_settle(http: httpx.AsyncClient) -> None:
    allowed = await http.post("/authz", headers=original("/v1/agents/a/invoke", API_KEY))
    decision_id = allowed.json()["decision_id"]
    settled = await http.post(
        "/settle", json={"decision_id": decision_id, "actual": {"executions": 1}}, headers=GATEWAY
    )
    assert settled.status_code == 204
    again = await http.post(
        "/settle", json={"decision_id": decision_id, "actual": {}}, headers=GATEWAY
    )
    assert again.status_code == 404
    bad = await http.post(
        "/settle", json={"decision_id": decision_id, "actual": {"x": -1}}, headers=GATEWAY
    )
    assert bad.status_code == 422
    assert (await http.post("/settle", content=b"{", headers=GATEWAY)).status_code == 400


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (b"PUT /authz HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"POST /settle HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nZZ\r\n", 400),
        (b"POST /settle HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n", 413),
        (b"GET /healthz HTTP/1.1\r\nX: " + b"a" * 40_000 + b"\r\n\r\n", 431),
    ],
)
async def test_malformed_http_gets_a_clear_4xx(
    http: httpx.AsyncClient, raw: bytes, status: int
) -> None:
    import asyncio

    port = int(str(http.base_url).rsplit(":", 1)[1].rstrip("/"))
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    line = await reader.readline()
    writer.close()
    await writer.wait_closed()
    assert line.startswith(f"HTTP/1.1 {status} ".encode()), line


def check_request(
    path: str, token: str | None, body: bytes = b""
) -> external_auth_pb2.CheckRequest:
    request = external_auth_pb2.CheckRequest()
    http = request.attributes.request.http
    http.method, http.path = "POST", path
    if token is not None:
        http.headers["authorization"] = f"Bearer {token}"
    http.headers["x-kaizen-workspace"] = "prod"
    http.raw_body = body
    request.attributes.source.address.socket_address.address = "203.0.113.9"
    return request


async def test_grpc_allow_sets_upstream_headers_and_strips_caller_kaizen_headers(
    stub: external_auth_pb2_grpc.AuthorizationStub, keys: Keys
) -> None:
    response = await stub.Check(check_request("/v1/agents/a/invoke", access_token(keys)))
    assert response.status.code == code_pb2.OK
    headers = {h.header.key: h.header.value for h in response.ok_response.headers}
    assert headers["x-kaizen-principal"] == f"user:{ALICE}"
    assert headers["x-kaizen-organization"] == ORG
    assert len(headers["x-kaizen-decision-id"]) == 32
    assert list(response.ok_response.headers_to_remove) == ["x-kaizen-workspace"]


async def test_grpc_deny_401_and_require_approval(
    stub: external_auth_pb2_grpc.AuthorizationStub, keys: Keys
) -> None:
    denied = await stub.Check(check_request("/v1/agents/a/invoke", access_token(keys, BOB)))
    assert denied.status.code == code_pb2.PERMISSION_DENIED
    assert denied.denied_response.status.code == 403
    body = json.loads(denied.denied_response.body)
    headers = {h.header.key: h.header.value for h in denied.denied_response.headers}
    assert headers["x-kaizen-decision-id"] == body["decision_id"]
    assert body["outcome"] == "deny"
    anonymous = await stub.Check(check_request("/v1/agents/a/invoke", None))
    assert anonymous.status.code == code_pb2.UNAUTHENTICATED
    assert anonymous.denied_response.status.code == 401
    held = await stub.Check(check_request("/v1/agents/deployer/invoke", access_token(keys)))
    assert held.denied_response.status.code == 403
    assert json.loads(held.denied_response.body)["approval_request_id"]
    mcp = json.dumps({"method": "tools/call", "params": {"name": "shell"}}).encode()
    shell = await stub.Check(check_request("/mcp", access_token(keys), mcp))
    assert json.loads(shell.denied_response.body)["reasons"] == ["mcp tool shell is forbidden"]


async def test_bundle_swap_is_atomic_and_never_goes_back(keys: Keys) -> None:
    from policy.bundles.bundle import load_bundle
    from tests.unit.sidecar.factory import make_bundle

    holder = EngineHolder(InMemoryBudgetLedger(), issuer=ISSUER, audience=AUDIENCE)
    two = load_bundle(make_bundle(keys, revision=2), keys.jwks, scope=ORG)
    one = load_bundle(make_bundle(keys, revision=1), keys.jwks, scope=ORG)
    assert holder.swap(two)
    assert not holder.swap(one)
    assert holder.current is not None
    assert holder.current.bundle.revision == "2"
    broken = load_bundle(make_bundle(keys, revision=3), keys.jwks, scope=ORG)
    object.__setattr__(broken.compiled, "rego_modules", {"kaizen/abac/x/policy.rego": "package"})
    assert not holder.swap(broken)
    assert holder.current.bundle.revision == "2"
    assert holder.last_error is not None
    authorizer = Authorizer(
        holder, replay_guard=InMemoryReplayGuard(), reservations=InMemoryReservationBook()
    )
    assert authorizer.holder.ready


@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("127.0.0.1", True),
        ("::1", True),
        ("::ffff:127.0.0.1", True),
        ("10.0.0.5", False),
        ("fe80::1%eth0", False),
        ("not-an-ip", False),
        (None, False),
    ],
)
def test_only_configured_proxies_may_name_the_original_request(
    authorizer: Authorizer, peer: str | None, trusted: bool
) -> None:
    app = SidecarHttp(authorizer, max_body=1 << 20, gateway_token=GATEWAY_TOKEN)
    headers = {"x-original-uri": "/v1/agents/a/invoke", "x-real-ip": "203.0.113.7"}
    facts = app._facts("POST", headers, b"", peer)
    assert (facts.refusal is None) is trusted
    assert facts.source_ip == ("203.0.113.7" if trusted else peer)
    # The gateway credential vouches for any peer (the gateway's nested checks).
    vouched = app._facts("POST", {**headers, "x-kaizen-gateway-token": GATEWAY_TOKEN}, b"", peer)
    assert vouched.refusal is None
    forged = app._facts("POST", {**headers, "x-kaizen-gateway-token": "kgw_guess"}, b"", peer)
    assert (forged.refusal is None) is trusted


async def test_settle_and_status_are_closed_without_a_gateway_token(authorizer: Authorizer) -> None:
    port = free_port()
    app = SidecarHttp(authorizer, max_body=1 << 20)
    server = await start_http_server(app, "127.0.0.1", port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for response in (
                await client.get("/status", headers=GATEWAY),
                await client.post("/settle", json={"decision_id": "x"}, headers=GATEWAY),
            ):
                assert response.status_code == 401
                assert "no gateway credential" in response.json()["error"]["message"]
    finally:
        server.close()
        await app.close_connections()
        await server.wait_closed()


async def test_the_signed_header_says_whether_the_call_reserved_budget(
    http: httpx.AsyncClient, keys: Keys
) -> None:
    """`rsv` in x-kaizen-decision is true exactly when /settle has something to settle: the
    gateway skips the settle of a call that reserved nothing."""
    seen = {}
    for name, credential in (("api key", API_KEY), ("user", access_token(keys))):
        allowed = await http.post("/authz", headers=original("/v1/agents/a/invoke", credential))
        assert allowed.status_code == 200
        claims = jwt.decode(allowed.headers["x-kaizen-decision"], b"k" * 32, algorithms=["HS256"])
        settled = await http.post(
            "/settle",
            json={"decision_id": claims["decision_id"], "actual": {}},
            headers=GATEWAY,
        )
        assert claims["rsv"] is (settled.status_code == 204), name
        seen[name] = claims["rsv"]
    assert seen == {"api key": True, "user": False}  # the policy budgets apikey:ci-bot only

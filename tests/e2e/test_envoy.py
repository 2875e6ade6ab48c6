"""The sidecar behind a real Envoy (deploy/envoy/envoy.yaml): `kaizen-studio sidecar` in
static mode with a bundle signed here, a stand-in gateway upstream, and every outcome a
caller can meet — allow, deny, 401, require_approval then a granted retry, grant reuse,
budgets, MCP tool calls, and Envoy failing closed when the sidecar is gone. Every test runs
over both ext_authz transports: HTTP (`http_service` to /ext_authz, the default) and gRPC."""

from __future__ import annotations

import http.client
import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import jwt
import pytest

from authz_sidecar.verdict import decision_header_key  # noqa: TID251
from tests.conftest import REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import (
    ALICE,
    API_KEY,
    BOB,
    ORG,
    Keys,
    access_token,
    approval_grant,
    make_bundle,
    make_keys,
)

GATEWAY_TOKEN = "kgw_e2e_test_credential"


@dataclass
class Stack:
    url: str
    keys: Keys
    sidecar: subprocess.Popen[bytes]
    grpc_port: int
    http_port: int
    transport: str
    home: Path


@pytest.fixture(scope="module", params=procs.TRANSPORTS)
def stack(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[Stack]:
    transport = request.param
    tmp = tmp_path_factory.mktemp(f"envoy-{transport}")
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, admin = procs.free_port(), procs.free_port()
    with (
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(
            procs.start_sidecar(
                tmp / "home",
                grpc_port,
                http_port,
                KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,
                # Grants are single use only through shared Redis; without it they are refused.
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=f"{REDIS_PREFIX}envoy-{transport}:",
                # Nothing listens there: decision logs wait on disk, decisions go on.
                KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
            )
        ) as sidecar,
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen, admin, grpc_port, upstream, sidecar_http=http_port, transport=transport
                ),
                tmp,
                admin,
            )
        ),
    ):
        yield Stack(
            f"http://127.0.0.1:{listen}",
            keys,
            sidecar,
            grpc_port,
            http_port,
            transport,
            tmp / "home",
        )


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_allowed_call_reaches_the_gateway_with_kaizen_headers(stack: Stack) -> None:
    headers = {
        **_auth(access_token(stack.keys, ALICE)),
        "X-Kaizen-Principal": "user:mallory@example.com",  # a caller cannot pose as another
        "X-Kaizen-Workspace": "prod",
    }
    response = httpx.post(f"{stack.url}/v1/agents/support-bot/invoke", headers=headers, json={})
    assert response.status_code == 200, response.text
    seen = response.json()["headers"]
    assert seen["x-kaizen-principal"] == f"user:{ALICE}"
    assert seen["x-kaizen-organization"] == ORG
    assert len(seen["x-kaizen-decision-id"]) == 32
    assert "x-kaizen-workspace" not in seen  # the caller's x-kaizen-* headers are stripped
    signed = jwt.decode(
        seen["x-kaizen-decision"], decision_header_key(GATEWAY_TOKEN), algorithms=["HS256"]
    )
    assert signed["decision_id"] == seen["x-kaizen-decision-id"]
    assert (signed["sub"], signed["action"], signed["resource"], signed["channel"]) == (
        f"user:{ALICE}",
        "invoke",
        "agent:support-bot",
        "api",
    )


def test_denied_call_gets_403_with_reasons_and_never_reaches_the_gateway(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/v1/pipelines/etl/run", headers=_auth(access_token(stack.keys, BOB))
    )
    assert response.status_code == 403
    body = response.json()
    assert body["outcome"] == "deny"
    assert body["bundle_revision"] == "1"
    assert body["reasons"]
    assert "upstream" not in body
    assert response.headers["x-kaizen-decision-id"] == body["decision_id"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic YWxpY2U6cHc="}],
    ids=["none", "garbage", "basic"],
)
def test_missing_or_bad_credentials_get_401(stack: Stack, headers: dict[str, str]) -> None:
    response = httpx.post(f"{stack.url}/v1/agents/support-bot/invoke", headers=headers)
    assert response.status_code == 401
    assert response.json()["reasons"][0].startswith("authentication failed")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_unknown_route_is_denied_with_a_reason(stack: Stack) -> None:
    response = httpx.get(f"{stack.url}/admin/secrets", headers=_auth(access_token(stack.keys)))
    assert response.status_code == 403
    assert "no gateway route" in response.json()["reasons"][0]


def test_mcp_tool_calls_are_decided_on_the_json_rpc_body(stack: Stack) -> None:
    token = access_token(stack.keys, ALICE)

    def call(tool: str) -> httpx.Response:
        message = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tools/call",
            "params": {"name": tool, "arguments": {"q": "x"}},
        }
        return httpx.post(f"{stack.url}/mcp", headers=_auth(token), json=message)

    shell = call("shell")
    assert shell.status_code == 403
    assert "mcp tool shell is forbidden" in shell.json()["reasons"]
    allowed = call("restart-service")
    assert allowed.status_code == 200
    seen = allowed.json()["headers"]
    signed = jwt.decode(
        seen["x-kaizen-decision"], decision_header_key(GATEWAY_TOKEN), algorithms=["HS256"]
    )
    assert (signed["resource"], signed["channel"]) == ("agent:ops", "mcp")  # the tool's agent
    listed = httpx.post(
        f"{stack.url}/mcp",
        headers=_auth(token),
        json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    )
    assert listed.status_code == 200


def test_require_approval_then_a_granted_retry_is_allowed_once(stack: Stack) -> None:
    url = f"{stack.url}/v1/agents/deployer/invoke"
    headers = _auth(access_token(stack.keys, ALICE))
    held = httpx.post(url, headers=headers)
    assert held.status_code == 403
    body = held.json()
    assert body["outcome"] == "require_approval"
    assert body["approval_request_id"]
    grant = approval_grant(
        stack.keys, approval_request_id=body["approval_request_id"], gateway_token=GATEWAY_TOKEN
    )
    granted = httpx.post(url, headers={**headers, "X-Kaizen-Approval": grant})
    assert granted.status_code == 200, granted.text
    assert "x-kaizen-approval" not in granted.json()["headers"]
    again = httpx.post(url, headers={**headers, "X-Kaizen-Approval": grant})
    assert again.status_code == 403
    assert any("already used" in reason for reason in again.json()["reasons"])
    other = approval_grant(stack.keys, resource="agent:other", gateway_token=GATEWAY_TOKEN)
    wrong = httpx.post(url, headers={**headers, "X-Kaizen-Approval": other})
    assert wrong.status_code == 403
    assert any("different resource" in reason for reason in wrong.json()["reasons"])


def test_budget_limit_denies_and_names_the_budget(stack: Stack) -> None:
    url = f"{stack.url}/v1/agents/builder/invoke"
    statuses = [httpx.post(url, headers=_auth(API_KEY)).status_code for _ in range(3)]
    assert statuses == [200, 200, 200]
    over = httpx.post(url, headers=_auth(API_KEY))
    assert over.status_code == 403
    assert "budget ci-daily" in over.json()["reasons"][0]
    assert "limit 3" in over.json()["reasons"][0]


def test_sidecar_serves_health_status_and_metrics(stack: Stack) -> None:
    base = f"http://127.0.0.1:{stack.http_port}"
    assert httpx.get(f"{base}/healthz").json()["bundle_revision"] == "1"
    status = httpx.get(f"{base}/status", headers=_auth(GATEWAY_TOKEN)).json()
    assert (status["bundle_revision"], status["key_id"]) == ("1", stack.keys.kid)
    assert status["log_backlog"] is not None
    metrics = httpx.get(f"{base}/metrics").text
    assert "kaizen_sidecar_decisions_total" in metrics
    assert "kaizen_sidecar_bundle_revision 1.0" in metrics


def test_envoy_fails_closed_when_the_sidecar_is_gone(stack: Stack, tmp_path: Path) -> None:
    keys = stack.keys
    (tmp_path / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp_path / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, admin = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        tmp_path / "home",
        grpc_port,
        http_port,
        KAIZEN_SIDECAR_BUNDLE=str(tmp_path / "bundle.tar.gz"),
        KAIZEN_SIDECAR_JWKS=str(tmp_path / "jwks.json"),
    )
    with (
        procs.running(sidecar),
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen,
                    admin,
                    grpc_port,
                    upstream,
                    sidecar_http=http_port,
                    transport=stack.transport,
                ),
                tmp_path,
                admin,
            )
        ),
    ):
        url = f"http://127.0.0.1:{listen}/v1/agents/support-bot/invoke"
        headers = _auth(access_token(keys, ALICE))
        assert httpx.post(url, headers=headers).status_code == 200
        assert procs.stop(sidecar) == 0  # SIGTERM: a clean exit
        refused = httpx.post(url, headers=headers)
        assert refused.status_code in (403, 500, 502, 503)
        assert "upstream" not in refused.text


def _logged_input(stack: Stack, decision_id: str) -> dict[str, object]:
    """The decision input the sidecar logged (its NDJSON decision-log segments on disk)."""
    for segment in (stack.home / "sidecar" / "decision-log").glob("worker-*/*.ndjson"):
        for line in segment.read_text().splitlines():
            record = json.loads(line)
            if record.get("decision_id") == decision_id:
                return dict(record["input"])
    raise AssertionError(f"decision {decision_id} is not in the decision log")


def test_forged_forwarded_for_does_not_choose_the_source_address_is_refused(
    stack: Stack,
) -> None:
    """A caller's X-Forwarded-For / X-Real-IP / X-Ext-Authz-Source-Ip never become the
    request's source address: over HTTP it is the one Envoy sets from the connection."""
    headers = {
        **_auth(access_token(stack.keys, ALICE)),
        "X-Forwarded-For": "203.0.113.66",
        "X-Real-IP": "203.0.113.67",
        "X-Ext-Authz-Source-Ip": "203.0.113.68",  # the name Envoy sets: never the caller's
    }
    response = httpx.post(f"{stack.url}/v1/agents/support-bot/invoke", headers=headers, json={})
    assert response.status_code == 200, response.text
    decision_id = response.json()["headers"]["x-kaizen-decision-id"]
    request = _logged_input(stack, decision_id)["request"]
    assert isinstance(request, dict)
    assert request["source_ip"] == "127.0.0.1"


def _raw_get(url: str, path: str) -> tuple[int, bytes]:
    """GET `path` exactly as written (no client-side dot-segment removal)."""
    parsed = httpx.URL(url)
    connection = http.client.HTTPConnection(parsed.host, parsed.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def test_only_the_protected_resource_metadata_passes_without_a_decision(stack: Stack) -> None:
    """RFC 9728: an MCP client reads the metadata before it has a token, so Envoy skips
    ext_authz for exactly those two paths; anything near them, or reached through them by
    dot segments, is still decided (and refused without a credential)."""
    for path in (
        "/.well-known/oauth-protected-resource",
        "/.well-known/oauth-protected-resource/mcp",
    ):
        status, body = _raw_get(stack.url, path)
        assert status == 200, body
        seen = json.loads(body)
        assert seen["path"] == path
        assert "x-kaizen-decision" not in seen["headers"]  # no decision was made or forged
    for path in (
        "/.well-known/oauth-protected-resource/other",
        "/.well-known/oauth-protected-resourcex",
        "/.well-known/oauth-protected-resource/mcp/../../../v1/agents/support-bot/invoke",
        "/.well-known/oauth-protected-resource/%2e%2e/%2e%2e/v1/agents/support-bot/invoke",
    ):
        status, body = _raw_get(stack.url, path)
        assert status in (400, 401, 404), (path, status, body)
        assert b'"upstream"' not in body, path

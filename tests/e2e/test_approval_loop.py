"""Milestone M5's approval loop with every real part: a control-plane process (PostgreSQL +
Redis), `kaizen-studio sidecar` in sync mode, a real Envoy in front of a stand-in upstream.

A developer's call to the prod deployer agent is held (403 `require_approval` with its
approval request id). The held decision reaches the control plane through the sidecar's
decision log and becomes an approval request; the requester cannot approve it, an approver
(the owner, by role) does, with a comment. The requester fetches the single-use grant and
the retry carrying it passes Envoy once; a second use is refused. An auditor then finds
the call by principal and time, with the bundle revision that decided it, exports the day
as NDJSON, and verifies the chain.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import PASSWORD, REDIS_PREFIX, REDIS_URL
from tests.e2e import sidecar_procs as procs
from tests.e2e.accounts import sign_up, unique

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


def test_a_held_call_is_approved_and_its_grant_passes_once(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp, _owner, admin = sign_up(shared_control_plane, request, unique("owner") + "@example.com")
    dev_email = unique("dev") + "@example.com"

    def login_as(email: str, role: str) -> dict[str, str]:
        created = cp.post(
            "/api/v1/users",
            json={"email": email, "password": PASSWORD, "role": role},
            headers=admin,
        )
        assert created.status_code == 201, created.text
        tokens = cp.post("/api/v1/auth/login", json={"email": email, "password": PASSWORD})
        return {"Authorization": f"Bearer {tokens.json()['access_token']}"}

    developer = login_as(dev_email, "developer")
    auditor = login_as(unique("audit") + "@example.com", "auditor")
    source = POLICY % {"developer": dev_email}
    assert cp.post("/api/v1/policies", json={"source": source}, headers=admin).status_code == 201
    published = cp.post("/api/v1/policies/publish", json={}, headers=admin)
    assert published.status_code == 201, published.text
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()
    # What decides: the publish, re-signed when the gateway registered (its MCP URL).
    deciding = cp.get(f"/api/v1/gateways/{gateway['id']}", headers=admin).json()
    assert deciding["current_revision"] == published.json()["revision"] + 1

    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, envoy_admin = procs.free_port(), procs.free_port()
    deployer = f"http://127.0.0.1:{listen}/v1/agents/deployer/invoke"
    with (
        procs.running(procs.start_helper("upstream", upstream)),
        procs.running(
            procs.start_envoy(
                procs.envoy_config(
                    listen, envoy_admin, grpc_port, upstream, sidecar_http=http_port
                ),
                tmp_path,
                envoy_admin,
            )
        ),
        procs.running(
            procs.start_sidecar(
                tmp_path / "sidecar",
                grpc_port,
                http_port,
                KAIZEN_GATEWAY_TOKEN=gateway["credential"],
                KAIZEN_CONTROL_PLANE_URL=shared_control_plane.url,
                # Grants are single use fleet-wide through shared Redis (refused without it).
                KAIZEN_REDIS_URL=REDIS_URL,
                KAIZEN_REDIS_PREFIX=f"{REDIS_PREFIX}loop-{secrets.token_hex(3)}:",
            )
        ),
    ):
        asked_at = datetime.now(UTC) - timedelta(minutes=1)
        held = httpx.post(deployer, json={"input": "ship v2"}, headers=developer)
        assert held.status_code == 403, held.text
        assert held.json()["outcome"] == "require_approval"
        request_id = held.json()["approval_request_id"]

        # The held decision reaches the control plane and opens a request.
        def pending() -> dict[str, Any] | None:
            response = cp.get(f"/api/v1/approvals/{request_id}", headers=admin)
            return response.json() if response.status_code == 200 else None

        opened = _eventually(pending, 30, "the approval request")
        assert opened["status"] == "pending"
        assert opened["principal"] == f"user:{dev_email}"
        assert opened["resource"] == "agent:deployer"
        assert opened["reasons"] == ["prod deployments need a second pair of eyes"]

        own = cp.post(f"/api/v1/approvals/{request_id}/approve", json={}, headers=developer)
        assert own.status_code == 403, own.text  # never your own request
        approved = cp.post(
            f"/api/v1/approvals/{request_id}/approve",
            json={"comment": "change ticket CHG-42"},
            headers=admin,
        )
        assert approved.status_code == 200, approved.text
        again = cp.post(f"/api/v1/approvals/{request_id}/approve", json={}, headers=admin)
        assert again.status_code == 409

        assert cp.get(f"/api/v1/approvals/{request_id}", headers=admin).json()["grant"] is None
        grant = cp.get(f"/api/v1/approvals/{request_id}", headers=developer).json()["grant"]
        assert grant
        retry = {**developer, "X-Kaizen-Approval": grant}
        passed = httpx.post(deployer, json={"input": "ship v2"}, headers=retry)
        assert passed.status_code == 200, passed.text
        replayed = httpx.post(deployer, json={"input": "ship v2"}, headers=retry)
        assert replayed.status_code == 403, replayed.text  # single use

        # The auditor finds the granted call, its deciding revision, exports, verifies.
        # The log is shipped asynchronously, so wait for all three of the developer's
        # calls (held, granted, replayed) before counting what the chain covers.
        def logged() -> list[dict[str, Any]] | None:
            found = cp.get(
                "/api/v1/decisions",
                params={
                    "principal": f"user:{dev_email}",
                    "since": asked_at.isoformat().replace("+00:00", "Z"),
                },
                headers=auditor,
            )
            assert found.status_code == 200, found.text
            items = list(found.json()["items"])
            return items if len(items) >= 3 else None

        calls = _eventually(logged, 30, "the developer's three calls in the decision log")
        assert len(calls) == 3
        (call,) = [c for c in calls if c["outcome"] == "allow"]
        assert call["resource"] == "agent:deployer"
        detail = cp.get(f"/api/v1/decisions/{call['decision_id']}", headers=auditor).json()
        assert str(detail["bundle_revision"]) == str(deciding["current_revision"])
        day = call["time"][:10]
        export = cp.get(
            "/api/v1/decisions/export",
            params={"format": "ndjson", "since": f"{day}T00:00:00Z", "until": f"{day}T23:59:59Z"},
            headers=auditor,
        )
        assert export.status_code == 200, export.text
        exported = [json.loads(line) for line in export.text.splitlines() if line]
        assert call["decision_id"] in {d["decision_id"] for d in exported}
        verified = cp.get("/api/v1/decisions/verify", headers=auditor).json()
        assert verified["ok"] is True
        assert verified["checked"] >= 3

"""AuthZEN 1.0 against the real `kaizen-studio sidecar` process, with a plain HTTP client.

The policy and the PEP's API key come from a real control plane (PostgreSQL + Redis); the
sidecar syncs the signed bundle, answers the AuthZEN requests on its HTTP port and ships
each evaluation to the control plane's decision log, where an auditor finds it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import sidecar_procs as procs
from tests.e2e.accounts import sign_up, unique

POLICY = """\
kind: RolePolicy
metadata: {name: records}
spec:
  roles:
    - name: record-editor
      permissions: [{resource: "record:*", actions: [read, write, purge]}]
  bindings:
    - {subject: "user:alice", role: record-editor}
---
kind: RegoPolicy
metadata: {name: record-rules}
spec:
  rego: |
    package kaizen.abac.records
    import rego.v1
    deny contains "archived records are read-only" if {
      input.action == "write"
      input.resource.attributes.status == "archived"
    }
    require_approval contains "purging a record needs approval" if input.action == "purge"
"""


def _logged(cp: httpx.Client, admin: dict[str, str]) -> dict[str, dict[str, Any]]:
    page = cp.get("/api/v1/decisions", params={"limit": 500}, headers=admin).json()
    return {item["decision_id"]: item for item in page["items"]}


def test_an_authzen_client_gets_decisions_that_reach_the_decision_log(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp, _owner, admin = sign_up(shared_control_plane, request, unique("sec") + "@example.com")
    assert cp.post("/api/v1/policies", json={"source": POLICY}, headers=admin).status_code == 201
    pep = cp.post(
        "/api/v1/api-keys",
        json={"name": "records-app", "role": "viewer", "scopes": ["decisions:evaluate"]},
        headers=admin,
    )
    assert pep.status_code == 201, pep.text
    plain = cp.post("/api/v1/api-keys", json={"name": "unscoped"}, headers=admin)
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()

    grpc_port, http_port = procs.free_port(), procs.free_port()
    base_url = f"http://127.0.0.1:{http_port}"
    sidecar = procs.start_sidecar(
        tmp_path / "sidecar",
        grpc_port,
        http_port,
        KAIZEN_GATEWAY_TOKEN=gateway["credential"],
        KAIZEN_CONTROL_PLANE_URL=shared_control_plane.url,
        KAIZEN_SIDECAR_AUTHZEN_BASE_URL=base_url,
    )
    with procs.running(sidecar), httpx.Client(base_url=base_url, timeout=10) as pdp:
        metadata = pdp.get("/.well-known/authzen-configuration").json()
        assert metadata["access_evaluation_endpoint"] == f"{base_url}/access/v1/evaluation"
        caller = {"Authorization": f"Bearer {pep.json()['key']}", "X-Request-ID": "req-1"}

        def evaluate(action: str, record: str, **properties: Any) -> dict[str, Any]:
            body = {
                "subject": {"type": "user", "id": "alice"},
                "action": {"name": action},
                "resource": {"type": "record", "id": record, "properties": properties},
            }
            response = pdp.post(metadata["access_evaluation_endpoint"], json=body, headers=caller)
            assert response.status_code == 200, response.text
            assert response.headers["x-request-id"] == "req-1"
            answer: dict[str, Any] = response.json()
            return answer

        allowed = evaluate("read", "record-1")
        denied = evaluate("write", "record-2", status="archived")
        held = evaluate("purge", "record-3")
        assert allowed["decision"] is True
        assert (denied["decision"], denied["context"]["reasons"]) == (
            False,
            ["archived records are read-only"],
        )
        assert (held["decision"], held["context"]["outcome"]) == (False, "require_approval")
        assert held["context"]["approval_request_id"] == held["context"]["decision_id"]

        batch = pdp.post(
            "/access/v1/evaluations",
            json={
                "subject": {"type": "user", "id": "bob"},
                "action": {"name": "read"},
                "evaluations": [{"resource": {"type": "record", "id": "record-1"}}],
            },
            headers=caller,
        ).json()
        (bob,) = batch["evaluations"]
        assert bob["decision"] is False

        # Only a key the organisation gave the decision scope may ask.
        refused = pdp.post(
            "/access/v1/evaluation",
            json={"subject": {}, "action": {}, "resource": {}},
            headers={"Authorization": f"Bearer {plain.json()['key']}"},
        )
        assert refused.status_code == 403
        malformed = pdp.post("/access/v1/evaluation", content=b"{", headers=caller)
        assert malformed.status_code == 400

        answers = {
            allowed["context"]["decision_id"]: ("record:record-1", "allow", "user:alice"),
            denied["context"]["decision_id"]: ("record:record-2", "deny", "user:alice"),
            held["context"]["decision_id"]: ("record:record-3", "require_approval", "user:alice"),
            bob["context"]["decision_id"]: ("record:record-1", "deny", "user:bob"),
        }
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            logged = _logged(cp, admin)
            if set(answers) <= set(logged):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"AuthZEN decisions not in the decision log: {sorted(answers)}")
        for decision_id, (resource, outcome, principal) in answers.items():
            row = logged[decision_id]
            assert (row["resource"], row["outcome"], row["principal"]) == (
                resource,
                outcome,
                principal,
            )
            assert row["action"] in ("read", "write", "purge")
            assert row["gateway_id"] == gateway["id"]
        assert len(logged) == len(answers)  # the refused and malformed requests decided nothing
        assert procs.stop(sidecar) == 0

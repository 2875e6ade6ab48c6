"""Milestone M3 end to end with every real part: a control-plane process (PostgreSQL +
Redis), a gateway registered through its API, `kaizen-studio sidecar` in sync mode holding
the gateway's credential, and a real Envoy in front of a stand-in gateway upstream.

It walks the life of a policy: publish → the sidecar enforces it; publish a change → every
call through Envoy follows within a second or two (long-poll push); stop the control plane
→ decisions go on, a restarted sidecar serves from its last-known-good bundle on disk;
start the control plane again → the decision logs buffered meanwhile arrive, none lost.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e import sidecar_procs as procs
from tests.e2e.accounts import sign_up

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:%(email)s", role: agent-user}
---
kind: RegoPolicy
metadata: {name: guardrails}
spec:
  rego: |
    package kaizen.abac.guardrails
    import rego.v1
    deny contains "agent %(paused)s is paused" if input.resource.id == "agent:%(paused)s"
"""


def _eventually(check: Callable[[], bool], timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if check():
            return time.monotonic() - started
        time.sleep(0.05)
    pytest.fail(f"{what} did not happen within {timeout} s")


def test_publish_enforce_survive_an_outage_and_ship_the_logs(
    control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    cp, owner, admin = sign_up(control_plane, request, "sec@example.com", "Acme")
    source = POLICY % {"email": "sec@example.com", "paused": "legacy-bot"}
    assert cp.post("/api/v1/policies", json={"source": source}, headers=admin).status_code == 201
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()

    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, envoy_admin = procs.free_port(), procs.free_port()
    sidecar_env = {
        "KAIZEN_GATEWAY_TOKEN": gateway["credential"],
        "KAIZEN_CONTROL_PLANE_URL": control_plane.url,
    }
    home = tmp_path / "sidecar"
    caller = {"Authorization": f"Bearer {owner['access_token']}"}
    envoy = f"http://127.0.0.1:{listen}"

    outage_ids: list[str] = []

    def invoke(agent: str, *, during_outage: bool = False) -> int:
        response = httpx.post(f"{envoy}/v1/agents/{agent}/invoke", headers=caller, json={})
        if during_outage:
            decided = response.headers.get("x-kaizen-decision-id") or response.json().get(
                "headers", {}
            ).get("x-kaizen-decision-id")
            assert decided, response.text
            outage_ids.append(decided)
        return response.status_code

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
    ):
        sidecar = procs.start_sidecar(home, grpc_port, http_port, **sidecar_env)
        try:
            assert invoke("support-bot") == 200
            assert invoke("legacy-bot") == 403
            assert httpx.post(f"{envoy}/v1/agents/support-bot/invoke").status_code == 401
            assert httpx.post(f"{envoy}/v1/pipelines/etl/run", headers=caller).status_code == 403

            # A change reaches the sidecar by long-poll push, not a polling interval.
            changed = POLICY % {"email": "sec@example.com", "paused": "support-bot"}
            cp.post("/api/v1/policies", json={"source": changed}, headers=admin)
            assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
            # revision 3: 1 published, 2 re-signed when the gateway registered (its MCP URL)
            _eventually(lambda: invoke("support-bot") == 403, 10, "enforcing revision 3")
            assert invoke("legacy-bot") == 200

            # The control plane goes away: decisions go on, and so does a restarted sidecar.
            control_plane.stop()
            assert invoke("legacy-bot", during_outage=True) == 200
            assert invoke("support-bot", during_outage=True) == 403
            procs.stop(sidecar)
            sidecar = procs.start_sidecar(home, grpc_port, http_port, **sidecar_env)
            status = httpx.get(
                f"http://127.0.0.1:{http_port}/status",
                headers={"Authorization": f"Bearer {gateway['credential']}"},
            ).json()
            assert str(status.get("bundle_revision")) == "3", status
            assert invoke("support-bot", during_outage=True) == 403
            assert invoke("legacy-bot", during_outage=True) == 200

            # It comes back: every buffered decision arrives, once.
            control_plane.start()

            def logged() -> list[dict[str, Any]]:
                items: list[dict[str, Any]] = []
                cursor = None
                while True:
                    page = cp.get(
                        "/api/v1/decisions",
                        params={"limit": 500, **({"cursor": cursor} if cursor else {})},
                        headers=admin,
                    ).json()
                    items += page["items"]
                    cursor = page["next_cursor"]
                    if not cursor:
                        return items

            # No new traffic: the backlog ships on its own once the control plane answers
            # (back-off is capped at 5 s, and the first client through wakes the others).
            _eventually(
                lambda: set(outage_ids) <= {d["decision_id"] for d in logged()},
                30,
                "the decisions made during the outage arriving",
            )
            decisions = logged()
            ids = [d["decision_id"] for d in decisions]
            assert len(ids) == len(set(ids))
            assert set(outage_ids) <= set(ids), "a decision made during the outage was lost"
            outcomes = {(d["resource"], d["outcome"]) for d in decisions}
            assert ("agent:support-bot", "allow") in outcomes
            assert ("agent:support-bot", "deny") in outcomes
            assert {d["gateway_id"] for d in decisions} == {gateway["id"]}

            detail = cp.get(f"/api/v1/gateways/{gateway['id']}", headers=admin).json()
            assert detail["current_revision"] == 3
            assert detail["last_seen_at"] is not None
        finally:
            procs.stop(sidecar)

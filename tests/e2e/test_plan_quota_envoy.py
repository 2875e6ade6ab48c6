"""The monthly executions quota where it bites (M12): through a real Envoy and the sidecar.

The operator's command (`kaizen-studio org set-plan`) gives an organisation an Enterprise
contract of 3 executions a month (Free's 10,000 is the same budget, only longer to reach);
the signed bundle carries the plan's budget; the sidecar allows three calls and denies the
fourth with a reason naming the plan's budget, also after a restart from its
last-known-good bundle (the count lives in Redis, not in the process). Raising the
contract re-signs the bundle and pushes it: calls are allowed again without touching the
sidecar.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import REDIS_PREFIX, REDIS_URL
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
    - {subject: "user:%(owner)s", role: agent-user}
"""


def _set_plan(shared_control_plane: procs.ControlPlane, *args: str) -> str:
    """The operator's command, on the control plane's own database, Redis and key."""
    done = subprocess.run(
        [str(procs.BIN / "kaizen-studio"), "org", "set-plan", *args],
        env=shared_control_plane.env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_the_plans_executions_quota_holds_at_the_sidecar_and_a_new_contract_lifts_it(
    shared_control_plane: procs.ControlPlane, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    email, organization = unique("quota") + "@example.com", unique("Quota")
    cp, _owner, admin = sign_up(shared_control_plane, request, email, organization)
    source = POLICY % {"owner": email}
    assert cp.post("/api/v1/policies", json={"source": source}, headers=admin).status_code == 201
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()
    said = _set_plan(
        shared_control_plane, organization, "enterprise", "--limit", "executions_per_month=3"
    )
    assert "executions_per_month 3" in said, said

    upstream, grpc_port, http_port = procs.free_port(), procs.free_port(), procs.free_port()
    listen, envoy_admin = procs.free_port(), procs.free_port()
    home = tmp_path / "sidecar"
    sidecar_env = {
        "KAIZEN_GATEWAY_TOKEN": gateway["credential"],
        "KAIZEN_CONTROL_PLANE_URL": shared_control_plane.url,
        # the budget counters in Redis, as in production (a process's own memory would
        # start the month again at every restart)
        "KAIZEN_REDIS_URL": REDIS_URL,
        "KAIZEN_REDIS_PREFIX": f"{REDIS_PREFIX}{secrets.token_hex(3)}:",
    }

    def invoke() -> httpx.Response:
        return httpx.post(
            f"http://127.0.0.1:{listen}/v1/agents/support-bot/invoke", headers=admin, json={}
        )

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
            assert [invoke().status_code for _ in range(3)] == [200, 200, 200]
            refused = invoke()
            assert refused.status_code == 403, refused.text
            assert any("enterprise-plan-executions" in r for r in refused.json()["reasons"])

            # The count is the organisation's, kept in Redis: a restarted sidecar (from its
            # last-known-good bundle) still refuses.
            procs.stop(sidecar)
            sidecar = procs.start_sidecar(home, grpc_port, http_port, **sidecar_env)
            assert invoke().status_code == 403

            # The new contract re-signs the bundle and pushes it: no sidecar restart.
            _set_plan(
                shared_control_plane,
                organization,
                "enterprise",
                "--limit",
                "executions_per_month=100",
            )
            upgraded = time.monotonic()
            deadline = upgraded + 15
            while invoke().status_code != 200:
                assert time.monotonic() < deadline, "the upgrade never reached the sidecar"
                time.sleep(0.05)
            print(
                f"upgrade → first allowed call at the sidecar: {time.monotonic() - upgraded:.2f} s"
            )
        finally:
            procs.stop(sidecar)

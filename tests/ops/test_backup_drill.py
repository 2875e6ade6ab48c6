"""M13 disaster-recovery drill, every part real: a control-plane process on PostgreSQL, a
sidecar shipping decisions, `kaizen-studio backup`, the database destroyed, `kaizen-studio
restore` (which verifies the audit and decision hash chains end to end), and the sidecar
resuming its shipping into the restored database with nothing lost or duplicated.

The restore time for 1M decisions is measured by tests/bench/bench_restore.py.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import subprocess
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.conftest import PASSWORD, POSTGRES_URL
from tests.e2e import sidecar_procs as procs

POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:dr@example.com", role: agent-user}
"""
ADMIN_DSN = POSTGRES_URL.replace("postgresql+asyncpg", "postgresql")


def kaizen(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(procs.BIN / "kaizen-studio"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


async def _admin(*statements: str) -> None:
    admin = await asyncpg.connect(ADMIN_DSN)
    try:
        for statement in statements:
            await admin.execute(statement)
    finally:
        await admin.close()


async def _stored_ids(database_url: str) -> list[str]:
    connection = await asyncpg.connect(database_url.replace("postgresql+asyncpg", "postgresql"))
    try:
        rows = await connection.fetch("SELECT decision_id FROM decision_logs")
    finally:
        await connection.close()
    return [row["decision_id"] for row in rows]


def _wait_for(ids: set[str], database_url: str, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stored = asyncio.run(_stored_ids(database_url))
        if ids <= set(stored):
            return stored
        time.sleep(0.2)
    pytest.fail(f"{len(ids - set(stored))} decision(s) never reached the database")


def test_backup_destroy_restore_verify_and_resume_shipping(
    control_plane: procs.ControlPlane, database: str, tmp_path: Path
) -> None:
    cp = httpx.Client(base_url=control_plane.url, timeout=30)
    owner = cp.post(
        "/api/v1/auth/signup",
        json={"email": "dr@example.com", "password": PASSWORD, "organization": "DR"},
    ).json()
    admin = {"Authorization": f"Bearer {owner['access_token']}"}
    assert cp.post("/api/v1/policies", json={"source": POLICY}, headers=admin).status_code == 201
    assert cp.post("/api/v1/policies/publish", json={}, headers=admin).status_code == 201
    gateway = cp.post(
        "/api/v1/gateways",
        json={"name": "edge", "environment": "prod", "url": "http://127.0.0.1:1"},
        headers=admin,
    ).json()
    grpc_port, http_port = procs.free_port(), procs.free_port()
    sidecar = procs.start_sidecar(
        tmp_path / "sidecar",
        grpc_port,
        http_port,
        KAIZEN_GATEWAY_TOKEN=gateway["credential"],
        KAIZEN_CONTROL_PLANE_URL=control_plane.url,
    )
    check_url = f"http://127.0.0.1:{http_port}/ext_authz/v1/agents/support-bot/invoke"

    def checks(count: int) -> set[str]:
        ids = set()
        for _ in range(count):
            answer = httpx.post(check_url, headers=admin, content=b"{}")
            assert answer.status_code == 200, answer.text
            ids.add(answer.headers["x-kaizen-decision-id"])
        return ids

    env = procs.clean_env(
        KAIZEN_DATABASE_URL=control_plane.env["KAIZEN_DATABASE_URL"],
        KAIZEN_MASTER_KEY=control_plane.env["KAIZEN_MASTER_KEY"],
        KAIZEN_HOME=str(tmp_path / "ops"),
    )
    name = database.rsplit("/", 1)[1]
    with procs.running(sidecar):
        before = checks(30)
        _wait_for(before, database, 30)

        backup = tmp_path / "backup"
        done = kaizen("backup", str(backup), env=env)
        assert done.returncode == 0, done.stderr
        assert "30 decisions" in done.stdout
        assert not (backup / "master.key").exists()  # the key stays in the secret store

        # Disaster: the control plane goes down and the database is lost. The sidecar keeps
        # deciding from its verified bundle and buffers what it cannot ship.
        control_plane.stop()
        during = checks(20)
        asyncio.run(_admin(f'DROP DATABASE "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"'))

        wrong = dict(env, KAIZEN_MASTER_KEY=base64.b64encode(secrets.token_bytes(32)).decode())
        refused = kaizen("restore", str(backup), env=wrong)
        assert refused.returncode == 2
        assert "sealed under master key" in refused.stderr

        restored = kaizen("restore", str(backup), env=env)
        assert restored.returncode == 0, restored.stderr
        assert "every audit and decision chain is intact" in restored.stdout
        assert "restored 30 decisions" in restored.stdout
        again = kaizen("restore", str(backup), env=env)
        assert again.returncode == 2  # not over a database that is not empty
        assert "not empty" in again.stderr

        # The control plane comes back on the restored database; the sidecar ships the
        # decisions it buffered meanwhile: every one arrives, none twice.
        control_plane.start()
        stored = _wait_for(before | during, database, 60)
        assert len(stored) == len(set(stored)) == 50
        assert set(stored) == before | during

        # Sessions and keys survived: the owner's token still works; the chains verify.
        decisions = cp.get("/api/v1/decisions/verify", headers=admin)
        assert decisions.status_code == 200, decisions.text
        assert decisions.json()["ok"] is True
        assert decisions.json()["checked"] == 50
        trail = cp.get("/api/v1/audit-events/verify", headers=admin)
        assert trail.status_code == 200, trail.text
        assert trail.json()["valid"] is True
    cp.close()

"""Ended sessions ride the bundle (control_plane/services/revocations.py), on both stacks.

The sidecar side (a real sidecar refusing the token) is tests/security/test_sidecar_edge_*;
here: the sid lands in the published bundle's `kaizen.revoked_sessions` after a logout, a
demotion and a removal, and nothing else is disturbed (a promotion ends no session).
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import time
from typing import Any

import httpx
import jwt

from tests.conftest import Account, member

POLICY = """\
kind: RolePolicy
metadata: {name: agents}
spec:
  roles:
    - name: agent-user
      permissions:
        - {resource: "agent:*", actions: [invoke]}
"""


def _sid(account: Account) -> str:
    claims = jwt.decode(account.access_token, options={"verify_signature": False})
    return str(claims["sid"])


async def _kaizen(client: httpx.AsyncClient, owner: Account) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/bundles/{owner.organization_id}/bundle.tar.gz", headers=owner.headers
    )
    assert response.status_code == 200, response.text
    with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as tar:
        entry = next(m for m in tar.getmembers() if m.name.lstrip("/") == "data.json")
        data = tar.extractfile(entry)
        assert data is not None
        kaizen: dict[str, Any] = json.loads(data.read())["kaizen"]
    return kaizen


async def _revoked_in_bundle(client: httpx.AsyncClient, owner: Account, sid: str) -> bool:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if sid in (await _kaizen(client, owner)).get("revoked_sessions", []):
            return True
        await asyncio.sleep(0.05)
    return False


async def _published(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text


async def test_logout_puts_the_sid_in_the_bundle(client: httpx.AsyncClient, owner: Account) -> None:
    await _published(client, owner)
    developer = await member(client, owner, "developer")
    logout = await client.post("/api/v1/auth/logout", headers=developer.headers)
    assert logout.status_code == 204
    assert await _revoked_in_bundle(client, owner, _sid(developer))


async def test_demotion_and_removal_end_the_members_sessions_in_the_bundle(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _published(client, owner)
    demoted = await member(client, owner, "developer")
    removed = await member(client, owner, "developer")
    promoted = await member(client, owner, "viewer")

    patch = await client.patch(
        f"/api/v1/users/{demoted.user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert patch.status_code == 200, patch.text
    delete = await client.delete(f"/api/v1/users/{removed.user_id}", headers=owner.headers)
    assert delete.status_code == 204, delete.text
    up = await client.patch(
        f"/api/v1/users/{promoted.user_id}", json={"role": "developer"}, headers=owner.headers
    )
    assert up.status_code == 200, up.text

    assert await _revoked_in_bundle(client, owner, _sid(demoted))
    assert await _revoked_in_bundle(client, owner, _sid(removed))
    assert (await client.get("/api/v1/me", headers=demoted.headers)).status_code == 401
    # A promotion takes nothing away: the session goes on (and refreshes into the new role).
    assert (await client.get("/api/v1/me", headers=promoted.headers)).status_code == 200
    assert _sid(promoted) not in (await _kaizen(client, owner)).get("revoked_sessions", [])

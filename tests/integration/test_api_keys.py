"""API keys: shown once, stored hashed, scoped, expirable, revocable, never above their
creator."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import httpx
from sqlalchemy import select, update

from control_plane.db.models import ApiKey
from control_plane.db.session import SYSTEM
from tests.conftest import Account, Stack, member


async def _create(client: httpx.AsyncClient, who: Account, **body: object) -> httpx.Response:
    return await client.post(
        "/api/v1/api-keys", json={"name": "ci-bot", **body}, headers=who.headers
    )


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def test_key_is_shown_once_and_stored_only_as_a_hash(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    created = await _create(client, owner, role="developer")
    assert created.status_code == 201
    secret = created.json()["key"]
    assert secret.startswith("ks_")
    assert len(secret) > 40

    shown_again = await client.get(
        f"/api/v1/api-keys/{created.json()['id']}", headers=owner.headers
    )
    listed = await client.get("/api/v1/api-keys", headers=owner.headers)
    assert "key" not in shown_again.json()
    assert secret not in shown_again.text + listed.text

    async with stack.db.session(SYSTEM) as session:
        row = await session.scalar(select(ApiKey))
    assert row is not None
    assert row.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in repr(row.__dict__)


async def test_me_with_an_api_key_and_last_used(client: httpx.AsyncClient, owner: Account) -> None:
    created = (await _create(client, owner, role="developer", scopes=["agents:read"])).json()
    me = await client.get("/api/v1/me", headers=_bearer(created["key"]))
    assert me.status_code == 200
    body = me.json()
    assert body["kind"] == "api_key"
    assert body["label"] == "ci-bot"
    assert body["organization_id"] == owner.organization_id
    assert body["permissions"] == ["agents:read"]
    used = await client.get(f"/api/v1/api-keys/{created['id']}", headers=owner.headers)
    assert used.json()["last_used_at"] is not None


async def test_scopes_narrow_what_a_key_may_do(client: httpx.AsyncClient, owner: Account) -> None:
    key = (await _create(client, owner, role="admin", scopes=["teams:read"])).json()["key"]
    assert (await client.get("/api/v1/teams", headers=_bearer(key))).status_code == 200
    denied = await client.post("/api/v1/teams", json={"name": "x"}, headers=_bearer(key))
    assert denied.status_code == 403
    assert denied.json()["error"]["code"] == "forbidden"
    widen = await client.post(
        "/api/v1/api-keys", json={"name": "wider", "scopes": ["teams:create"]}, headers=_bearer(key)
    )
    assert widen.status_code == 403


async def test_revoked_and_expired_keys_stop_working(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    revoked = (await _create(client, owner)).json()
    assert (await client.get("/api/v1/me", headers=_bearer(revoked["key"]))).status_code == 200
    gone = await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=owner.headers)
    assert gone.status_code == 204
    assert (await client.get("/api/v1/me", headers=_bearer(revoked["key"]))).status_code == 401
    listed = await client.get(f"/api/v1/api-keys/{revoked['id']}", headers=owner.headers)
    assert listed.json()["revoked_at"] is not None

    soon = datetime.now(UTC) + timedelta(hours=1)
    expiring = (await _create(client, owner, name="temp", expires_at=soon.isoformat())).json()
    assert (await client.get("/api/v1/me", headers=_bearer(expiring["key"]))).status_code == 200
    async with stack.db.session(SYSTEM) as session:
        await session.execute(
            update(ApiKey).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    response = await client.get("/api/v1/me", headers=_bearer(expiring["key"]))
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]

    past = await _create(client, owner, name="past", expires_at="2020-01-01T00:00:00Z")
    assert past.status_code == 422
    naive = await _create(client, owner, name="naive", expires_at="2030-01-01T00:00:00")
    assert naive.status_code == 422
    unknown = await client.get("/api/v1/me", headers=_bearer("ks_" + "x" * 43))
    assert unknown.status_code == 401


async def test_a_key_never_exceeds_its_creator(client: httpx.AsyncClient, owner: Account) -> None:
    developer = await member(client, owner, "developer")
    too_high = await _create(client, developer, role="admin")
    assert too_high.status_code == 403
    assert too_high.json()["error"]["details"][0]["field"] == "role"
    assert (await _create(client, developer, role="developer")).status_code == 201

    viewer = await member(client, owner, "viewer")
    assert (await _create(client, viewer, name="v")).status_code == 403


async def test_duplicate_key_name_is_a_conflict(client: httpx.AsyncClient, owner: Account) -> None:
    assert (await _create(client, owner)).status_code == 201
    again = await _create(client, owner)
    assert again.status_code == 409
    assert again.json()["error"]["details"][0]["field"] == "name"

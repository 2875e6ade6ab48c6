"""A shared sidecar's bundle sync against the real control plane (ADR 0012), on both
stacks: the manifest names the placed organisations, each bundle is fetched and verified
with its own organisation's keys, one engine per organisation decides its own callers'
calls, an organisation taken off the gateway stops being served (also after a restart),
and one never placed there is never fetched."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import delete

from authz_sidecar.authorizer import Authorizer  # noqa: TID251
from authz_sidecar.budgets import InMemoryReservationBook  # noqa: TID251
from authz_sidecar.engine_holder import EngineHolder  # noqa: TID251
from authz_sidecar.grants import InMemoryReplayGuard  # noqa: TID251
from authz_sidecar.mapping import HttpFacts  # noqa: TID251
from authz_sidecar.tenancy import Tenants  # noqa: TID251
from control_plane.db.models import PlatformPlacement
from policy.bundles.platform_sync import PlatformSync
from policy.engine.budgets import InMemoryBudgetLedger
from tests.conftest import Account, Stack, signup
from tests.integration.test_platform_gateways import place, shared_gateway

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "apikey:ci-bot", role: agent-user}
"""


async def key_and_publish(client: httpx.AsyncClient, owner: Account) -> str:
    key = await client.post("/api/v1/api-keys", json={"name": "ci-bot"}, headers=owner.headers)
    assert key.status_code == 201, key.text
    created = await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert created.status_code == 201, created.text
    published = await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)
    assert published.status_code == 201, published.text
    secret: str = key.json()["key"]
    return secret


def platform(tmp_path: Path, credential: str, tenants: Tenants) -> PlatformSync:
    return PlatformSync(
        tmp_path / "bundles",
        "http://cp.test",
        credential,
        on_store=lambda org, store: store.subscribe(tenants.on_bundle(org)),
        on_drop=tenants.drop,
        wait_seconds=1,
    )


def make_tenants() -> Tenants:
    ledger = InMemoryBudgetLedger()
    return Tenants(
        lambda: EngineHolder(ledger, issuer="kaizen-studio", audience="kaizen-studio-api"), ledger
    )


async def served(tenants: Tenants, *organizations: str) -> None:
    for _ in range(400):  # the syncs run as tasks: give them up to 20 s
        if {s.organization for s in tenants.snapshots()} == set(organizations):
            return
        await asyncio.sleep(0.05)
    pytest.fail(f"served {sorted(s.organization for s in tenants.snapshots())}")


@pytest.fixture
async def running() -> AsyncIterator[list[PlatformSync]]:
    syncs: list[PlatformSync] = []
    yield syncs
    for sync in syncs:
        await sync.stop()


async def test_the_manifests_organisations_each_decided_under_their_own_bundle(
    client: httpx.AsyncClient, stack: Stack, tmp_path: Path, running: list[PlatformSync]
) -> None:
    credential = await shared_gateway(stack)
    a, b, c = [await signup(client, name) for name in ("A", "B", "C")]
    for who in (a, b):
        await place(stack, who.organization_id)
    key_a, key_b = await key_and_publish(client, a), await key_and_publish(client, b)
    key_c = await key_and_publish(client, c)

    tenants = make_tenants()
    sync = platform(tmp_path, credential, tenants)
    running.append(sync)
    organizations = await sync.fetch_manifest(client)
    assert sorted(organizations) == sorted([a.organization_id, b.organization_id])
    await sync.follow(organizations, client)
    await served(tenants, a.organization_id, b.organization_id)
    assert c.organization_id not in sync.stores

    authorizer = Authorizer(
        tenants, replay_guard=InMemoryReplayGuard(), reservations=InMemoryReservationBook()
    )

    async def check(path: str, key: str) -> tuple[int, str | None]:
        verdict = await authorizer.check(
            HttpFacts("POST", path, {"authorization": f"Bearer {key}"})
        )
        return verdict.status, verdict.organization

    assert await check("/v1/agents/bot/invoke", key_a) == (200, a.organization_id)
    assert await check("/v1/agents/bot/invoke", key_b) == (200, b.organization_id)
    assert await check(f"/o/{b.organization_id}/v1/agents/bot/invoke", key_a) == (
        403,
        a.organization_id,
    )
    assert (await check("/v1/agents/bot/invoke", key_c))[0] == 401  # not served here

    # B is taken off this gateway: no longer served, nor kept on disk for a restart.
    async with stack.db.session(uuid.UUID(b.organization_id)) as session:
        await session.execute(delete(PlatformPlacement))
    await sync.follow(await sync.fetch_manifest(client), client)
    assert (await check("/v1/agents/bot/invoke", key_b))[0] == 401
    assert not (tmp_path / "bundles" / b.organization_id).exists()

    # A restart serves what is on disk (verified again) before the control plane answers.
    await sync.stop()
    again = make_tenants()
    restarted = platform(tmp_path, credential, again)
    assert restarted.load_last_known_good() == [a.organization_id]
    assert {s.organization for s in again.snapshots()} == {a.organization_id}

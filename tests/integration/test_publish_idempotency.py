"""`Idempotency-Key` on publish and rollback: a repeat answers the revision the first stored.

What makes a publish safe to send again after a lost answer (a replica dying mid-request,
tests/e2e/test_control_plane_failover.py; the balancer retries such requests).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import Account, signup

POLICY = """\
kind: RolePolicy
metadata: {name: roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "user:alice@example.com", role: agent-user}
"""


async def _publish(
    client: httpx.AsyncClient, who: Account, key: str | None, path: str = "publish", **body: object
) -> httpx.Response:
    headers = dict(who.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return await client.post(f"/api/v1/policies/{path}", json=body, headers=headers)


async def _revisions(client: httpx.AsyncClient, who: Account) -> list[int]:
    listed = await client.get("/api/v1/bundles", headers=who.headers)
    assert listed.status_code == 200, listed.text
    return [item["revision"] for item in listed.json()["items"]]


async def _publish_events(client: httpx.AsyncClient, who: Account) -> list[dict[str, object]]:
    events = await client.get(
        "/api/v1/audit-events", params={"action": "bundle.publish"}, headers=who.headers
    )
    assert events.status_code == 200, events.text
    return [e for e in events.json()["items"] if e["action"] == "bundle.publish"]


async def test_a_repeat_answers_the_first_revision(
    client: httpx.AsyncClient, owner: Account
) -> None:
    assert (
        await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    ).status_code == 201
    first = await _publish(client, owner, "deploy-42", message="first")
    assert first.status_code == 201, first.text
    again = await _publish(client, owner, "deploy-42", message="first")
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    assert await _revisions(client, owner) == [1]
    assert len(await _publish_events(client, owner)) == 1

    other = await _publish(client, owner, "deploy-43")
    assert other.json()["revision"] == 2
    unkeyed = [await _publish(client, owner, None) for _ in range(2)]
    assert [r.json()["revision"] for r in unkeyed] == [3, 4]  # no key: each is its own


async def test_concurrent_repeats_store_one_revision(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    answers = await asyncio.gather(*(_publish(client, owner, "same") for _ in range(3)))
    assert {a.status_code for a in answers} == {201}
    assert {a.json()["revision"] for a in answers} == {1}
    assert await _revisions(client, owner) == [1]


async def test_a_key_used_for_a_publish_is_refused_for_a_rollback(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert (await _publish(client, owner, "k1")).status_code == 201
    refused = await _publish(client, owner, "k1", path="rollback", revision=1)
    assert refused.status_code == 409, refused.text
    assert "Idempotency-Key" in refused.json()["error"]["message"]
    rolled = await _publish(client, owner, "k2", path="rollback", revision=1)
    assert rolled.status_code == 201
    again = await _publish(client, owner, "k2", path="rollback", revision=1)
    assert again.json() == rolled.json()
    assert await _revisions(client, owner) == [1, 2]


async def test_another_organisations_key_is_not_theirs(
    client: httpx.AsyncClient, owner: Account
) -> None:
    """The attack: organisation B sends A's key hoping to be answered A's revision."""
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    for _ in range(3):
        assert (await _publish(client, owner, None)).status_code == 201
    theirs = await _publish(client, owner, "shared-key")
    assert theirs.json()["revision"] == 4
    intruder = await signup(client, "Intruder")
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=intruder.headers)
    mine = await _publish(client, intruder, "shared-key")
    assert mine.status_code == 201, mine.text
    assert mine.json()["revision"] == 1  # its own first revision, not the other's fourth
    assert mine.json()["sha256"] != theirs.json()["sha256"]
    assert await _revisions(client, intruder) == [1]


async def test_a_malformed_key_is_a_422_naming_the_header(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    for bad in ("", "x" * 256, "has space"):
        refused = await _publish(client, owner, bad)
        assert refused.status_code == 422, (bad, refused.text)
        assert "Idempotency-Key" in refused.text
    assert (await client.get("/api/v1/bundles", headers=owner.headers)).json()["items"] == []

"""The control plane's own API: rules of the role table the walker cannot see (owners
make owners, the last owner stays, removal is immediate), and every admin action leaves a
hash-chained audit event. Every operation x every role is walked in test_roles_walker.py."""

from __future__ import annotations

import itertools

import httpx

from tests.conftest import Account, member


async def test_only_owners_make_owners_and_the_last_owner_stays(
    client: httpx.AsyncClient, owner: Account
) -> None:
    admin = await member(client, owner, "admin")
    promote = await client.patch(
        f"/api/v1/users/{admin.user_id}", json={"role": "owner"}, headers=admin.headers
    )
    assert promote.status_code == 403
    demote_owner = await client.patch(
        f"/api/v1/users/{owner.user_id}", json={"role": "viewer"}, headers=owner.headers
    )
    assert demote_owner.status_code == 409
    remove_owner = await client.delete(f"/api/v1/users/{owner.user_id}", headers=admin.headers)
    assert remove_owner.status_code == 403
    assert (await client.get("/api/v1/me", headers=owner.headers)).json()["role"] == "owner"


async def test_a_removed_member_loses_access_at_once(
    client: httpx.AsyncClient, owner: Account
) -> None:
    developer = await member(client, owner, "developer")
    assert (await client.get("/api/v1/me", headers=developer.headers)).status_code == 200
    removed = await client.delete(f"/api/v1/users/{developer.user_id}", headers=owner.headers)
    assert removed.status_code == 204
    assert (await client.get("/api/v1/me", headers=developer.headers)).status_code == 401


async def test_admin_actions_are_audited_with_who_what_where(
    client: httpx.AsyncClient, owner: Account
) -> None:
    team = (await client.post("/api/v1/teams", json={"name": "sre"}, headers=owner.headers)).json()
    await client.patch(
        f"/api/v1/teams/{team['id']}", json={"description": "on call"}, headers=owner.headers
    )
    await client.post(
        "/api/v1/workspaces", json={"name": "prod", "environment": "prod"}, headers=owner.headers
    )
    key = (await client.post("/api/v1/api-keys", json={"name": "ci"}, headers=owner.headers)).json()
    await client.delete(f"/api/v1/api-keys/{key['id']}", headers=owner.headers)
    await client.delete(f"/api/v1/teams/{team['id']}", headers=owner.headers)
    refused = await client.post("/api/v1/teams", json={"name": "bad name!"}, headers=owner.headers)
    assert refused.status_code == 422

    events = (await client.get("/api/v1/audit-events", headers=owner.headers)).json()["items"]
    assert [e["action"] for e in events] == [
        "organization.create",
        "team.create",
        "team.update",
        "workspace.create",
        "api_key.create",
        "api_key.revoke",
        "team.delete",
    ]
    update = events[2]
    assert update["actor_label"] == owner.email
    assert update["source_ip"] == "203.0.113.7"
    assert update["summary"]["before"]["description"] == ""
    assert update["summary"]["after"]["description"] == "on call"
    assert key["key"] not in str(events), "secrets never reach the audit trail"
    assert all(e["prev_hash"] == p["hash"] for p, e in itertools.pairwise(events))

    verified = (await client.get("/api/v1/audit-events/verify", headers=owner.headers)).json()
    assert verified == {
        "valid": True,
        "events": 7,
        "head_hash": events[-1]["hash"],
        "first_broken_seq": None,
        "first_broken_id": None,
        "reason": None,
    }
    page = await client.get("/api/v1/audit-events?limit=3&cursor=3", headers=owner.headers)
    assert [e["seq"] for e in page.json()["items"]] == [4, 5, 6]
    assert page.json()["next_cursor"] == "6"


async def test_lists_paginate_with_a_stable_cursor(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for i in range(5):
        await client.post("/api/v1/teams", json={"name": f"team-{i}"}, headers=owner.headers)
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/api/v1/teams", params=params, headers=owner.headers)).json()
        seen += [t["name"] for t in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"team-{i}" for i in range(5)]
    bad = await client.get("/api/v1/teams", params={"cursor": "%%%"}, headers=owner.headers)
    assert bad.status_code == 422

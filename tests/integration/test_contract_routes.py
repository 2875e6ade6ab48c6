"""The control-plane HTTP API as CONTRACTS.md writes it, where a route once differed:
`POST /policies/publish` needs no body, and every collection the contract names answers.
"""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Account, signup

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
  bindings:
    - {subject: "team:research", role: agent-user}
---
kind: BudgetPolicy
metadata: {name: spend}
spec:
  budgets:
    - {name: research-monthly, scope: "team:research", metric: cost_usd, limit: 500,
       soft_limit: 400, period: month}
    - {name: ci-daily, scope: "apikey:ci-bot", metric: executions, limit: 1000, period: day}
"""

COLLECTIONS = (
    *("users", "teams", "api-keys", "workspaces", "agents", "pipelines", "gateways"),
    *("deployments", "executions", "policies", "bundles", "decisions", "approvals"),
    *("budgets", "usage", "audit-events", "webhooks", "connectors"),
)


async def _draft(client: httpx.AsyncClient, owner: Account) -> None:
    created = await client.post("/api/v1/policies", json={"source": POLICY}, headers=owner.headers)
    assert created.status_code == 201, created.text


async def _revisions(client: httpx.AsyncClient, owner: Account) -> list[int]:
    listed = await client.get("/api/v1/bundles", headers=owner.headers)
    assert listed.status_code == 200, listed.text
    return [item["revision"] for item in listed.json()["items"]]


async def test_publish_without_a_body_publishes(client: httpx.AsyncClient, owner: Account) -> None:
    await _draft(client, owner)
    published = await client.post("/api/v1/policies/publish", headers=owner.headers)
    assert published.status_code == 201, published.text
    assert published.json()["revision"] in await _revisions(client, owner)


@pytest.mark.parametrize(
    ("body", "named"),
    [({"message": "x" * 1001}, "message"), ({"accept_replay": "not-a-uuid"}, "accept_replay")],
)
async def test_publish_with_a_bad_body_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, owner: Account, body: dict[str, str], named: str
) -> None:
    await _draft(client, owner)
    refused = await client.post("/api/v1/policies/publish", json=body, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert named in refused.text
    assert await _revisions(client, owner) == []


async def test_every_collection_of_the_contract_lists(
    client: httpx.AsyncClient, owner: Account
) -> None:
    for collection in COLLECTIONS:
        listed = await client.get(f"/api/v1/{collection}", headers=owner.headers)
        assert listed.status_code == 200, f"GET /api/v1/{collection}: {listed.text}"
        assert isinstance(listed.json()["items"], list), collection


async def test_budgets_are_those_of_the_published_revision(
    client: httpx.AsyncClient, owner: Account
) -> None:
    await _draft(client, owner)
    before = await client.get("/api/v1/budgets", headers=owner.headers)
    assert before.json()["items"] == [], "drafts are not in force until published"

    published = await client.post("/api/v1/policies/publish", headers=owner.headers)
    revision = published.json()["revision"]
    listed = (await client.get("/api/v1/budgets", headers=owner.headers)).json()["items"]
    assert [b["name"] for b in listed] == ["ci-daily", "research-monthly"]
    assert listed[1] == {
        "name": "research-monthly",
        "scope": "team:research",
        "metric": "cost_usd",
        "period": "month",
        "limit": 500,
        "soft_limit": 400,
        "actions": ["invoke", "run"],
        "bundle_revision": revision,
    }


async def test_another_tenants_budget_is_absent(client: httpx.AsyncClient, owner: Account) -> None:
    await _draft(client, owner)
    assert (await client.post("/api/v1/policies/publish", headers=owner.headers)).status_code == 201
    other = await signup(client, "Other")
    assert (await client.get("/api/v1/budgets", headers=other.headers)).json()["items"] == []


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/usage?budget=a%00b",  # found by the fuzzer: a 500 on PostgreSQL
        "/api/v1/decisions?principal=%00",
        "/api/v1/audit-events?action=x%00",
    ],
)
async def test_a_nul_in_the_query_is_a_422_naming_it_on_every_route(
    client: httpx.AsyncClient, owner: Account, url: str
) -> None:
    refused = await client.get(url, headers=owner.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["details"] == [
        {"field": "query", "message": "must not contain NUL"}
    ]
    assert refused.headers["x-request-id"]

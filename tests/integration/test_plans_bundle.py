"""The executions-per-month limit in the organisation's signed bundle (M12): the bundle a
sidecar would load, verified and run by the decision engine, denies past the plan's limit
naming the plan, holds past 90 %, and a plan change re-signs it with the new limit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx

from policy.engine.budgets import BudgetKey, period_window
from policy.engine.decide import DecisionEngine
from tests.conftest import Account, Stack
from tests.integration.bundle_support import newest_bundle
from tests.integration.plan_support import put_on

POLICY = """\
kind: RolePolicy
metadata: {name: agent-roles}
spec:
  roles:
    - name: agent-user
      permissions: [{resource: "agent:*", actions: [invoke]}]
"""


def _input(organization_id: str) -> dict[str, Any]:
    return {
        "principal": {
            "id": "user:someone",
            "type": "user",
            "roles": ["agent-user"],
            "organization": organization_id,
        },
        "action": "invoke",
        "resource": {"type": "agent", "id": "agent:bot"},
        "channel": "api",
    }


async def _publish(client: httpx.AsyncClient, owner: Account, source: str) -> httpx.Response:
    written = await client.post("/api/v1/policies", json={"source": source}, headers=owner.headers)
    assert written.status_code in (200, 201), written.text
    return await client.post("/api/v1/policies/publish", json={}, headers=owner.headers)


async def _engine(stack: Stack, organization_id: str) -> tuple[int, DecisionEngine]:
    """The current bundle revision as a sidecar of this scope loads it."""
    revision, bundle = await newest_bundle(stack, organization_id)
    return revision, DecisionEngine.from_bundle(bundle)


def _used(engine: DecisionEngine, organization_id: str, executions: int) -> None:
    window = period_window("month", datetime.now(UTC))
    engine.ledger.reserve(BudgetKey(organization_id, "org", "executions", window), executions)


async def test_the_plans_monthly_executions_are_enforced_from_the_signed_bundle(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    published = await _publish(client, owner, POLICY)
    assert published.status_code in (200, 201), published.text

    _revision, engine = await _engine(stack, org)
    assert engine.decide(_input(org)).outcome == "allow"

    _revision, engine = await _engine(stack, org)
    _used(engine, org, 9_998)  # past 90 %: still served (no hold for approval)
    assert engine.decide(_input(org)).outcome == "allow"

    _revision, engine = await _engine(stack, org)
    _used(engine, org, 10_000)
    denied = engine.decide(_input(org))
    assert denied.outcome == "deny"
    assert denied.reasons == (
        "budget free-plan-executions (org executions per month) exceeded: 10001 of limit 10000",
    )


async def test_a_plan_change_re_signs_the_bundle_with_the_new_limit(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    assert (await _publish(client, owner, POLICY)).status_code in (200, 201)
    before, _engine_before = await _engine(stack, org)

    change = await put_on(stack, org, "pro")
    revision, engine = await _engine(stack, org)
    assert change.revision == revision == before + 1
    _used(engine, org, 10_000)
    assert engine.decide(_input(org)).outcome == "allow"
    _used(engine, org, 90_000)
    denied = engine.decide(_input(org))
    assert denied.outcome == "deny"
    assert "budget pro-plan-executions" in denied.reasons[0]

    # Enterprise without an executions limit: no plan budget at all.
    await put_on(stack, org, "enterprise")
    _revision, engine = await _engine(stack, org)
    _used(engine, org, 10**9)
    assert engine.decide(_input(org)).outcome == "allow"
    # An Enterprise contract's own limit.
    await put_on(stack, org, "enterprise", executions_per_month=5)
    _revision, engine = await _engine(stack, org)
    _used(engine, org, 5)
    assert "budget enterprise-plan-executions" in engine.decide(_input(org)).reasons[0]


async def test_a_tenant_document_cannot_replace_the_plans_budget(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    lifted = (
        "kind: BudgetPolicy\nmetadata: {name: plan-quota}\nspec:\n  budgets:\n"
        "    - {name: mine, scope: org, metric: executions, limit: 1000000000, period: month}\n"
    )
    refused = await _publish(client, owner, POLICY + "---\n" + lifted)
    assert refused.status_code == 422, refused.text
    assert "duplicate document name 'plan-quota'" in refused.text
    same_budget = lifted.replace("plan-quota", "mine").replace(
        "name: mine,", "name: free-plan-executions,"
    )
    refused = await _publish(client, owner, same_budget)
    assert refused.status_code == 422, refused.text
    assert "duplicate budget name 'free-plan-executions'" in refused.text
    revisions = await client.get("/api/v1/bundles", headers=owner.headers)
    assert revisions.json()["items"] == []

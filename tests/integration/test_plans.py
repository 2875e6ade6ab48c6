"""Plans and quotas (M12): limits refused with 402 naming the limit, the plan and the
count; plan changes explained, audited and compiled into the bundle; on both stacks."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from control_plane.db.models import AuditEvent, Membership, OrganizationPlan
from control_plane.errors import Conflict, Invalid
from control_plane.schemas.identity import SignupRequest
from control_plane.services import identity
from tests.conftest import PASSWORD, Account, Stack, member, signup
from tests.integration.plan_support import add_agents, add_gateway, add_user, agent, put_on


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


def _quota(response: httpx.Response, limit: str, plan: str, allowed: int, count: int) -> None:
    error = _error(response, 402)
    assert error["code"] == "quota_exceeded"
    assert error["details"] == [
        {"field": limit, "limit": limit, "plan": plan, "allowed": allowed, "count": count}
    ]
    assert f"allows {allowed}" in error["message"]
    assert f"has {count}" in error["message"]


async def _plan(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/plan", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_a_new_organisation_starts_on_free(stack: Stack) -> None:
    body = SignupRequest(
        email=f"new-{uuid.uuid4().hex[:6]}@example.com", password=PASSWORD, organization="Fresh"
    )
    _user, org = await identity.signup(stack.db, body, None, None)
    async with stack.db.session(org) as session:
        row = await session.scalar(select(OrganizationPlan))
    assert row is not None
    assert row.plan == "free"
    assert row.overrides == {}


async def test_any_member_reads_the_plan_its_limits_and_usage(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    viewer = await member(client, owner, "viewer")
    assert (await add_agents(client, owner, "one", "two")).status_code == 201
    body = await _plan(client, viewer)
    assert body["plan"] == "free"
    assert body["title"] == "Free"
    limits = {item["name"]: (item["limit"], item["used"]) for item in body["limits"]}
    assert limits == {
        "users": (3, 2),
        "agents": (10, 2),
        "gateways": (1, 0),
        "executions_per_month": (10_000, 0),
    }
    enforced = {item["name"]: item["enforced_by"] for item in body["limits"]}
    assert enforced["executions_per_month"] == "sidecar"
    assert (await client.get("/api/v1/plan")).status_code == 401


async def test_a_fourth_user_on_free_is_refused_naming_the_limit(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    assert (await add_user(client, owner)).status_code == 201
    assert (await add_user(client, owner)).status_code == 201
    _quota(await add_user(client, owner), "users", "free", 3, 3)
    # An existing account added by email counts the same.
    other = await signup(client, "Other")
    added = await client.post(
        "/api/v1/users", json={"email": other.email, "role": "viewer"}, headers=owner.headers
    )
    _quota(added, "users", "free", 3, 3)
    async with stack.db.session(uuid.UUID(owner.organization_id)) as session:
        assert len(list(await session.scalars(select(Membership)))) == 3


async def test_an_eleventh_agent_on_free_is_refused_and_a_batch_past_it_creates_none(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    names = [f"agent-{i}" for i in range(9)]
    assert (await add_agents(client, owner, *names)).status_code == 201
    # Two new ones where one fits: all or nothing.
    _quota(await add_agents(client, owner, "ten", "eleven"), "agents", "free", 10, 9)
    assert (await add_agents(client, owner, "ten")).status_code == 201
    _quota(await add_agents(client, owner, "eleven"), "agents", "free", 10, 10)
    # A new version of an existing agent is not a new agent.
    changed = agent("ten").replace("You help.", "You help more.")
    updated = await client.post("/api/v1/agents", json={"source": changed}, headers=owner.headers)
    assert updated.status_code == 201, updated.text
    assert updated.json()["updated"] == ["ten"]
    listed = (await client.get("/api/v1/agents", headers=owner.headers)).json()["items"]
    assert len(listed) == 10
    # Pipelines are not agents.
    pipeline = (
        "kind: Pipeline\nmetadata: {name: p}\nspec:\n  pattern: sequential\n  agents: [ten]\n"
    )
    made = await client.post("/api/v1/pipelines", json={"source": pipeline}, headers=owner.headers)
    assert made.status_code == 201, made.text


async def test_a_second_gateway_on_free_is_refused(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "free")
    assert (await add_gateway(client, owner)).status_code == 201
    _quota(await add_gateway(client, owner), "gateways", "free", 1, 1)
    await put_on(stack, owner.organization_id, "pro")
    _quota(await add_gateway(client, owner), "gateways", "pro", 1, 1)


async def test_enterprise_overrides_set_the_contracts_limits(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "enterprise", gateways=2, agents=None)
    assert (await add_gateway(client, owner)).status_code == 201
    assert (await add_gateway(client, owner)).status_code == 201
    _quota(await add_gateway(client, owner), "gateways", "enterprise", 2, 2)
    body = await _plan(client, owner)
    assert body["overrides"] == {"gateways": 2, "agents": None}
    limits = {item["name"]: item["limit"] for item in body["limits"]}
    assert limits == {"users": None, "agents": None, "gateways": 2, "executions_per_month": None}


async def test_overrides_off_enterprise_or_unknown_limits_are_refused_naming_the_field(
    stack: Stack, owner: Account
) -> None:
    with pytest.raises(Invalid) as off:
        await put_on(stack, owner.organization_id, "free", gateways=5)
    assert off.value.details == [{"field": "limits", "message": "not on this plan"}]
    with pytest.raises(Invalid) as unknown:
        await put_on(stack, owner.organization_id, "enterprise", seats=5)
    assert unknown.value.details[0]["field"] == "limits.seats"
    with pytest.raises(Invalid) as negative:
        await put_on(stack, owner.organization_id, "enterprise", users=-1)
    assert negative.value.details[0]["field"] == "limits.users"
    with pytest.raises(Invalid) as plan:
        await put_on(stack, owner.organization_id, "platinum")
    assert plan.value.details[0]["field"] == "plan"


async def test_a_plan_change_that_would_leave_the_organisation_over_a_limit_is_explained(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    for _ in range(4):
        assert (await add_user(client, owner)).status_code == 201
    assert (await add_gateway(client, owner)).status_code == 201
    assert (await add_gateway(client, owner)).status_code == 201
    with pytest.raises(Conflict) as refused:
        await put_on(stack, owner.organization_id, "free")
    assert refused.value.details == [
        {"field": "plan", "limit": "users", "allowed": 3, "count": 5},
        {"field": "plan", "limit": "gateways", "allowed": 1, "count": 2},
    ]
    assert "users: 5 members, the plan allows 3" in refused.value.message
    assert "nothing changed" in refused.value.message
    assert (await _plan(client, owner))["plan"] == "enterprise"


async def test_plan_changes_are_audited(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    await put_on(stack, owner.organization_id, "pro")
    await put_on(stack, owner.organization_id, "enterprise", agents=500)
    async with stack.db.session(uuid.UUID(owner.organization_id)) as session:
        events = list(
            await session.scalars(
                select(AuditEvent)
                .where(AuditEvent.action == "organization.plan.change")
                .order_by(AuditEvent.seq)
            )
        )
    assert [(e.summary["before"]["plan"], e.summary["after"]["plan"]) for e in events] == [
        ("enterprise", "pro"),
        ("pro", "enterprise"),
    ]
    assert events[1].summary["after"]["limits"]["agents"] == 500
    assert events[1].actor_label == "test operator"
    verified = await client.get("/api/v1/audit-events/verify", headers=owner.headers)
    assert verified.json()["valid"] is True


@pytest.mark.parametrize("stack", ["production"], indirect=True)
async def test_twenty_concurrent_creates_on_free_leave_exactly_the_limit(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    """Real PostgreSQL: twenty users, twenty agents and twenty gateways at once."""
    await put_on(stack, owner.organization_id, "free")
    users = await asyncio.gather(*(add_user(client, owner) for _ in range(20)))
    agents = await asyncio.gather(*(add_agents(client, owner, f"a{i}") for i in range(20)))
    gateways = await asyncio.gather(*(add_gateway(client, owner) for _ in range(20)))
    assert sorted(r.status_code for r in users) == [201] * 2 + [402] * 18
    assert sorted(r.status_code for r in agents) == [201] * 10 + [402] * 10
    assert sorted(r.status_code for r in gateways) == [201] + [402] * 19
    limits = {i["name"]: i["used"] for i in (await _plan(client, owner))["limits"]}
    assert limits["users"] == 3
    assert limits["agents"] == 10
    assert limits["gateways"] == 1

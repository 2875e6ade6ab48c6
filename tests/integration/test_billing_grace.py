"""Billing with Stripe (M12), continued, against the local stand-in (`tests/stripe_local.py`):
a downgrade that leaves the organisation over a limit keeps its data and the previous
limits for a visible grace period, then enforces the lower plan (bundle re-signed); usage
over the plan goes to Stripe as meter events, each execution once. Both stacks."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from control_plane.db.models import AuditEvent, Membership, OrganizationPlan
from control_plane.services.plans.warnings import month_window
from tests.conftest import Account, Stack
from tests.integration.billing_support import (
    METER_EVENT,
    WEBHOOK,
    billing_state,
    plan_limits,
    upgrade,
)
from tests.integration.plan_support import add_gateway, add_user, put_on
from tests.integration.test_plans_bundle import POLICY, _engine, _input, _publish, _used
from tests.stripe_local import LocalStripe

pytestmark = pytest.mark.usefixtures("stripe_on")


async def _members(stack: Stack, org: str) -> int:
    async with stack.db.session(uuid.UUID(org)) as session:
        return int(await session.scalar(select(func.count(Membership.id))) or 0)


async def test_a_downgrade_keeps_data_with_a_visible_grace_then_enforces_the_lower_plan(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    assert (await _publish(client, owner, POLICY)).status_code in (200, 201)
    subscription = await upgrade(client, local_stripe, owner, "pro")
    for _ in range(4):
        assert (await add_user(client, owner)).status_code == 201
    assert await _members(stack, org) == 5  # over Free's 3

    cancelled = local_stripe.change_subscription(subscription, status="canceled")
    answered = await local_stripe.deliver(client, WEBHOOK, cancelled)
    assert answered.status_code == 200, answered.text
    assert answered.json()["outcome"] == (
        "subscription canceled; plan pro -> free with a grace period"
    )
    state = await billing_state(client, owner)
    assert state["plan"] == "free"
    assert state["subscription"]["status"] == "canceled"
    grace = state["grace"]
    until = datetime.fromisoformat(grace["until"])
    expected = datetime.now(UTC) + timedelta(days=stack.settings.billing_grace_days)
    assert abs(until - expected) < timedelta(minutes=5)
    assert grace["limits"]["users"] is None  # Pro's, still held
    assert grace["plan_limits"] == {
        "users": 3,
        "agents": 10,
        "gateways": 1,
        "executions_per_month": 10_000,
    }
    # During the grace period: nothing removed, the previous limits hold.
    assert await _members(stack, org) == 5
    assert (await add_user(client, owner)).status_code == 201
    _revision, engine = await _engine(stack, org)
    _used(engine, org, 10_000)
    assert engine.decide(_input(org)).outcome == "allow"

    # The grace period runs out (its end moved to the past: no waiting in tests).
    async with stack.db.session(uuid.UUID(org)) as session:
        await session.execute(
            update(OrganizationPlan).values(grace_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    before, _ = await _engine(stack, org)
    assert (await stack.app.state.billing_worker.run_once())["graces_ended"] == 1
    assert (await stack.app.state.billing_worker.run_once())["graces_ended"] == 0

    assert (await billing_state(client, owner))["grace"] is None
    assert (await plan_limits(client, owner))["users"] == 3
    refused = await add_user(client, owner)
    assert refused.status_code == 402, refused.text
    assert refused.json()["error"]["details"][0]["count"] == 6
    assert await _members(stack, org) == 6  # kept: nothing is deleted
    revision, engine = await _engine(stack, org)
    assert revision == before + 1
    _used(engine, org, 10_000)
    assert "budget free-plan-executions" in engine.decide(_input(org)).reasons[0]
    async with stack.db.session(uuid.UUID(org)) as session:
        ended = await session.scalar(
            select(func.count(AuditEvent.id)).where(
                AuditEvent.action == "organization.plan.grace_ended"
            )
        )
    assert ended == 1


async def test_an_upgrade_or_a_downgrade_within_the_limits_has_no_grace(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    await put_on(stack, owner.organization_id, "free")
    subscription = await upgrade(client, local_stripe, owner, "pro")
    assert (await billing_state(client, owner))["grace"] is None
    cancelled = local_stripe.change_subscription(subscription, status="canceled")
    assert (await local_stripe.deliver(client, WEBHOOK, cancelled)).status_code == 200
    state = await billing_state(client, owner)
    assert (state["plan"], state["grace"]) == ("free", None)


def _execution(n: int) -> dict[str, Any]:
    return {
        "id": f"run-{n}-{uuid.uuid4().hex[:6]}",
        "time": datetime.now(UTC).isoformat(),
        "principal": "apikey:ci",
        "kind": "agent",
        "name": "bot",
        "channel": "api",
        "status": "succeeded",
        "tokens_in": 1,
        "tokens_out": 1,
        "cost_usd": 0.001,
        "latency_ms": 5.0,
    }


async def test_executions_over_the_plan_are_reported_once_as_meter_events(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    await upgrade(client, local_stripe, owner, "enterprise")
    # The Enterprise contract's own executions limit (the operator's).
    await put_on(stack, org, "enterprise", executions_per_month=5)
    gateway = await add_gateway(client, owner)
    headers = {"Authorization": f"Bearer {gateway.json()['credential']}"}

    async def ingest(count: int) -> None:
        runs = [_execution(n) for n in range(count)]
        stored = await client.post(
            "/api/v1/executions/ingest", json={"executions": runs}, headers=headers
        )
        assert stored.status_code == 200, stored.text

    worker = stack.app.state.billing_worker
    await ingest(5)  # within the plan: nothing to report
    assert (await worker.run_once())["metered"] == 0
    await ingest(3)
    assert (await worker.run_once())["metered"] == 3
    assert (await worker.run_once())["metered"] == 0  # reported once
    await ingest(2)
    local_stripe.down = True
    assert (await worker.run_once())["metered"] == 0  # Stripe down: kept for the next round
    local_stripe.down = False
    assert (await worker.run_once())["metered"] == 2

    customer = next(iter(local_stripe.customers))
    window = month_window(datetime.now(UTC))
    assert [
        (e["event_name"], e["identifier"], e["payload"]) for e in local_stripe.meter_events
    ] == [
        (METER_EVENT, f"{org}:{window}:3", {"stripe_customer_id": customer, "value": "3"}),
        (METER_EVENT, f"{org}:{window}:5", {"stripe_customer_id": customer, "value": "2"}),
    ]

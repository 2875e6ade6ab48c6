"""Billing with Stripe (M12) against a local stand-in speaking Stripe's API
(`tests/stripe_local.py`; Stripe cannot run here), on both stacks (production: PostgreSQL):
an upgrade end to end into the signed bundle, webhooks forged, stale, replayed or naming
another organisation refused, invoices and the portal, roles and tenancy, and everything
but billing working while Stripe is off or down."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from control_plane.db.models import AuditEvent, BillingAccount, StripeEvent
from control_plane.db.session import SYSTEM
from control_plane.services.billing.stripe_api import Billing
from tests.conftest import Account, Stack, member, signup
from tests.integration.billing_support import (
    PRICE_EXECUTIONS,
    PRICE_PRO,
    WEBHOOK,
    billing_of,
    billing_state,
    checkout,
    plan_limits,
)
from tests.integration.plan_support import put_on
from tests.integration.test_plans_bundle import POLICY, _engine, _input, _publish, _used
from tests.stripe_local import LocalStripe, sign

pytestmark = pytest.mark.usefixtures("stripe_on")


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    return error


async def _stripe_events(stack: Stack) -> int:
    async with stack.db.session(SYSTEM) as session:
        return int(await session.scalar(select(func.count(StripeEvent.id))) or 0)


async def _plan_changes(stack: Stack, org: str) -> list[AuditEvent]:
    async with stack.db.session(uuid.UUID(org)) as session:
        rows = await session.scalars(
            select(AuditEvent)
            .where(AuditEvent.action == "organization.plan.change")
            .order_by(AuditEvent.created_at)
        )
        return list(rows)


async def test_an_upgrade_end_to_end_reaches_the_signed_bundle(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    assert (await _publish(client, owner, POLICY)).status_code in (200, 201)
    state = await billing_state(client, owner)
    assert state == {
        "configured": True,
        "plan": "free",
        "for_sale": ["pro", "enterprise"],
        "customer": False,
        "subscription": None,
        "grace": None,
    }

    started = await checkout(client, owner, "pro")
    assert started.status_code == 201, started.text
    assert started.json()["url"].startswith(local_stripe.base_url + "/c/pay/cs_test_")
    [customer] = local_stripe.customers.values()
    assert customer["metadata"] == {"organization_id": org}
    session = local_stripe.checkout_sessions[started.json()["id"]]
    assert session["customer"] == customer["id"]
    assert session["client_reference_id"] == org
    assert session["success_url"] == stack.settings.control_plane_url + "/billing?checkout=success"
    assert local_stripe.line_items[session["id"]] == [
        {"price": PRICE_PRO, "quantity": "1"},
        {"price": PRICE_EXECUTIONS},
    ]
    # Nothing is paid yet: still Free.
    assert (await plan_limits(client, owner))["plan"] == "free"
    before, _ = await _engine(stack, org)

    # The sidecars are woken with the new revision (Redis pub/sub / in-process).
    events_bus = stack.app.state.bundle_events
    woken: list[tuple[str, int]] = []
    original_notify = events_bus.notify

    async def notify(scope: str, revision: int) -> None:
        woken.append((scope, revision))
        await original_notify(scope, revision)

    events_bus.notify = notify
    try:
        for event in local_stripe.pay(session["id"]):
            delivered = await local_stripe.deliver(client, WEBHOOK, event)
            assert delivered.status_code == 200, delivered.text
    finally:
        del events_bus.notify  # the class's method again
    assert (await plan_limits(client, owner)) == {
        "plan": "pro",
        "users": None,
        "agents": 100,
        "gateways": 1,
        "executions_per_month": 100_000,
    }
    state = await billing_state(client, owner)
    assert state["plan"] == "pro"
    assert state["customer"] is True
    assert state["subscription"]["status"] == "active"
    assert state["subscription"]["plan"] == "pro"
    assert state["subscription"]["current_period_end"] is not None

    # The signed bundle the sidecars load carries Pro's limit: past Free's 10,000, allowed.
    revision, engine = await _engine(stack, org)
    assert revision == before + 1
    assert woken == [(org, revision)]
    _used(engine, org, 10_000)
    assert engine.decide(_input(org)).outcome == "allow"
    _used(engine, org, 90_000)
    assert "budget pro-plan-executions" in engine.decide(_input(org)).reasons[0]

    *_operator, change = await _plan_changes(stack, org)
    assert change.actor_type == "system"
    assert change.actor_label.startswith("stripe checkout.session.completed evt_")
    # The second event (subscription created) found the plan already Pro: one change.
    async with stack.db.session(SYSTEM) as db:
        outcomes = sorted((await db.scalars(select(StripeEvent.outcome))).all())
    assert outcomes == [
        "subscription active; plan free -> pro",
        "subscription active; plan pro unchanged",
    ]

    invoices = await client.get("/api/v1/billing/invoices", headers=owner.headers)
    assert invoices.status_code == 200, invoices.text
    [invoice] = invoices.json()["items"]
    assert invoice["status"] == "paid"
    assert invoice["amount_paid"] == 4900
    assert invoice["hosted_invoice_url"].startswith(local_stripe.base_url)

    portal = await client.post("/api/v1/billing/portal", headers=owner.headers)
    assert portal.status_code == 201, portal.text
    assert portal.json()["url"].startswith(local_stripe.base_url + "/p/session/")
    [portal_session] = local_stripe.portal_sessions.values()
    assert portal_session["customer"] == customer["id"]

    # Subscribed: a second checkout is refused (change plans in the portal).
    again = await checkout(client, owner, "enterprise")
    assert _error(again, 409)["details"] == [{"field": "plan", "message": "already subscribed"}]


async def test_a_forged_signature_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    await put_on(stack, owner.organization_id, "free")
    started = await checkout(client, owner)
    [completed, created] = local_stripe.pay(started.json()["id"])
    payload, _genuine = local_stripe.signed(completed)

    forged = sign(payload, "whsec_" + "0" * 32)  # not Stripe's secret
    altered = json.dumps({**completed, "id": "evt_other"}).encode()
    genuine_for_other_body = local_stripe.signed(created)[1]
    attempts = [
        (payload, {"Stripe-Signature": forged}, "Stripe-Signature"),
        (altered, {"Stripe-Signature": genuine_for_other_body}, "Stripe-Signature"),
        (payload, {"Stripe-Signature": "t=1,v1=deadbeef"}, "Stripe-Signature"),
        (payload, {"Stripe-Signature": "garbage"}, "Stripe-Signature"),
        (payload, {}, "Stripe-Signature"),
    ]
    for body, headers, field in attempts:
        refused = await client.post(WEBHOOK, content=body, headers=headers)
        error = _error(refused, 400)
        assert error["code"] == "bad_request"
        assert error["details"][0]["field"] == field
    not_an_event = b"this is not json"
    refused = await client.post(
        WEBHOOK,
        content=not_an_event,
        headers={"Stripe-Signature": sign(not_an_event, local_stripe.webhook_secret)},
    )
    assert _error(refused, 400)["details"] == [{"field": "body", "message": "not a Stripe event"}]

    assert (await plan_limits(client, owner))["plan"] == "free"
    assert await _stripe_events(stack) == 0
    assert len(await _plan_changes(stack, owner.organization_id)) == 1  # the operator's


async def test_a_stale_timestamp_is_refused(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    await put_on(stack, owner.organization_id, "free")
    started = await checkout(client, owner)
    [completed, _created] = local_stripe.pay(started.json()["id"])
    tolerance = stack.settings.stripe_webhook_tolerance_seconds
    stale = await local_stripe.deliver(
        client, WEBHOOK, completed, timestamp=int(time.time()) - tolerance - 60
    )
    assert _error(stale, 400)["details"] == [
        {"field": "Stripe-Signature", "message": "older than the tolerance"}
    ]
    assert (await plan_limits(client, owner))["plan"] == "free"
    assert await _stripe_events(stack) == 0
    # The same event, delivered fresh, is applied.
    fresh = await local_stripe.deliver(client, WEBHOOK, completed)
    assert fresh.status_code == 200, fresh.text
    assert (await plan_limits(client, owner))["plan"] == "pro"


async def test_a_replayed_event_has_no_second_effect(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    org = owner.organization_id
    await put_on(stack, org, "free")
    started = await checkout(client, owner)
    [completed, _created] = local_stripe.pay(started.json()["id"])
    first = await local_stripe.deliver(client, WEBHOOK, completed)
    assert first.json()["duplicate"] is False
    # The customer cancels; Stripe reports it; the organisation is back on Free.
    subscription = local_stripe.checkout_sessions[started.json()["id"]]["subscription"]
    cancelled = local_stripe.change_subscription(subscription, status="canceled")
    assert (await local_stripe.deliver(client, WEBHOOK, cancelled)).status_code == 200
    assert (await plan_limits(client, owner))["plan"] == "free"

    # A captured upgrade event resent (with a fresh, valid signature): nothing happens,
    # also when it arrives many times at once.
    replays = await asyncio.gather(
        *[local_stripe.deliver(client, WEBHOOK, completed) for _ in range(5)]
    )
    for replay in replays:
        assert replay.status_code == 200, replay.text
        assert replay.json()["duplicate"] is True
    assert (await plan_limits(client, owner))["plan"] == "free"
    assert len(await _plan_changes(stack, org)) == 3  # (enterprise ->) free -> pro -> free
    assert await _stripe_events(stack) == 2


async def test_an_event_cannot_move_another_organisation(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    victim = await signup(client, "Victim")
    await put_on(stack, owner.organization_id, "free")
    await put_on(stack, victim.organization_id, "free")
    started = await checkout(client, owner)
    session_id = started.json()["id"]
    [completed, created] = local_stripe.pay(session_id)

    # A genuine checkout of the attacker's customer that names the victim: ignored.
    session = dict(completed["data"]["object"], client_reference_id=victim.organization_id)
    naming_victim = local_stripe.event("checkout.session.completed", session)
    answered = await local_stripe.deliver(client, WEBHOOK, naming_victim)
    assert answered.status_code == 200, answered.text
    assert answered.json()["outcome"].startswith("ignored")
    # A subscription event whose metadata names the victim moves the customer's own
    # organisation only: the customer, not metadata, says whose it is.
    subscription = dict(created["data"]["object"])
    subscription["metadata"] = {"organization_id": victim.organization_id}
    claimed = local_stripe.event("customer.subscription.updated", subscription)
    assert (await local_stripe.deliver(client, WEBHOOK, claimed)).status_code == 200
    assert (await plan_limits(client, owner))["plan"] == "pro"
    assert (await plan_limits(client, victim))["plan"] == "free"
    # A customer that is no organisation's: recorded, nothing changed.
    stranger = dict(subscription, customer="cus_unknown")
    unknown = local_stripe.event("customer.subscription.updated", stranger)
    answered = await local_stripe.deliver(client, WEBHOOK, unknown)
    assert answered.json()["outcome"] == "ignored: not a customer of ours"

    # The victim's billing shows nothing of the attacker's.
    assert (await billing_state(client, victim))["customer"] is False
    invoices = await client.get("/api/v1/billing/invoices", headers=victim.headers)
    assert invoices.json()["items"] == []
    portal = await client.post("/api/v1/billing/portal", headers=victim.headers)
    assert _error(portal, 409)["details"] == [{"field": "billing", "message": "no customer"}]
    # Its own checkout makes its own customer.
    assert (await checkout(client, victim)).status_code == 201
    async with stack.db.session(SYSTEM) as db:
        accounts = {
            str(a.organization_id): a.customer_id for a in await db.scalars(select(BillingAccount))
        }
    assert len(set(accounts.values())) == 2
    assert local_stripe.customers[accounts[victim.organization_id]]["metadata"] == {
        "organization_id": victim.organization_id
    }


async def test_only_owners_and_admins_reach_billing(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    admin = await member(client, owner, "admin")
    assert (await client.get("/api/v1/billing", headers=admin.headers)).status_code == 200
    for role in ("viewer", "developer", "security_admin", "auditor", "operator"):
        who = await member(client, owner, role)
        for method, path in (
            ("GET", "/api/v1/billing"),
            ("GET", "/api/v1/billing/invoices"),
            ("POST", "/api/v1/billing/portal"),
            ("POST", "/api/v1/billing/checkout"),
        ):
            body = {"plan": "pro"} if path.endswith("checkout") else None
            response = await client.request(method, path, json=body, headers=who.headers)
            assert response.status_code == 403, (role, path, response.text)
    assert (await client.get("/api/v1/billing")).status_code == 401


async def test_bad_checkout_input_names_the_field(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    await put_on(stack, owner.organization_id, "free")
    for body in ({"plan": "free"}, {"plan": "platinum"}, {}, {"plan": "pro", "price": "x"}):
        refused = await client.post("/api/v1/billing/checkout", json=body, headers=owner.headers)
        assert refused.status_code == 422, refused.text
        assert refused.json()["error"]["details"][0]["field"].startswith(("plan", "price"))
    assert local_stripe.requests == []


async def test_stripe_down_fails_only_billing(
    client: httpx.AsyncClient, stack: Stack, owner: Account, local_stripe: LocalStripe
) -> None:
    await put_on(stack, owner.organization_id, "free")
    local_stripe.down = True
    refused = await checkout(client, owner)
    error = _error(refused, 502)
    assert error["code"] == "provider_error"
    assert local_stripe.secret_key not in refused.text
    assert (await billing_state(client, owner))["plan"] == "free"
    assert (await client.get("/api/v1/plan", headers=owner.headers)).status_code == 200
    # Down while an event is applied: 502, so Stripe delivers it again; then it applies.
    local_stripe.down = False
    started = await checkout(client, owner)
    [completed, _] = local_stripe.pay(started.json()["id"])
    local_stripe.down = True
    assert (await local_stripe.deliver(client, WEBHOOK, completed)).status_code == 502
    assert await _stripe_events(stack) == 0
    local_stripe.down = False
    assert (await local_stripe.deliver(client, WEBHOOK, completed)).status_code == 200
    assert (await plan_limits(client, owner))["plan"] == "pro"


async def test_without_stripe_billing_says_so_and_plans_still_work(
    client: httpx.AsyncClient, stack: Stack, owner: Account
) -> None:
    with billing_of(stack, Billing(None)):
        await _without_stripe(client, stack, owner)


async def _without_stripe(client: httpx.AsyncClient, stack: Stack, owner: Account) -> None:
    state = await billing_state(client, owner)
    assert state["configured"] is False
    assert state["for_sale"] == []
    refused = await checkout(client, owner)
    assert _error(refused, 409)["details"] == [{"field": "billing", "message": "not configured"}]
    assert _error(await client.post("/api/v1/billing/portal", headers=owner.headers), 409)
    invoices = await client.get("/api/v1/billing/invoices", headers=owner.headers)
    assert invoices.status_code == 200, invoices.text
    assert invoices.json()["items"] == []
    webhook = await client.post(WEBHOOK, content=b"{}", headers={"Stripe-Signature": "t=1,v1=0"})
    assert webhook.status_code == 404
    await put_on(stack, owner.organization_id, "pro")  # the operator's path
    assert (await plan_limits(client, owner))["plan"] == "pro"

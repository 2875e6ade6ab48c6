"""What the billing tests share: the local Stripe stand-in (`tests/stripe_local.py`, a real
HTTP server speaking Stripe's API) and a stack whose billing is configured against it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from control_plane.services.billing.stripe_api import Billing, StripeConfig
from tests.conftest import Account, Stack
from tests.stripe_local import LocalStripe, running

PRICE_PRO = "price_pro_monthly"
PRICE_ENTERPRISE = "price_enterprise_monthly"
PRICE_EXECUTIONS = "price_executions_metered"
METER_EVENT = "kaizen_executions"
WEBHOOK = "/api/v1/billing/stripe/webhook"


@pytest.fixture
async def local_stripe() -> AsyncIterator[LocalStripe]:
    async with running() as stripe:
        yield stripe


@contextmanager
def billing_of(stack: Stack, billing: Billing) -> Iterator[None]:
    """Swap the app's billing for a block (pytest's monkeypatch cannot restore an attribute
    of Starlette's `State`, which keeps them outside `__dict__`)."""
    state = stack.app.state
    before = state.billing
    state.billing = state.billing_worker.billing = billing
    try:
        yield
    finally:
        state.billing = state.billing_worker.billing = before


@pytest.fixture
async def stripe_on(stack: Stack, local_stripe: LocalStripe) -> AsyncIterator[Billing]:
    """The stack's billing configured against the local Stripe, for this test."""
    settings = stack.settings.model_copy(
        update={
            "stripe_secret_key": SecretStr(local_stripe.secret_key),
            "stripe_webhook_secret": SecretStr(local_stripe.webhook_secret),
            "stripe_api_base": local_stripe.base_url,
            "stripe_price_pro": PRICE_PRO,
            "stripe_price_enterprise": PRICE_ENTERPRISE,
            "stripe_price_executions": PRICE_EXECUTIONS,
            "stripe_meter_event_name": METER_EVENT,
        }
    )
    billing = Billing(StripeConfig.of(settings))
    assert billing.configured
    with billing_of(stack, billing):
        yield billing
    await billing.close()


async def billing_state(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/billing", headers=who.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def plan_limits(client: httpx.AsyncClient, who: Account) -> dict[str, Any]:
    response = await client.get("/api/v1/plan", headers=who.headers)
    assert response.status_code == 200, response.text
    body = response.json()
    return {"plan": body["plan"], **{i["name"]: i["limit"] for i in body["limits"]}}


async def checkout(client: httpx.AsyncClient, who: Account, plan: str = "pro") -> httpx.Response:
    return await client.post("/api/v1/billing/checkout", json={"plan": plan}, headers=who.headers)


async def upgrade(
    client: httpx.AsyncClient, stripe: LocalStripe, who: Account, plan: str = "pro"
) -> str:
    """Checkout, pay, and Stripe's signed events delivered: the subscription id."""
    started = await checkout(client, who, plan)
    assert started.status_code == 201, started.text
    for event in stripe.pay(started.json()["id"]):
        delivered = await stripe.deliver(client, WEBHOOK, event)
        assert delivered.status_code == 200, delivered.text
    session = stripe.checkout_sessions[started.json()["id"]]
    subscription: str = session["subscription"]
    return subscription

"""An organisation's Stripe customer: Checkout sessions for upgrades, the customer portal,
and its invoices.

The customer is created at the first checkout, under the organisation's row lock (so two
concurrent checkouts make one customer), with the organisation's id in its metadata; the
`billing_accounts` row maps it back. Every Stripe call is made with the customer id of the
caller's own organisation, read in its tenant-scoped session: nothing a request carries
names a customer, a price or a URL (the plan is a name from the catalogue, the return URLs
are the studio's billing page).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from stripe.params.checkout import SessionCreateParams, SessionCreateParamsLineItem

from control_plane.db.base import utcnow
from control_plane.db.locks import lock_organization
from control_plane.db.models import BillingAccount, Organization
from control_plane.errors import Conflict, Invalid
from control_plane.schemas import billing as schemas
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.billing.stripe_api import Billing, failed
from control_plane.services.plans.catalogue import PLANS
from control_plane.services.plans.quotas import plan_of

# Subscription states in which the customer is paying for the plan (Stripe's names).
PAYING = frozenset({"active", "trialing", "past_due"})


async def account(session: AsyncSession) -> BillingAccount | None:
    return await session.scalar(select(BillingAccount))


async def overview(session: AsyncSession, billing: Billing) -> schemas.BillingOut:
    """The plan, the subscription as Stripe's webhooks last reported it, and a downgrade's
    grace period. Reads no Stripe API: it answers while Stripe is unreachable."""
    state = await plan_of(session)
    row = await account(session)
    subscription = None
    if row is not None and row.subscription_id and row.subscription_status:
        subscription = schemas.SubscriptionOut(
            id=row.subscription_id,
            status=row.subscription_status,
            plan=billing.config.plan_of_price(row.price_id) if billing.config else None,
            current_period_end=row.current_period_end,
        )
    grace = None
    if state.grace_until is not None:
        grace = schemas.GraceOut(
            until=state.grace_until, limits=state.limits, plan_limits=state.plan_limits or {}
        )
    return schemas.BillingOut(
        configured=billing.configured,
        plan=state.plan.name,
        for_sale=for_sale(billing),
        customer=row is not None,
        subscription=subscription,
        grace=grace,
    )


async def ensure_customer(
    session: AsyncSession, billing: Billing, organization_id: uuid.UUID
) -> BillingAccount:
    """The organisation's customer, created at Stripe on first use. Commit it before the
    next Stripe call, so a failure there leaves no customer unknown to us."""
    _config, client = billing.require()
    await lock_organization(session, organization_id)
    row = await account(session)
    if row is not None:
        return row
    organization = await session.get(Organization, organization_id)
    name = organization.name if organization is not None else str(organization_id)
    try:
        customer = await client.v1.customers.create_async(
            params={"name": name, "metadata": {"organization_id": str(organization_id)}}
        )
    except stripe.StripeError as error:
        failed("create the customer", error)
    row = BillingAccount(
        organization_id=organization_id,
        customer_id=customer.id,
        metered_reported=0,
        updated_at=utcnow(),
    )
    session.add(row)
    await session.flush()
    return row


@dataclass(frozen=True)
class Redirect:
    id: str
    url: str


async def checkout(
    session: AsyncSession,
    billing: Billing,
    organization_id: uuid.UUID,
    actor: Actor,
    plan_name: str,
) -> Redirect:
    """A Checkout session subscribing the organisation to `plan_name`'s price.

    The plan changes only when Stripe's signed webhook says the subscription is paid."""
    config, client = billing.require()
    price = config.prices.get(plan_name)
    if price is None:
        sold = ", ".join(config.prices)
        raise Invalid(
            f"the {plan_name} plan is not sold through Stripe here; choose one of: {sold}",
            details=[{"field": "plan", "message": f"one of {sold}"}],
        )
    row = await ensure_customer(session, billing, organization_id)
    current = await plan_of(session)
    if row.subscription_id and row.subscription_status in PAYING:
        raise Conflict(
            f"this organisation already has a subscription ({current.plan.title}); change or "
            "cancel it in the customer portal",
            details=[{"field": "plan", "message": "already subscribed"}],
        )
    if current.plan.name == plan_name:
        raise Conflict(
            f"this organisation is already on the {current.plan.title} plan",
            details=[{"field": "plan", "message": "the current plan"}],
        )
    line_items: list[SessionCreateParamsLineItem] = [{"price": price, "quantity": 1}]
    if config.executions_price:
        line_items.append({"price": config.executions_price})  # metered: no quantity
    metadata = {"organization_id": str(organization_id), "plan": plan_name}
    params: SessionCreateParams = {
        "mode": "subscription",
        "customer": row.customer_id,
        "client_reference_id": str(organization_id),
        "line_items": line_items,
        "metadata": metadata,
        "subscription_data": {"metadata": metadata},
        "success_url": config.return_url + "?checkout=success",
        "cancel_url": config.return_url + "?checkout=cancelled",
    }
    try:
        created = await client.v1.checkout.sessions.create_async(params=params)
    except stripe.StripeError as error:
        failed("start the checkout", error)
    if not created.url:
        raise Conflict("Stripe returned a checkout session without a URL; try again")
    await audit.record(
        session,
        organization_id,
        actor,
        "billing.checkout.create",
        "organization",
        organization_id,
        after={"plan": plan_name, "checkout_session": created.id},
    )
    return Redirect(created.id, created.url)


async def portal(
    session: AsyncSession, billing: Billing, organization_id: uuid.UUID, actor: Actor
) -> Redirect:
    """A customer-portal session (change or cancel the plan, payment methods, invoices)."""
    config, client = billing.require()
    row = await account(session)
    if row is None:
        raise Conflict(
            "this organisation has no Stripe customer yet; upgrade through checkout first",
            details=[{"field": "billing", "message": "no customer"}],
        )
    try:
        created = await client.v1.billing_portal.sessions.create_async(
            params={"customer": row.customer_id, "return_url": config.return_url}
        )
    except stripe.StripeError as error:
        failed("open the customer portal", error)
    await audit.record(
        session,
        organization_id,
        actor,
        "billing.portal.open",
        "organization",
        organization_id,
    )
    return Redirect(created.id, created.url)


def _time(value: Any) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if isinstance(value, int) else None


async def invoices(session: AsyncSession, billing: Billing, limit: int) -> list[dict[str, Any]]:
    """The organisation's latest invoices, newest first (none before its first checkout,
    and none without Stripe)."""
    if billing.client is None:
        return []
    client = billing.client
    row = await account(session)
    if row is None:
        return []
    try:
        listed = await client.v1.invoices.list_async(
            params={"customer": row.customer_id, "limit": limit}
        )
    except stripe.StripeError as error:
        failed("list the invoices", error)
    return [_invoice(invoice.to_dict()) for invoice in listed.data]


def _invoice(invoice: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": invoice["id"],
        "number": invoice.get("number"),
        "status": invoice.get("status"),
        "currency": invoice.get("currency"),
        "amount_due": invoice.get("amount_due") or 0,
        "amount_paid": invoice.get("amount_paid") or 0,
        "created": _time(invoice.get("created")),
        "period_start": _time(invoice.get("period_start")),
        "period_end": _time(invoice.get("period_end")),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "invoice_pdf": invoice.get("invoice_pdf"),
    }


def for_sale(billing: Billing) -> list[str]:
    """The plans Checkout sells, in the catalogue's order."""
    if billing.config is None:
        return []
    return [name for name in PLANS if name in billing.config.prices]

"""Billing with Stripe (M12): the organisation's billing state, Checkout for upgrades, the
customer portal and invoices (owners and admins: `billing:read` / `billing:manage`), and
Stripe's webhook, public and believed only when its signature verifies
(`services/billing/events.py`). Without Stripe configured, the state says so, there are
no invoices, checkout and portal are 409 and the webhook 404."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from control_plane.api.deps import (
    BillingDep,
    BundleEventsDep,
    DatabaseDep,
    KeyRingDep,
    SettingsDep,
    Tenant,
    requires,
)
from control_plane.errors import NotFound
from control_plane.schemas import billing as schemas
from control_plane.services.billing import accounts, events

router = APIRouter(prefix="/api/v1/billing", tags=["billing"])

Read = Annotated[Tenant, Depends(requires("billing", "read"))]
Manage = Annotated[Tenant, Depends(requires("billing", "manage"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 409: {}, 422: {}, 502: {}}


@router.get("", responses=ERRORS)
async def get_billing(tenant: Read, billing: BillingDep) -> schemas.BillingOut:
    """The plan, the subscription as Stripe's webhooks last reported it, and a downgrade's
    grace period. Reads no Stripe API: it answers while Stripe is unreachable."""
    async with tenant.session() as session:
        return await accounts.overview(session, billing)


@router.post("/checkout", status_code=201, responses=ERRORS)
async def create_checkout(
    body: schemas.CheckoutCreate, tenant: Manage, billing: BillingDep
) -> schemas.RedirectOut:
    """A Stripe Checkout session for an upgrade; send the browser to `url`. The plan
    changes when Stripe's signed webhook reports the paid subscription."""
    billing.require()
    async with tenant.session() as session:  # the customer, committed before checkout
        await accounts.ensure_customer(session, billing, tenant.organization_id)
    async with tenant.session() as session:
        redirect = await accounts.checkout(
            session, billing, tenant.organization_id, tenant.actor, body.plan
        )
    return schemas.RedirectOut(id=redirect.id, url=redirect.url)


@router.post("/portal", status_code=201, responses=ERRORS)
async def create_portal(tenant: Manage, billing: BillingDep) -> schemas.RedirectOut:
    """A Stripe customer-portal session: change or cancel the plan, payment methods."""
    async with tenant.session() as session:
        redirect = await accounts.portal(session, billing, tenant.organization_id, tenant.actor)
    return schemas.RedirectOut(id=redirect.id, url=redirect.url)


@router.get("/invoices", responses=ERRORS)
async def list_invoices(
    tenant: Read, billing: BillingDep, limit: Annotated[int, Query(ge=1, le=100)] = 24
) -> schemas.InvoicesOut:
    """The organisation's latest invoices from Stripe, newest first."""
    async with tenant.session() as session:
        items = await accounts.invoices(session, billing, limit)
    return schemas.InvoicesOut(items=[schemas.InvoiceOut(**item) for item in items])


@router.post("/stripe/webhook", responses={400: {}, 404: {}, 502: {}})
async def stripe_webhook(
    request: Request,
    billing: BillingDep,
    db: DatabaseDep,
    keys: KeyRingDep,
    settings: SettingsDep,
    bundle_events: BundleEventsDep,
) -> schemas.WebhookReceived:
    """Stripe's event delivery. No credential: the `Stripe-Signature` over the raw body is
    the only proof, verified before anything is read; forged or stale is 400, a replayed
    event id changes nothing."""
    if not billing.configured:
        raise NotFound("billing with Stripe is not configured on this installation")
    received = await events.receive(
        db,
        billing,
        await request.body(),
        request.headers.get("stripe-signature"),
        keys=keys,
        issuer=settings.issuer,
    )
    if received.revision is not None and received.organization_id is not None:
        await bundle_events.notify(str(received.organization_id), received.revision)
    return schemas.WebhookReceived(
        received=True, duplicate=received.duplicate, outcome=received.outcome
    )

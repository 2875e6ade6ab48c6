from __future__ import annotations

from datetime import datetime
from typing import Literal

from control_plane.schemas.base import Input, Output


class SubscriptionOut(Output):
    id: str
    status: str  # Stripe's: active, trialing, past_due, canceled, unpaid, …
    plan: str | None  # the plan its price is for (None: a price not sold here)
    current_period_end: datetime | None


class GraceOut(Output):
    """A downgrade left the organisation over a limit: these limits hold until `until`."""

    until: datetime
    limits: dict[str, int | None]  # enforced now
    plan_limits: dict[str, int | None]  # the plan's own, enforced from `until`


class BillingOut(Output):
    # Whether Stripe is configured here; when false, plans are set by the operator.
    configured: bool
    plan: str
    # The plans Checkout sells (empty when not configured).
    for_sale: list[str]
    customer: bool  # whether the organisation has a Stripe customer (portal available)
    subscription: SubscriptionOut | None
    grace: GraceOut | None


class CheckoutCreate(Input):
    plan: Literal["pro", "enterprise"]


class RedirectOut(Output):
    id: str
    url: str  # Stripe's page; the studio sends the browser there


class InvoiceOut(Output):
    id: str
    number: str | None
    status: str | None  # draft, open, paid, uncollectible, void
    currency: str | None
    amount_due: int  # in the currency's smallest unit
    amount_paid: int
    created: datetime | None
    period_start: datetime | None
    period_end: datetime | None
    hosted_invoice_url: str | None
    invoice_pdf: str | None


class InvoicesOut(Output):
    items: list[InvoiceOut]


class WebhookReceived(Output):
    received: bool
    duplicate: bool
    outcome: str

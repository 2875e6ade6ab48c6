"""Stripe webhooks: verified by signature, applied once per event id, the plan following
the subscription.

- **Verified** with the library's scheme, `stripe.Webhook.construct_event` (through the
  client): `Stripe-Signature: t=<unix>,v1=<HMAC-SHA256(whsec, "<t>.<body>")>` over the raw
  body, and `t` within `KAIZEN_STRIPE_WEBHOOK_TOLERANCE_SECONDS`. A missing, forged or stale
  signature, or a body that is no Stripe event, is a 400 and changes nothing. Nothing else
  authenticates the route: the body is believed only because it verifies.
- **Once per event id**: the `stripe_events` row (unique `event_id`) is inserted in the
  transaction that applies the event; a replay (Stripe retries, or an attacker resending a
  captured delivery) finds it and has no second effect, also when two arrive at once.
- **The organisation is the customer's**: `billing_accounts` maps the event's customer to
  the organisation that created it; metadata and `client_reference_id` are never trusted to
  pick one (a checkout naming another organisation is ignored).
- **The state is Stripe's current one**: for `checkout.session.completed` and
  `customer.subscription.{created,updated,deleted}` the subscription is retrieved from
  Stripe, so events arriving out of order converge on the latest state. A paying
  subscription (`active`, `trialing`, `past_due`) puts the organisation on the plan of its
  price; an ended one (`canceled`, `unpaid`, `incomplete_expired`, `paused`) on Free. A
  downgrade that leaves it over a limit applies with a grace period (`plans.changes`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import Table, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import BillingAccount, StripeEvent
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import BadRequest
from control_plane.services.audit import Actor
from control_plane.services.billing.accounts import PAYING, account
from control_plane.services.billing.stripe_api import Billing, StripeConfig, failed
from control_plane.services.keys import KeyRing
from control_plane.services.plans import changes
from control_plane.services.plans.catalogue import FALLBACK_PLAN
from control_plane.services.plans.quotas import plan_of

SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
    }
)
HANDLED = SUBSCRIPTION_EVENTS | {"checkout.session.completed"}
ENDED = frozenset({"canceled", "unpaid", "incomplete_expired", "paused"})


@dataclass(frozen=True)
class Received:
    event_id: str
    type: str
    outcome: str
    duplicate: bool = False
    organization_id: uuid.UUID | None = None
    # The bundle revision carrying a new plan's limit (the caller wakes the sidecars).
    revision: int | None = None


def verify(billing: Billing, payload: bytes, signature: str | None) -> stripe.Event:
    config, client = billing.require()
    if not signature:
        raise BadRequest(
            "the Stripe-Signature header is missing",
            details=[{"field": "Stripe-Signature", "message": "required"}],
        )
    try:
        event = client.construct_event(
            payload, signature, config.webhook_secret, tolerance=config.tolerance_seconds
        )
    except stripe.SignatureVerificationError as error:
        stale = "tolerance" in str(error)
        why = "older than the tolerance" if stale else "does not match the body"
        raise BadRequest(
            f"the Stripe-Signature does not verify ({why}); nothing changed",
            details=[{"field": "Stripe-Signature", "message": why}],
        ) from None
    except (ValueError, KeyError, TypeError):
        raise BadRequest(
            "the body is not a Stripe event",
            details=[{"field": "body", "message": "not a Stripe event"}],
        ) from None
    if not isinstance(event.to_dict().get("id"), str) or not isinstance(
        event.to_dict().get("type"), str
    ):
        raise BadRequest(
            "the Stripe event has no id or type",
            details=[{"field": "body", "message": "id and type required"}],
        )
    return event


async def _seen(db: Database, event_id: str) -> bool:
    async with db.session(SYSTEM) as session:
        found = await session.scalar(select(StripeEvent.id).where(StripeEvent.event_id == event_id))
    return found is not None


async def _record_unapplied(
    db: Database, event: stripe.Event, organization_id: uuid.UUID | None, outcome: str
) -> Received:
    async with db.session(SYSTEM) as session:
        inserted = await _insert(session, event, organization_id, outcome)
    return Received(event.id, event.type, outcome, not inserted, organization_id)


async def _insert(
    session: AsyncSession, event: stripe.Event, organization_id: uuid.UUID | None, outcome: str
) -> bool:
    """Claim the event id; False when it was already applied (a replay)."""
    table: Table = StripeEvent.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = (
        insert.values(
            id=uuid.uuid4(),
            created_at=utcnow(),
            event_id=event.id[:255],
            type=event.type[:128],
            organization_id=organization_id,
            outcome=outcome[:200],
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(table.c.id)
    )
    return (await session.execute(statement)).scalar_one_or_none() is not None


async def _organization_of(db: Database, customer: Any) -> uuid.UUID | None:
    if not isinstance(customer, str):
        return None
    async with db.session(SYSTEM) as session:
        found: uuid.UUID | None = await session.scalar(
            select(BillingAccount.organization_id).where(BillingAccount.customer_id == customer)
        )
    return found


def _first_item(subscription: dict[str, Any]) -> dict[str, Any]:
    items = (subscription.get("items") or {}).get("data") or []
    return dict(items[0]) if items and isinstance(items[0], dict) else {}


def _period_end(subscription: dict[str, Any]) -> datetime | None:
    end = _first_item(subscription).get("current_period_end") or subscription.get(
        "current_period_end"
    )
    return datetime.fromtimestamp(end, UTC) if isinstance(end, int) else None


def _target_plan(config: StripeConfig, subscription: dict[str, Any]) -> str | None:
    status = subscription.get("status")
    price = (_first_item(subscription).get("price") or {}).get("id")
    if status in PAYING:
        return config.plan_of_price(price)
    if status in ENDED:
        return FALLBACK_PLAN
    return None  # incomplete: waiting for the first payment


async def _apply(
    session: AsyncSession,
    organization_id: uuid.UUID,
    config: StripeConfig,
    subscription: dict[str, Any],
    actor: Actor,
    *,
    keys: KeyRing,
    issuer: str,
) -> tuple[str, int | None]:
    row = await account(session)
    if row is None:
        return "ignored: the organisation has no billing account", None
    status = str(subscription.get("status"))
    paying = row.subscription_status in PAYING
    subscription_id = str(subscription["id"])
    if row.subscription_id not in (None, subscription_id) and paying and status not in PAYING:
        # An older subscription ended while a newer one is paid for: the newer one counts.
        return f"ignored: {subscription_id} is not the current subscription", None
    price = (_first_item(subscription).get("price") or {}).get("id")
    row.subscription_id, row.subscription_status = subscription_id[:255], status[:32]
    row.price_id, row.current_period_end = price, _period_end(subscription)
    row.updated_at = utcnow()
    target = _target_plan(config, subscription)
    current = await plan_of(session)
    if target is None or target == current.plan.name:
        return f"subscription {status}; plan {current.plan.name} unchanged", None
    change = await changes.set_plan(
        session, organization_id, actor, target, {}, keys=keys, issuer=issuer, grace=config.grace
    )
    grace = " with a grace period" if change.after.grace_until else ""
    return f"subscription {status}; plan {current.plan.name} -> {target}{grace}", change.revision


async def receive(
    db: Database,
    billing: Billing,
    payload: bytes,
    signature: str | None,
    *,
    keys: KeyRing,
    issuer: str,
) -> Received:
    """Verify and apply one webhook delivery (see the module's docstring)."""
    config, client = billing.require()
    event = verify(billing, payload, signature)
    if await _seen(db, event.id):
        return Received(event.id, event.type, "already applied", duplicate=True)
    if event.type not in HANDLED:
        return await _record_unapplied(db, event, None, "ignored: not an event we act on")
    obj = event.to_dict()["data"]["object"]
    organization_id = await _organization_of(db, obj.get("customer"))
    if organization_id is None:
        return await _record_unapplied(db, event, None, "ignored: not a customer of ours")
    if event.type == "checkout.session.completed":
        reference = obj.get("client_reference_id")
        if obj.get("mode") != "subscription" or reference not in (None, str(organization_id)):
            outcome = "ignored: not a subscription checkout of this customer's organisation"
            return await _record_unapplied(db, event, organization_id, outcome)
        subscription_id = obj.get("subscription")
    else:
        subscription_id = obj.get("id")
    if not isinstance(subscription_id, str):
        return await _record_unapplied(db, event, organization_id, "ignored: no subscription")
    try:
        retrieved = await client.v1.subscriptions.retrieve_async(subscription_id)
    except stripe.StripeError as error:
        failed("read the subscription", error)  # a 502: Stripe delivers the event again
    subscription = retrieved.to_dict()
    if subscription.get("customer") != obj.get("customer"):
        outcome = "ignored: the subscription belongs to another customer"
        return await _record_unapplied(db, event, organization_id, outcome)
    actor = Actor("system", None, f"stripe {event.type} {event.id}"[:200])
    async with db.session(organization_id) as session:
        if not await _insert(session, event, organization_id, "applying"):
            return Received(event.id, event.type, "already applied", duplicate=True)
        outcome, revision = await _apply(
            session, organization_id, config, subscription, actor, keys=keys, issuer=issuer
        )
        await session.execute(
            update(StripeEvent)
            .where(StripeEvent.event_id == event.id)
            .values(outcome=outcome[:200])
            .execution_options(synchronize_session=False)
        )
    return Received(event.id, event.type, outcome, False, organization_id, revision)

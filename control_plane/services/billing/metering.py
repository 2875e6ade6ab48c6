"""Executions over the plan as Stripe meter events, and grace periods ending.

`BillingWorker` runs in the app's lifespan, every `KAIZEN_BILLING_POLL_SECONDS`:

- **Grace periods** (`plans.changes.end_grace`): an organisation whose downgrade grace has
  run out gets its plan's own limits; its bundle is re-signed with the lower executions
  limit and the sidecars woken. This runs with or without Stripe.
- **Meter events** (Stripe configured with `KAIZEN_STRIPE_METER_EVENT_NAME`): for each
  organisation with a paying subscription, the executions of this UTC month (the ingested
  execution records) past its plan's own limit — possible while a grace period keeps a
  larger limit — are reported to the meter (`stripe_customer_id`, `value`), only the part
  not reported yet (`billing_accounts.metered_reported`). The event's `identifier` is
  `<organisation>:<month>:<total over>`, so a report repeated after a crash is one Stripe
  already has. Stripe bills it through the metered price on the subscription.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable

import stripe
from sqlalchemy import select

from control_plane.db.base import utcnow
from control_plane.db.models import BillingAccount, OrganizationPlan
from control_plane.db.session import SYSTEM, Database
from control_plane.services.audit import Actor
from control_plane.services.billing.accounts import PAYING
from control_plane.services.billing.stripe_api import Billing
from control_plane.services.keys import KeyRing
from control_plane.services.plans import changes
from control_plane.services.plans.quotas import count, plan_of
from control_plane.services.plans.warnings import month_window

log = logging.getLogger(__name__)

Notify = Callable[[str, int], Awaitable[None]]


async def end_graces(db: Database, keys: KeyRing, issuer: str, notify: Notify | None) -> int:
    """End every grace period that ran out; how many ended."""
    now = utcnow()
    async with db.session(SYSTEM) as session:
        due = list(
            await session.scalars(
                select(OrganizationPlan.organization_id).where(
                    OrganizationPlan.grace_until.is_not(None), OrganizationPlan.grace_until <= now
                )
            )
        )
    actor = Actor("system", None, "billing: grace period ended")
    ended = 0
    for organization_id in due:
        async with db.session(organization_id) as session:
            revision = await changes.end_grace(
                session, organization_id, actor, keys=keys, issuer=issuer
            )
        ended += 1
        if revision is not None and notify is not None:
            await notify(str(organization_id), revision)
    return ended


async def report_overage(db: Database, billing: Billing, organization_id: uuid.UUID) -> int:
    """Report the organisation's unreported executions over its plan; the value sent."""
    config, client = billing.require()
    if not config.meter_event_name:
        return 0
    now = utcnow()
    window = month_window(now)
    async with db.session(organization_id) as session:
        row = await session.scalar(select(BillingAccount))
        if row is None or row.subscription_status not in PAYING:
            return 0
        state = await plan_of(session, now=now)
        own = (state.plan_limits or state.limits)["executions_per_month"]
        if own is None:
            return 0
        used = await count(session, "executions_per_month", now=now)
        reported = row.metered_reported if row.metered_window == window else 0
        customer = row.customer_id
    over = max(0, used - own)
    delta = over - reported
    if delta <= 0:
        return 0
    try:
        await client.v1.billing.meter_events.create_async(
            params={
                "event_name": config.meter_event_name,
                "identifier": f"{organization_id}:{window}:{over}",
                "payload": {"stripe_customer_id": customer, "value": str(delta)},
                "timestamp": int(now.timestamp()),
            }
        )
    except stripe.StripeError as error:
        log.warning(
            "meter event for %s not sent: %s (%s)",
            organization_id,
            type(error).__name__,
            error.http_status,
        )
        return 0
    async with db.session(organization_id) as session:
        row = await session.scalar(select(BillingAccount).with_for_update())
        if row is not None:
            row.metered_window, row.metered_reported = window, over
    return delta


async def report_all(db: Database, billing: Billing) -> int:
    if billing.config is None or not billing.config.meter_event_name:
        return 0
    async with db.session(SYSTEM) as session:
        organizations = list(
            await session.scalars(
                select(BillingAccount.organization_id).where(
                    BillingAccount.subscription_status.in_(PAYING)
                )
            )
        )
    total = 0
    for organization_id in organizations:
        total += await report_overage(db, billing, organization_id)
    return total


class BillingWorker:
    def __init__(
        self,
        db: Database,
        billing: Billing,
        keys: KeyRing,
        *,
        issuer: str,
        poll_seconds: float,
        notify: Notify | None,
    ) -> None:
        self.db, self.billing, self.keys = db, billing, keys
        self.issuer, self.poll, self.notify = issuer, poll_seconds, notify
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="kaizen-billing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
            except Exception:  # the next round retries
                log.exception("billing round failed")
            await asyncio.sleep(self.poll)

    async def run_once(self) -> dict[str, int]:
        ended = await end_graces(self.db, self.keys, self.issuer, self.notify)
        return {"graces_ended": ended, "metered": await report_all(self.db, self.billing)}

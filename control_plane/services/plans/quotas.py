"""An organisation's plan and usage, and the check every create of a counted thing makes.

The check cannot be raced: it locks the organisation's row (`SELECT … FOR UPDATE` on
PostgreSQL; SQLite's `BEGIN IMMEDIATE` already serialises writers) before counting, and
the lock holds until the creating transaction commits, so twenty concurrent creates on a
plan allowing three leave exactly three.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.locks import lock_organization
from control_plane.db.models import (
    Execution,
    Gateway,
    Membership,
    OrganizationPlan,
    Workload,
)
from control_plane.errors import QuotaExceeded
from control_plane.services.plans.catalogue import (
    FALLBACK_PLAN,
    LIMIT_NAMES,
    NOUNS,
    PLANS,
    Plan,
    effective_limits,
)


@dataclass(frozen=True)
class OrganizationPlanState:
    plan: Plan
    overrides: dict[str, int | None]
    # What is enforced now: the plan's limits, or during a downgrade's grace period the
    # larger of those and the previous plan's.
    limits: dict[str, int | None]
    updated_at: datetime | None
    # A downgrade's grace period (billing): the previous limits hold until then.
    grace_until: datetime | None = None
    # The plan's own limits (equal to `limits` outside a grace period).
    plan_limits: dict[str, int | None] | None = None


def _larger(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else max(a, b)


def with_grace(
    limits: dict[str, int | None], grace_limits: dict[str, int | None]
) -> dict[str, int | None]:
    return {name: _larger(value, grace_limits.get(name, value)) for name, value in limits.items()}


def month_start(now: datetime) -> datetime:
    return datetime(now.year, now.month, 1, tzinfo=UTC)


async def plan_of(session: AsyncSession, *, now: datetime | None = None) -> OrganizationPlanState:
    """The session's organisation's plan (Free when it has no plan row: fail closed)."""
    row = await session.scalar(select(OrganizationPlan))
    if row is None:
        plan = PLANS[FALLBACK_PLAN]
        limits = effective_limits(plan, {})
        return OrganizationPlanState(plan, {}, limits, None, plan_limits=limits)
    plan = PLANS.get(row.plan, PLANS[FALLBACK_PLAN])
    overrides = dict(row.overrides or {}) if plan.overridable else {}
    own = effective_limits(plan, overrides)
    grace = row.grace_until if row.grace_until and row.grace_until > (now or utcnow()) else None
    limits = with_grace(own, row.grace_limits or {}) if grace else own
    return OrganizationPlanState(plan, overrides, limits, row.updated_at, grace, own)


async def count(session: AsyncSession, name: str, *, now: datetime | None = None) -> int:
    """How much of limit `name` the session's organisation uses now."""
    if name == "users":
        query = select(func.count(Membership.id))
    elif name == "agents":
        query = select(func.count(Workload.id)).where(Workload.kind == "agent")
    elif name == "gateways":
        # An organisation's handle on a shared platform gateway (ADR 0012) is not its own.
        query = select(func.count(Gateway.id)).where(Gateway.mode != "platform")
    elif name == "executions_per_month":
        start = month_start(now or utcnow())
        query = select(func.count(Execution.id)).where(Execution.time >= start)
    else:
        raise ValueError(f"unknown limit {name!r}")
    return int(await session.scalar(query) or 0)


async def counts(session: AsyncSession) -> dict[str, int]:
    now = utcnow()
    return {name: await count(session, name, now=now) for name in LIMIT_NAMES}


def refusal(plan: Plan, name: str, limit: int, current: int) -> QuotaExceeded:
    return QuotaExceeded(
        f"the {plan.title} plan allows {limit} {NOUNS[name]} and this organisation has "
        f"{current}; upgrade the plan or remove some first",
        details=[
            {"field": name, "limit": name, "plan": plan.name, "allowed": limit, "count": current}
        ],
    )


async def ensure_room(
    session: AsyncSession, organization_id: uuid.UUID, name: str, adding: int = 1
) -> None:
    """Refuse (402 `quota_exceeded`) unless `adding` more of `name` stay within the plan.

    Call it before the first write of the create, inside the creating transaction."""
    if adding <= 0:
        return
    await lock_organization(session, organization_id)
    state = await plan_of(session)
    limit = state.limits[name]
    if limit is None:
        return
    current = await count(session, name)
    if current + adding > limit:
        raise refusal(state.plan, name, limit, current)

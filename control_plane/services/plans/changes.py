"""Moving an organisation to another plan: refused with every limit it would break,
otherwise stored, audited and compiled into a new bundle revision (the caller wakes the
sidecars with `BundleEvents.notify`, as after any publish)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.locks import lock_organization
from control_plane.db.models import OrganizationPlan
from control_plane.errors import Conflict
from control_plane.services import audit, policies
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.plans.catalogue import (
    LIMIT_NAMES,
    NOUNS,
    check_overrides,
    effective_limits,
    plan_named,
)
from control_plane.services.plans.quotas import (
    OrganizationPlanState,
    counts,
    plan_of,
)


@dataclass(frozen=True)
class PlanChange:
    before: OrganizationPlanState
    after: OrganizationPlanState
    # The bundle revision that carries the new executions limit (None: nothing published
    # yet; the first publish will carry it).
    revision: int | None


def _summary(state: OrganizationPlanState) -> dict[str, object]:
    summary: dict[str, object] = {
        "plan": state.plan.name,
        "overrides": state.overrides,
        "limits": state.limits,
    }
    if state.grace_until is not None:
        summary["grace_until"] = state.grace_until.isoformat()
    return summary


async def end_grace(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, *, keys: KeyRing, issuer: str
) -> int | None:
    """Enforce the plan's own limits once a downgrade's grace period is over: audited, and
    the bundle re-signed with the lower executions limit. The new revision, if any."""
    await lock_organization(session, organization_id)
    row = await session.scalar(select(OrganizationPlan))
    if row is None or row.grace_until is None or row.grace_until > utcnow():
        return None
    before = dict(row.grace_limits or {})
    row.grace_until, row.grace_limits = None, None
    await session.flush()
    after = await plan_of(session)
    await audit.record(
        session,
        organization_id,
        actor,
        "organization.plan.grace_ended",
        "organization",
        organization_id,
        before={"plan": row.plan, "limits": before},
        after=_summary(after),
    )
    revision = await policies.refresh(
        session, organization_id, actor, keys, why="plan grace period ended", issuer=issuer
    )
    return revision.revision if revision is not None else None


async def set_plan(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    plan_name: str,
    overrides: Mapping[str, int | None],
    *,
    keys: KeyRing,
    issuer: str,
    grace: timedelta | None = None,
) -> PlanChange:
    """Put the session's organisation on `plan_name` (with Enterprise `overrides`).

    A plan under which the organisation would already be over a limit is a 409 naming each
    such limit with its current count; nothing changes (remove things first). With `grace`
    (a downgrade Stripe already made) it is applied instead, nothing is deleted, and the
    previous limits hold for `grace` before the plan's own are enforced (ADR 0010)."""
    plan = plan_named(plan_name)
    checked = check_overrides(plan, overrides)
    await lock_organization(session, organization_id)
    before = await plan_of(session)
    limits = effective_limits(plan, checked)
    usage = await counts(session)
    over = [
        {"field": "plan", "limit": name, "allowed": limits[name], "count": usage[name]}
        for name in LIMIT_NAMES
        if (allowed := limits[name]) is not None and usage[name] > allowed
    ]
    if over and grace is None:
        listed = "; ".join(
            f"{o['limit']}: {o['count']} {NOUNS[str(o['limit'])]}, the plan allows {o['allowed']}"
            for o in over
        )
        raise Conflict(
            f"the {plan.title} plan would leave this organisation over its limits ({listed}); "
            "nothing changed: remove some first, or choose a larger plan",
            details=over,
        )
    row = await session.scalar(select(OrganizationPlan))
    now = utcnow()
    if row is None:
        row = OrganizationPlan(organization_id=organization_id, plan=plan.name, overrides=checked)
        row.updated_at = now
        session.add(row)
    else:
        row.plan, row.overrides, row.updated_at = plan.name, checked, now
    if over and grace is not None:
        # The limits in force before (themselves possibly an earlier grace's) hold a while.
        row.grace_until, row.grace_limits = now + grace, dict(before.limits)
    else:
        row.grace_until, row.grace_limits = None, None
    await session.flush()
    after = await plan_of(session)
    await audit.record(
        session,
        organization_id,
        actor,
        "organization.plan.change",
        "organization",
        organization_id,
        before=_summary(before),
        after=_summary(after),
    )
    revision = await policies.refresh(
        session, organization_id, actor, keys, why=f"plan changed to {plan.title}", issuer=issuer
    )
    return PlanChange(before, after, revision.revision if revision is not None else None)

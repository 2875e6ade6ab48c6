"""What the organisation's plan page shows: the plan, current usage of each limit, and this
month's executions warning once one went out."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import PlanWarning
from control_plane.services.plans import quotas, warnings
from control_plane.services.plans.quotas import OrganizationPlanState


@dataclass(frozen=True)
class PlanOverview:
    state: OrganizationPlanState
    used: dict[str, int]
    warning: PlanWarning | None


async def overview(session: AsyncSession) -> PlanOverview:
    return PlanOverview(
        await quotas.plan_of(session),
        await quotas.counts(session),
        await warnings.current(session),
    )

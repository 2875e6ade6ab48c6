"""The organisation's plan, its limits and what it uses of each (any member may read it).

Plans change through the operator's `kaizen-studio org set-plan` (M12); billing (Stripe)
is not built."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from control_plane.api.deps import Tenant, requires
from control_plane.schemas.plans import PlanLimitOut, PlanOut, PlanWarningOut
from control_plane.services.plans.catalogue import LIMIT_NAMES
from control_plane.services.plans.overview import overview

router = APIRouter(tags=["plans"])

Read = Annotated[Tenant, Depends(requires("organization", "read"))]


@router.get("/api/v1/plan", responses={401: {}, 403: {}})
async def get_plan(tenant: Read) -> PlanOut:
    """The plan, each limit (null: unlimited) and current usage. `executions_per_month`
    counts the executions the gateways reported this calendar month (UTC); the sidecars
    enforce it from their own shared counter, which may run a few seconds ahead. `warning`
    is this month's 90 % warning once the sidecars reported crossing it."""
    async with tenant.session() as session:
        found = await overview(session)
    state, used, warning = found.state, found.used, found.warning
    return PlanOut(
        plan=state.plan.name,
        title=state.plan.title,
        overrides=state.overrides,
        limits=[
            PlanLimitOut(
                name=name,
                limit=state.limits[name],
                used=used[name],
                enforced_by="sidecar" if name == "executions_per_month" else "control_plane",
            )
            for name in LIMIT_NAMES
        ],
        updated_at=state.updated_at,
        warning=PlanWarningOut(
            window=warning.window,
            plan=warning.plan,
            used=warning.used,
            limit=warning.limit,
            at=warning.created_at,
        )
        if warning is not None
        else None,
    )

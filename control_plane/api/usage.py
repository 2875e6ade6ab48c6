"""Budgets: those in force (`/budgets`, authored as BudgetPolicy documents through
`/policies`, so read-only here) and each one's counter per period window (`/usage`), as the
sidecars report it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.schemas.base import Page
from control_plane.schemas.fleet import BudgetOut, BudgetUsageOut
from control_plane.services import policies, usage
from policy.models import Budget

router = APIRouter(tags=["budgets"])

Read = Annotated[Tenant, Depends(requires("budgets", "read"))]
Filter = Annotated[str | None, Query(min_length=1, max_length=128)]


@router.get("/api/v1/usage", responses={401: {}, 403: {}, 422: {}})
async def list_usage(
    tenant: Read,
    cursor: Cursor = None,
    limit: Limit = 50,
    budget: Filter = None,
    window: Filter = None,
) -> Page[BudgetUsageOut]:
    """Counters by budget and period window (e.g. `day:2026-11-26`), newest report first.

    Sidecars report the current window of every budget in the bundle they serve with each
    status heartbeat (every 10 s), so a window's `used` lags its counter by at most that."""
    async with tenant.session() as session:
        rows, next_cursor = await usage.list_usage(
            session, budget=budget, window=window, cursor=cursor, limit=limit
        )
    return Page(items=[BudgetUsageOut.model_validate(r) for r in rows], next_cursor=next_cursor)


def _budget_out(budget: Budget, revision: int) -> BudgetOut:
    return BudgetOut(
        name=budget.name,
        scope=budget.scope,
        metric=budget.metric,
        period=budget.period,
        limit=budget.limit,
        soft_limit=budget.soft_limit,
        actions=list(budget.actions),
        bundle_revision=revision,
    )


@router.get("/api/v1/budgets", responses={401: {}, 403: {}})
async def list_budgets(tenant: Read) -> Page[BudgetOut]:
    """The budgets the current bundle revision enforces, by name (none before a publish).

    Create, change or delete one by publishing a BudgetPolicy through `/api/v1/policies`."""
    async with tenant.session() as session:
        revision, budgets = await policies.published_budgets(session)
    if revision is None:
        return Page(items=[])
    return Page(items=[_budget_out(b, revision) for b in budgets])

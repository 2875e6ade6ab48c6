"""Budget usage: each budget's counter per period window, as the sidecars report it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.schemas.base import Page
from control_plane.schemas.fleet import BudgetUsageOut
from control_plane.services import usage

router = APIRouter(prefix="/api/v1/usage", tags=["budgets"])

Read = Annotated[Tenant, Depends(requires("budgets", "read"))]
Filter = Annotated[str | None, Query(min_length=1, max_length=128)]


@router.get("", responses={401: {}, 403: {}, 422: {}})
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

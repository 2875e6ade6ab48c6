"""Budgets: those in force (`/budgets`, authored as BudgetPolicy documents through
`/policies`, so read-only here) and each one's counter per period window (`/usage`), as the
sidecars report it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.db.base import utcnow
from control_plane.errors import Invalid
from control_plane.schemas.base import Page
from control_plane.schemas.fleet import BudgetOut, BudgetUsageOut
from control_plane.schemas.plans import UsageRow, UsageTotalsOut, UsageTotalsTotal
from control_plane.services import metering, policies, usage
from control_plane.services.plans.quotas import month_start
from policy.documents.models import Budget

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


MAX_PERIOD = timedelta(days=400)


def _aware(value: datetime | None, field: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise Invalid(
            f"{field} needs a time zone, e.g. 2026-12-01T00:00:00Z",
            details=[{"field": field, "message": "a time zone is required"}],
        )
    return value


def _group_by(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in metering.GROUPS]
    if unknown or len(set(names)) != len(names):
        raise Invalid(
            f"group_by takes a comma-separated list of {', '.join(metering.GROUPS)}, each once",
            details=[{"field": "group_by", "message": f"unknown or repeated: {unknown or names}"}],
        )
    return names


@router.get(
    "/api/v1/usage/totals",
    response_model=UsageTotalsOut,
    responses={401: {}, 403: {}, 422: {}, 200: {"content": {"text/csv": {}}}},
)
async def usage_totals(
    request: Request,
    tenant: Read,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    group_by: Annotated[str, Query(max_length=100)] = "day",
    format: Literal["json", "csv"] | None = None,
) -> UsageTotalsOut | Response:
    """Executions, tokens and cost of the period `[from, to)` (default: this calendar month
    so far, UTC), grouped by any of `day`, `workspace`, `agent`, `api_key` (comma-separated;
    empty: the organisation's total). CSV with `format=csv` or `Accept: text/csv`."""
    now = utcnow()
    start = _aware(since, "from") or month_start(now)
    end = _aware(until, "to") or now
    if end <= start:
        raise Invalid("to must be after from", details=[{"field": "to", "message": "≤ from"}])
    if end - start > MAX_PERIOD:
        raise Invalid(
            f"the period is at most {MAX_PERIOD.days} days",
            details=[{"field": "to", "message": f"more than {MAX_PERIOD.days} days after from"}],
        )
    groups = _group_by(group_by)
    async with tenant.session() as session:
        result = await metering.totals(session, since=start, until=end, group_by=groups)
    wants_csv = format == "csv" or (
        format is None and "text/csv" in request.headers.get("accept", "")
    )
    if wants_csv:
        return Response(
            metering.to_csv(result),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="usage.csv"'},
        )
    return UsageTotalsOut(
        from_=result.since,
        to=result.until,
        group_by=list(result.group_by),
        items=[UsageRow(**row) for row in result.rows],
        total=UsageTotalsTotal(**result.total),
    )

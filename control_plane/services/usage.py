"""Budget usage: the sidecars' counters, as their status reports carry them.

Every status report lists, for each budget of the bundle the sidecar serves, the counter
of the current period window (`used`, with the budget's limits). Counters are shared by
every sidecar of an organisation through Redis, so reports of the same window agree; the
newest one is kept, one row per (budget, window), and earlier windows stay as history.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import BudgetUsage
from control_plane.services.pagination import paginate

_FIELDS = ("scope", "metric", "period", "used", "limit", "soft_limit")


async def record(
    session: AsyncSession,
    organization_id: uuid.UUID,
    gateway_id: uuid.UUID,
    budgets: Sequence[Mapping[str, Any]],
) -> None:
    """Upsert the reported windows (a no-op for an empty list)."""
    if not budgets:
        return
    now = utcnow()
    rows = {
        (str(b["name"]), str(b["window"])): {
            "id": uuid.uuid4(),
            "organization_id": organization_id,
            "created_at": now,
            "budget": str(b["name"]),
            "window": str(b["window"]),
            "reported_at": now,
            "gateway_id": gateway_id,
            **{field: b.get(field) for field in _FIELDS},
        }
        for b in budgets
    }
    table: Table = BudgetUsage.__table__  # type: ignore[assignment]
    dialect = session.get_bind().dialect.name
    insert: Any = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
    statement = insert.on_conflict_do_update(
        index_elements=["organization_id", "budget", "window"],
        set_={
            column: insert.excluded[column] for column in (*_FIELDS, "reported_at", "gateway_id")
        },
    )
    await session.execute(statement, list(rows.values()))


async def list_usage(
    session: AsyncSession,
    *,
    budget: str | None,
    window: str | None,
    cursor: str | None,
    limit: int,
) -> tuple[list[BudgetUsage], str | None]:
    query = select(BudgetUsage)
    if budget is not None:
        query = query.where(BudgetUsage.budget == budget)
    if window is not None:
        query = query.where(BudgetUsage.window == window)
    rows, next_cursor = await paginate(session, query, BudgetUsage, cursor, limit)
    return list(rows), next_cursor

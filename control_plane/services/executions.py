"""The execution records gateways ship (stored by `ingest.executions`), listed for the API."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Execution
from control_plane.services.pagination import paginate


async def list_executions(
    session: AsyncSession,
    *,
    cursor: str | None,
    limit: int,
    name: str | None = None,
    status: str | None = None,
    principal: str | None = None,
) -> tuple[Sequence[Any], str | None]:
    """One page of the organisation's executions, filtered by exact name, status, principal."""
    query = select(Execution)
    for column, value in (
        (Execution.name, name),
        (Execution.status, status),
        (Execution.principal, principal),
    ):
        if value is not None:
            query = query.where(column == value)
    return await paginate(session, query, Execution, cursor, limit)

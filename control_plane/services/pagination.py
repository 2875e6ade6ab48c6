"""Keyset pagination over (created_at, id): stable order, no offsets, opaque cursors."""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import Select, and_, or_
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.errors import Invalid

T = TypeVar("T")
MAX_LIMIT = 500


def _decode(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, _, ident = base64.urlsafe_b64decode(cursor.encode()).decode().partition("|")
        return datetime.fromisoformat(created), uuid.UUID(ident)
    except (ValueError, UnicodeDecodeError):
        raise Invalid("malformed cursor", details=[{"field": "cursor"}]) from None


def _encode(created: datetime, ident: uuid.UUID) -> str:
    return base64.urlsafe_b64encode(f"{created.isoformat()}|{ident}".encode()).decode()


async def paginate(
    session: AsyncSession, query: Select[Any], model: Any, cursor: str | None, limit: int
) -> tuple[Sequence[Any], str | None]:
    """One page of `query` (selecting `model`) after `cursor`, and the next cursor."""
    limit = max(1, min(limit, MAX_LIMIT))
    if cursor:
        created, ident = _decode(cursor)
        query = query.where(
            or_(model.created_at > created, and_(model.created_at == created, model.id > ident))
        )
    rows = (
        await session.scalars(query.order_by(model.created_at, model.id).limit(limit + 1))
    ).all()
    if len(rows) <= limit:
        return rows, None
    last = rows[limit - 1]
    return rows[:limit], _encode(last.created_at, last.id)

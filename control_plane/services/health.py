"""Readiness: whether the database (and Redis, when configured) answer, check by check."""

from __future__ import annotations

from sqlalchemy import text

from control_plane.db.session import SYSTEM, Database
from control_plane.services.kv import KeyValueStore


async def readiness(db: Database, kv: KeyValueStore, *, redis: bool) -> dict[str, str]:
    """Each dependency's state, `ok` or what failed (never the failure's message)."""
    checks: dict[str, str] = {}
    try:
        async with db.session(SYSTEM) as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; say which
        checks["database"] = f"error: {type(error).__name__}"
    if redis:
        checks["redis"] = "ok" if await kv.ping() else "error"
    return checks

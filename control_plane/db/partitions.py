"""Monthly range partitions of `decision_logs` on PostgreSQL (a plain table on SQLite).

Partitions are named `decision_logs_pYYYY_MM` and hold `[first of month, first of next
month)` in UTC. They are created ahead, outside the ingest transaction (creating a partition
locks the parent table, which must not be held while a batch is chained), under an advisory
lock so concurrent creators do not race; expiry drops whole partitions
(`services/decision_chain.py`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

PARENT = "decision_logs"
_NAME = re.compile(r"^decision_logs_p(\d{4})_(\d{2})$")
# Any constant: processes creating partitions take turns.
_PARTITION_LOCK = 0x6B7A6E5F646C70


def month_of(moment: datetime) -> datetime:
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_month(month: datetime) -> datetime:
    return month.replace(year=month.year + month.month // 12, month=month.month % 12 + 1)


def partition_name(month: datetime) -> str:
    return f"{PARENT}_p{month.year:04d}_{month.month:02d}"


def partition_month(name: str) -> datetime | None:
    """The month a partition holds, or None when `name` is no decision-log partition."""
    match = _NAME.match(name)
    if match is None:
        return None
    return datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)


def months_needed(times: Iterable[datetime]) -> list[datetime]:
    """The months of `times`, each with the month after it (created ahead)."""
    months: set[datetime] = set()
    for moment in times:
        month = month_of(moment)
        months.update((month, next_month(month)))
    return sorted(months)


def _create_sql(month: datetime) -> str:
    # Names and bounds come from datetimes we computed, never from input.
    return (
        f'CREATE TABLE IF NOT EXISTS "{partition_name(month)}" PARTITION OF {PARENT} '
        f"FOR VALUES FROM ('{month.isoformat()}') TO ('{next_month(month).isoformat()}')"
    )


def create_partitions(connection: Connection, months: Iterable[datetime]) -> list[str]:
    """Create the missing partitions of `months` (sync; also used by the migration)."""
    wanted = {partition_name(m): m for m in months}
    if connection.dialect.name != "postgresql" or not wanted:
        return []
    missing = _missing(connection, list(wanted))
    if not missing:
        return []
    connection.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PARTITION_LOCK})
    for name in missing:
        connection.execute(text(_create_sql(wanted[name])))
    return missing


def _missing(connection: Connection, names: list[str]) -> list[str]:
    rows = connection.execute(
        text("SELECT n FROM unnest(CAST(:names AS text[])) AS n WHERE to_regclass(n) IS NULL"),
        {"names": names},
    )
    return sorted(row[0] for row in rows)


async def ensure_partitions(engine: AsyncEngine, times: Iterable[datetime]) -> list[str]:
    """Make sure the partitions for `times` exist, in a short transaction of their own.

    One cheap catalogue query when they already do; returns the partitions it created."""
    if engine.dialect.name != "postgresql":
        return []
    months = months_needed(times)
    if not months:
        return []
    async with engine.begin() as connection:
        return await connection.run_sync(create_partitions, months)


def list_partitions(connection: Connection) -> list[tuple[str, datetime]]:
    """Every attached decision-log partition and the month it holds, oldest first."""
    rows = connection.execute(
        text(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
            "WHERE i.inhparent = CAST(:parent AS regclass)"
        ),
        {"parent": PARENT},
    )
    found = [(row[0], partition_month(row[0])) for row in rows]
    return sorted((name, month) for name, month in found if month is not None)


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Alembic `include_object`: partitions are made at run time, not declared in the ORM,
    so schema comparison leaves them (and their inherited indexes) out."""
    if type_ == "table" and reflected and compare_to is None and name:
        return partition_month(name) is None
    if type_ in ("index", "unique_constraint") and reflected and compare_to is None:
        table = getattr(getattr(obj, "table", None), "name", "")
        return partition_month(table) is None
    return True

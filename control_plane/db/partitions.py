"""Monthly range partitions of `decision_logs` on PostgreSQL (a plain table on SQLite).

Partitions are named `decision_logs_pYYYY_MM` and hold `[first of month, first of next
month)` in UTC. They are created ahead, outside the ingest transaction (creating a partition
locks the parent table, which must not be held while a batch is chained), under an advisory
lock so concurrent creators do not race; expiry drops whole partitions
(`services/decision_chain.py`).
"""

from __future__ import annotations

import re
import time
import weakref
from collections.abc import Iterable
from datetime import UTC, datetime
from math import inf
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
    for moment in set(times):  # a batch's times are often few distinct ones
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


# Partitions this process saw exist, by engine, with when it checked: an ingest of the same
# months skips the catalogue round trip. Expiry here forgets what it drops; one dropped by
# another process is noticed within `_RECHECK_SECONDS` (until then its inserts fail and are
# retried by the sender).
_RECHECK_SECONDS = 60.0
_seen: weakref.WeakKeyDictionary[AsyncEngine, dict[str, float]] = weakref.WeakKeyDictionary()


async def ensure_partitions(engine: AsyncEngine, times: Iterable[datetime]) -> list[str]:
    """Make sure the partitions for `times` exist, in a short transaction of their own.

    Nothing when this process checked them in the last minute; one cheap catalogue query
    when they already exist; returns the partitions it created."""
    if engine.dialect.name != "postgresql":
        return []
    names = {partition_name(m): m for m in months_needed(times)}
    seen = _seen.setdefault(engine, {})
    now = time.monotonic()
    if all(now - seen.get(name, -inf) < _RECHECK_SECONDS for name in names):
        return []
    async with engine.begin() as connection:
        created = await connection.run_sync(create_partitions, list(names.values()))
    seen.update(dict.fromkeys(names, now))
    return created


def missing_partition(error: BaseException) -> bool:
    """Whether `error` is PostgreSQL finding no partition for a row (one dropped meanwhile)."""
    return getattr(error, "sqlstate", None) == "23514" and "no partition" in str(error)


def forget_partitions(names: Iterable[str]) -> None:
    """Partitions just dropped: the next ingest into their months checks the catalogue."""
    dropped = set(names)
    for seen in list(_seen.values()):
        for name in dropped:
            seen.pop(name, None)


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

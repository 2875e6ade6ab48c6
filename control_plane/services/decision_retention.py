"""Decision-log retention: each organisation's `retention_days`, and expiry.

Expiry deletes decisions older than the organisation's `retention_days` (whole partitions
on PostgreSQL once every organisation is past them) under the organisation's chain lock
(`decision_chain.lock_chain`) and records the sequence ranges it removed with the hash of
each range's last link, so `decision_chain.verify` steps over exactly those.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import DecisionChain, DecisionLog
from control_plane.db.partitions import forget_partitions, list_partitions, month_of, next_month
from control_plane.db.session import SYSTEM, Database
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.decision_chain import lock_chain, merge_ranges

log = logging.getLogger(__name__)


async def set_retention(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, days: int
) -> DecisionChain:
    chain = await lock_chain(session, organization_id)
    before = chain.retention_days
    chain.retention_days = days
    await audit.record(
        session,
        organization_id,
        actor,
        "decisions.retention.update",
        "decision_chain",
        chain.id,
        before={"retention_days": before},
        after={"retention_days": days},
    )
    return chain


async def get_retention(session: AsyncSession) -> DecisionChain | None:
    return await session.scalar(select(DecisionChain))


@dataclass
class ExpiryReport:
    organizations: int = 0
    deleted: int = 0
    dropped_partitions: list[str] = field(default_factory=list)


async def _expired_ranges(
    session: AsyncSession, organization_id: uuid.UUID, cutoff: datetime
) -> list[list[Any]]:
    """Runs of consecutive sequences older than `cutoff` (gaps-and-islands)."""
    numbered = (
        select(
            DecisionLog.sequence,
            (DecisionLog.sequence - func.row_number().over(order_by=DecisionLog.sequence)).label(
                "island"
            ),
        )
        .where(DecisionLog.organization_id == organization_id, DecisionLog.time < cutoff)
        .subquery()
    )
    islands = (
        await session.execute(
            select(func.min(numbered.c.sequence), func.max(numbered.c.sequence)).group_by(
                numbered.c.island
            )
        )
    ).all()
    if not islands:
        return []
    ends = [last for _, last in islands]
    hashes = dict(
        (
            await session.execute(
                select(DecisionLog.sequence, DecisionLog.chain_hash).where(
                    DecisionLog.organization_id == organization_id,
                    DecisionLog.sequence.in_(ends),
                )
            )
        ).all()
    )
    return [[first, last, hashes[last]] for first, last in islands]


async def expire(db: Database, *, now: datetime | None = None) -> ExpiryReport:
    """Remove every organisation's decisions older than its retention.

    On PostgreSQL a partition whose whole month is past every organisation's cutoff is
    dropped; younger expired rows are deleted. On SQLite rows are deleted."""
    now = now or utcnow()
    report = ExpiryReport()
    async with db.session(SYSTEM) as session:
        chains = [
            (c.organization_id, now - timedelta(days=c.retention_days))
            for c in (await session.scalars(select(DecisionChain))).all()
        ]
    if not chains:
        return report
    # Rows before `whole` live in partitions that will be dropped whole.
    whole = month_of(min(cutoff for _, cutoff in chains)) if not db.is_sqlite else None
    actor = Actor("system", None, "kaizen-studio db expire-decisions")
    for organization_id, cutoff in chains:
        async with db.session(organization_id) as session:
            chain = await lock_chain(session, organization_id)
            ranges = await _expired_ranges(session, organization_id, cutoff)
            if not ranges:
                continue
            removed = delete(DecisionLog).where(
                DecisionLog.organization_id == organization_id, DecisionLog.time < cutoff
            )
            if whole is not None:
                removed = removed.where(DecisionLog.time >= whole)
            await session.execute(removed.execution_options(synchronize_session=False))
            count = sum(last - first + 1 for first, last, _ in ranges)
            chain.expired = merge_ranges([*chain.expired, *ranges])
            chain.expired_before = cutoff
            await audit.record(
                session,
                organization_id,
                actor,
                "decisions.expire",
                "decision_chain",
                chain.id,
                before_time=cutoff.isoformat(),
                decisions=count,
                retention_days=chain.retention_days,
            )
            report.organizations += 1
            report.deleted += count
    if whole is not None:
        async with db.engine.begin() as connection:
            report.dropped_partitions = await connection.run_sync(_drop_partitions, whole)
        forget_partitions(report.dropped_partitions)
    return report


def _drop_partitions(connection: Connection, before: datetime) -> list[str]:
    dropped = []
    for name, month in list_partitions(connection):
        if next_month(month) <= before:
            connection.execute(text(f'DROP TABLE IF EXISTS "{name}"'))
            dropped.append(name)
    if dropped:
        log.info("dropped expired decision-log partitions", extra={"partitions": dropped})
    return dropped

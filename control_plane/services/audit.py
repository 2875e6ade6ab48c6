"""Audit events: every state-changing admin action, hash-chained per organisation.

Each event's hash covers its content and the previous event's hash, so editing,
deleting or reordering any event breaks the chain at that point; `verify_chain` finds it.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.locks import lock_organization
from control_plane.db.models import AuditEvent
from control_plane.services.principal import Principal

GENESIS = "0" * 64


@dataclass(frozen=True)
class Actor:
    """Who did it and from where; built once per request."""

    type: str
    id: str | None
    label: str | None
    source_ip: str | None = None
    request_id: str | None = None

    @classmethod
    def of(cls, principal: Principal, source_ip: str | None, request_id: str | None) -> Actor:
        return cls(principal.kind, str(principal.id), principal.label, source_ip, request_id)


def _digest(event: AuditEvent) -> str:
    content = {
        "seq": event.seq,
        "organization_id": str(event.organization_id),
        "occurred_at": event.created_at.isoformat(),
        "actor": [event.actor_type, event.actor_id, event.actor_label],
        "action": event.action,
        "target": [event.target_type, event.target_id],
        "source_ip": event.source_ip,
        "request_id": event.request_id,
        "summary": event.summary,
        "prev_hash": event.prev_hash,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


async def record(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    action: str,
    target_type: str,
    target_id: uuid.UUID | str | None = None,
    **summary: Any,
) -> AuditEvent:
    """Append one event to the organisation's chain, inside the caller's transaction."""
    # Serialise appenders per organisation (PostgreSQL row lock; SQLite's writer lock
    # already serialises every write transaction).
    await lock_organization(session, organization_id)
    last = (
        await session.execute(
            select(AuditEvent.seq, AuditEvent.hash)
            .where(AuditEvent.organization_id == organization_id)
            .order_by(AuditEvent.seq.desc())
            .limit(1)
        )
    ).first()
    event = AuditEvent(
        id=uuid.uuid4(),
        organization_id=organization_id,
        created_at=utcnow(),
        seq=(last.seq + 1) if last else 1,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        target_type=target_type,
        target_id=str(target_id) if target_id is not None else None,
        source_ip=actor.source_ip,
        request_id=actor.request_id,
        summary=json.loads(json.dumps(summary, default=str)),
        prev_hash=last.hash if last else GENESIS,
    )
    event.hash = _digest(event)
    session.add(event)
    await session.flush()
    return event


async def list_events(
    session: AsyncSession,
    *,
    after_seq: int = 0,
    limit: int = 100,
    action: str | None = None,
    actor_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Sequence[AuditEvent]:
    query = select(AuditEvent).where(AuditEvent.seq > after_seq)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor_id:
        query = query.where(AuditEvent.actor_id == actor_id)
    if since:
        query = query.where(AuditEvent.created_at >= since)
    if until:
        query = query.where(AuditEvent.created_at < until)
    return (await session.scalars(query.order_by(AuditEvent.seq).limit(limit))).all()


@dataclass(frozen=True)
class ChainReport:
    valid: bool
    events: int
    head_hash: str
    first_broken_seq: int | None = None
    first_broken_id: str | None = None
    reason: str | None = None


async def verify_chain(session: AsyncSession, *, batch: int = 1000) -> ChainReport:
    """Walk the caller's organisation chain in order; report the first broken link."""
    expected_prev, expected_seq, count, after = GENESIS, 1, 0, 0
    while True:
        events = await list_events(session, after_seq=after, limit=batch)
        for event in events:
            reason = None
            if event.seq != expected_seq:
                reason = f"sequence gap: expected {expected_seq}, found {event.seq}"
            elif event.prev_hash != expected_prev:
                reason = "prev_hash does not match the previous event's hash"
            elif _digest(event) != event.hash:
                reason = "content does not match its hash"
            if reason:
                return ChainReport(False, count, expected_prev, event.seq, str(event.id), reason)
            expected_prev, expected_seq, count = event.hash, expected_seq + 1, count + 1
        if len(events) < batch:
            return ChainReport(True, count, expected_prev)
        after = events[-1].seq

"""Idempotent ingest of what sidecars and gateways report: decisions and executions.

The organisation comes from the reporting gateway's credential, never from the records.
A record whose id was already stored is counted as a duplicate and left as it was, so a
sender may resend a batch until it is acknowledged.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import Base
from control_plane.db.models import DecisionLog, Execution
from control_plane.schemas.fleet import DecisionRecord, ExecutionRecord
from control_plane.services.gateways import GatewayIdentity


def _text(value: Any, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _decision_row(identity: GatewayIdentity, record: DecisionRecord) -> dict[str, Any]:
    decision_input, result = record.input, record.result
    principal = decision_input.get("principal") or {}
    resource = decision_input.get("resource") or {}
    return {
        "id": uuid.uuid4(),
        "organization_id": identity.organization_id,
        "created_at": record.time,
        "decision_id": record.decision_id,
        "time": record.time,
        "gateway_id": identity.gateway_id,
        "instance": record.instance,
        "principal": _text(principal.get("id") if isinstance(principal, dict) else None, 320),
        "action": _text(decision_input.get("action"), 64),
        "resource": _text(resource.get("id") if isinstance(resource, dict) else None, 320),
        "channel": _text(decision_input.get("channel"), 16),
        "outcome": _text(result.get("outcome"), 32) or "unknown",
        "bundle_revision": _text(str(result.get("bundle_revision") or ""), 32) or None,
        "duration_us": record.duration_us,
        "input": decision_input,
        "result": result,
    }


def _execution_row(identity: GatewayIdentity, record: ExecutionRecord) -> dict[str, Any]:
    values = record.model_dump(exclude={"id"})
    return {
        **values,
        "id": uuid.uuid4(),
        "organization_id": identity.organization_id,
        "created_at": record.time,
        "execution_id": record.id,
        "gateway_id": identity.gateway_id,
    }


async def _insert_new(
    session: AsyncSession, model: type[Base], key: str, rows: Sequence[dict[str, Any]]
) -> tuple[int, int]:
    if not rows:
        return 0, 0
    # Duplicates inside one batch count once.
    unique = list({row[key]: row for row in rows}.values())
    dialect = session.get_bind().dialect.name
    table: Table = model.__table__  # type: ignore[assignment]
    statement: Any
    if dialect == "postgresql":
        statement = postgresql.insert(table)
    elif dialect == "sqlite":
        statement = sqlite.insert(table)
    else:
        raise RuntimeError(f"ingest supports PostgreSQL and SQLite, not {dialect}")
    statement = statement.on_conflict_do_nothing(index_elements=["organization_id", key])
    result = await session.execute(statement.returning(table.c[key]), unique)
    accepted = len(result.all())
    return accepted, len(rows) - accepted


async def decisions(
    session: AsyncSession, identity: GatewayIdentity, records: Sequence[DecisionRecord]
) -> tuple[int, int]:
    rows = [_decision_row(identity, r) for r in records]
    return await _insert_new(session, DecisionLog, "decision_id", rows)


async def executions(
    session: AsyncSession, identity: GatewayIdentity, records: Sequence[ExecutionRecord]
) -> tuple[int, int]:
    rows = [_execution_row(identity, r) for r in records]
    return await _insert_new(session, Execution, "execution_id", rows)

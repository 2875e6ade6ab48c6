"""What the fleet reports: decision logs and their hash chain, executions, budget usage."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class DecisionLog(TenantScoped, Base):
    """One authorization decision as a sidecar (or a stock OPA) logged it, input masked at
    source. On PostgreSQL the table is range-partitioned by `time`, one partition a month
    (`db/partitions.py`), so `time` is in the primary key and in every unique constraint.
    `sequence` and `chain_hash` chain each organisation's decisions in ingest order
    (`services/decision_chain.py`)."""

    __tablename__ = "decision_logs"
    __table_args__ = (
        UniqueConstraint("organization_id", "decision_id", "time"),
        # Every index leads with the tenant: each query is one organisation's.
        Index("ix_decision_logs_recent", "organization_id", "time", "decision_id"),
        Index("ix_decision_logs_sequence", "organization_id", "sequence"),
        Index("ix_decision_logs_principal", "organization_id", "principal", "time"),
        Index("ix_decision_logs_action", "organization_id", "action", "time"),
        Index("ix_decision_logs_resource", "organization_id", "resource", "time"),
        Index("ix_decision_logs_outcome", "organization_id", "outcome", "time"),
        Index("ix_decision_logs_gateway", "organization_id", "gateway_id", "time"),
        Index("ix_decision_logs_workspace", "organization_id", "workspace", "time"),
        Index("ix_decision_logs_bundle", "organization_id", "bundle_revision", "time"),
        {"postgresql_partition_by": "RANGE (time)"},
    )

    decision_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), primary_key=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    chain_hash: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))  # sidecar | opa
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    instance: Mapped[str | None] = mapped_column(String(200))
    principal: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(320))
    workspace: Mapped[str | None] = mapped_column(String(100))
    channel: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32))
    reasons: Mapped[str | None] = mapped_column(Text)  # newline-joined, for `reason` search
    bundle_revision: Mapped[str | None] = mapped_column(String(32))
    duration_us: Mapped[int | None] = mapped_column(BigInteger)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)


class Execution(TenantScoped, Base):
    """One agent or pipeline run on a gateway."""

    __tablename__ = "executions"
    __table_args__ = (UniqueConstraint("organization_id", "execution_id"),)

    execution_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    principal: Mapped[str | None] = mapped_column(String(320), index=True)
    kind: Mapped[str] = mapped_column(String(16))  # agent | pipeline
    name: Mapped[str] = mapped_column(String(128), index=True)
    channel: Mapped[str | None] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    tokens_in: Mapped[int] = mapped_column(BigInteger, default=0)
    tokens_out: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[float] = mapped_column(default=0.0)
    latency_ms: Mapped[float] = mapped_column(default=0.0)
    error: Mapped[str | None] = mapped_column(String(2000))
    decision_id: Mapped[str | None] = mapped_column(String(64))


# --- M5 decision-log store ---------------------------------------------------------------


class DecisionChain(TenantScoped, Base):
    """An organisation's decision-log chain head, its retention, and what expiry removed.

    Ingest locks this row, so one organisation's decisions are chained one batch at a time.
    `expired` lists `[first, last, chain_hash of last]` sequence ranges that retention
    deleted, so verification can step over them and nothing else."""

    __tablename__ = "decision_chains"
    __table_args__ = (UniqueConstraint("organization_id"),)

    head_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    head_hash: Mapped[str] = mapped_column(String(64))
    retention_days: Mapped[int] = mapped_column(Integer, default=365)
    expired: Mapped[list[list[Any]]] = mapped_column(JSON, default=list)
    expired_before: Mapped[datetime | None] = mapped_column(UTCDateTime())


# --- M3 budget usage, as the sidecars' counters report it ------------------------------------


class BudgetUsage(TenantScoped, Base):
    """One budget's counter in one period window, as last reported by a sidecar.

    Sidecars share the counters (Redis), so every report of the same window carries the
    same running total; the newest report wins."""

    __tablename__ = "budget_usage"
    __table_args__ = (UniqueConstraint("organization_id", "budget", "window"),)

    budget: Mapped[str] = mapped_column(String(128))
    scope: Mapped[str] = mapped_column(String(320))
    metric: Mapped[str] = mapped_column(String(32))
    period: Mapped[str] = mapped_column(String(16))
    window: Mapped[str] = mapped_column(String(32), index=True)
    used: Mapped[float] = mapped_column(default=0.0)
    limit: Mapped[float] = mapped_column(default=0.0)
    soft_limit: Mapped[float | None] = mapped_column()
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)

"""Gateways and their instances; agents, pipelines and their deployments."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class Gateway(TenantScoped, Base):
    """A gateway runtime and its sidecar; both present the same credential (`kgw_…`)."""

    __tablename__ = "gateways"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(16))  # dev | stage | prod
    url: Mapped[str] = mapped_column(String(2048))
    mode: Mapped[str] = mapped_column(String(16), default="shared")  # shared | dedicated
    credential_prefix: Mapped[str] = mapped_column(String(16))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class GatewayInstance(TenantScoped, Base):
    """The last status report of one sidecar (or gateway) process of a gateway."""

    __tablename__ = "gateway_instances"
    __table_args__ = (UniqueConstraint("gateway_id", "instance"),)

    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE"), index=True
    )
    instance: Mapped[str] = mapped_column(String(200))
    bundle_revision: Mapped[int | None] = mapped_column(BigInteger)
    key_id: Mapped[str | None] = mapped_column(String(64))
    last_sync: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decisions: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    log_backlog: Mapped[int] = mapped_column(BigInteger, default=0)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reported_at: Mapped[datetime] = mapped_column(UTCDateTime())


# -- agents, pipelines and deployments (M4) ---------------------------------------------------


class Workload(TenantScoped, Base):
    """An agent or a pipeline by name; its configs live in versions."""

    __tablename__ = "workloads"
    __table_args__ = (UniqueConstraint("organization_id", "kind", "name"),)

    kind: Mapped[str] = mapped_column(String(16))  # agent | pipeline
    name: Mapped[str] = mapped_column(String(128))
    latest_version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WorkloadVersion(TenantScoped, Base):
    """One immutable config of a workload: the document as written and as validated."""

    __tablename__ = "workload_versions"
    __table_args__ = (UniqueConstraint("workload_id", "version"),)

    workload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)  # policy.workloads `to_dict()`
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))  # of the canonical JSON of `config`
    created_by: Mapped[str | None] = mapped_column(String(320))


class Deployment(TenantScoped, Base):
    """A workload version served by a gateway; `requires` pins the versions of the agents it
    references (tools, pipeline roles), which ride along in the bundle."""

    __tablename__ = "deployments"
    __table_args__ = (UniqueConstraint("gateway_id", "kind", "name"),)

    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE"), index=True
    )
    workload_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("workloads.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[int] = mapped_column(Integer)
    requires: Mapped[dict[str, int]] = mapped_column(JSON, default=dict)
    created_by: Mapped[str | None] = mapped_column(String(320))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

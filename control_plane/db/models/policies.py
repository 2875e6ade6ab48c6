"""Policies, their versions, signed bundle revisions, impact replays and the publish gate."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class Policy(TenantScoped, Base):
    """A policy document by name; its text lives in versions. The draft is the latest
    version (absent once `deleted_at` is set); `published_version` is what the current
    bundle revision holds."""

    __tablename__ = "policies"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(128))
    kind: Mapped[str] = mapped_column(String(32))
    latest_version: Mapped[int] = mapped_column(Integer)
    published_version: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PolicyVersion(TenantScoped, Base):
    __tablename__ = "policy_versions"
    __table_args__ = (UniqueConstraint("policy_id", "version"),)

    policy_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("policies.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str | None] = mapped_column(String(320))


class BundleRevision(TenantScoped, Base):
    """One signed bundle of the organisation; the highest revision is the current one."""

    __tablename__ = "bundle_revisions"
    __table_args__ = (UniqueConstraint("organization_id", "revision"),)

    revision: Mapped[int] = mapped_column(BigInteger)
    reason: Mapped[str] = mapped_column(String(32))  # publish | rollback | refresh
    message: Mapped[str] = mapped_column(String(1000), default="")
    policies: Mapped[dict[str, int]] = mapped_column(JSON)  # name -> version
    key_id: Mapped[str] = mapped_column(String(64))
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    bundle: Mapped[bytes] = mapped_column(LargeBinary)
    created_by: Mapped[str | None] = mapped_column(String(320))


# -- impact replay and the publish gate (M5) --------------------------------------------------


class ReplayJob(TenantScoped, Base):
    """A replay of stored decisions against a policy set; the row is the job's only state."""

    __tablename__ = "replay_jobs"

    status: Mapped[str] = mapped_column(String(16), index=True)  # queued|running|completed|failed
    policy_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("policies.id", ondelete="SET NULL")
    )  # the `{id}` form; None for the whole set
    draft: Mapped[bool] = mapped_column(default=True)
    policies: Mapped[dict[str, int]] = mapped_column(JSON)  # name -> version replayed
    policies_hash: Mapped[str] = mapped_column(String(64), index=True)
    since: Mapped[datetime] = mapped_column(UTCDateTime())
    until: Mapped[datetime] = mapped_column(UTCDateTime())
    max_decisions: Mapped[int] = mapped_column(Integer)
    examples_per_transition: Mapped[int] = mapped_column(Integer)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    processed: Mapped[int] = mapped_column(BigInteger, default=0)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(String(2000))
    created_by: Mapped[str | None] = mapped_column(String(320))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PolicySettings(TenantScoped, Base):
    """Per-organisation policy settings: whether publishing needs a clean replay first."""

    __tablename__ = "policy_settings"
    __table_args__ = (UniqueConstraint("organization_id"),)

    require_replay_before_publish: Mapped[bool] = mapped_column(default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""ORM classes. Every tenant-owned row carries `organization_id` via `TenantScoped`."""

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


class Organization(Base):
    __tablename__ = "organizations"

    name: Mapped[str] = mapped_column(String(200))


class User(Base):
    __tablename__ = "users"

    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str | None] = mapped_column(String(200))
    display_name: Mapped[str | None] = mapped_column(String(200))
    is_active: Mapped[bool] = mapped_column(default=True)


class SigningKey(Base):
    """The control plane's asymmetric keys for access tokens and bundle signatures."""

    __tablename__ = "signing_keys"

    kid: Mapped[str] = mapped_column(String(64), unique=True)
    algorithm: Mapped[str] = mapped_column(String(16))
    public_jwk: Mapped[dict[str, Any]] = mapped_column(JSON)
    # AES-GCM ciphertext of the PKCS#8 private key under the master key.
    private_key_encrypted: Mapped[bytes] = mapped_column(LargeBinary)
    # Stops signing at `retired_at`; stays in the JWKS until `expires_at`.
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Membership(TenantScoped, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("organization_id", "user_id"),)

    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(32))


class Team(TenantScoped, Base):
    __tablename__ = "teams"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(String(1000), default="")


class TeamMember(TenantScoped, Base):
    __tablename__ = "team_members"
    __table_args__ = (UniqueConstraint("team_id", "user_id"),)

    team_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("teams.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


class Workspace(TenantScoped, Base):
    __tablename__ = "workspaces"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    environment: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(String(1000), default="")


class ApiKey(TenantScoped, Base):
    __tablename__ = "api_keys"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(32))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_by: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="SET NULL")
    )
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AuditEvent(TenantScoped, Base):
    """One admin action; `hash` chains it to the organisation's previous event."""

    __tablename__ = "audit_events"
    __table_args__ = (UniqueConstraint("organization_id", "seq"),)

    seq: Mapped[int] = mapped_column(BigInteger)
    actor_type: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64), index=True)
    target_type: Mapped[str] = mapped_column(String(32))
    target_id: Mapped[str | None] = mapped_column(String(64))
    source_ip: Mapped[str | None] = mapped_column(String(64))
    request_id: Mapped[str | None] = mapped_column(String(64))
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


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


class DecisionLog(TenantScoped, Base):
    """One authorization decision as a sidecar logged it (input masked at source)."""

    __tablename__ = "decision_logs"
    __table_args__ = (UniqueConstraint("organization_id", "decision_id"),)

    decision_id: Mapped[str] = mapped_column(String(64))
    time: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid, index=True)
    instance: Mapped[str | None] = mapped_column(String(200))
    principal: Mapped[str | None] = mapped_column(String(320), index=True)
    action: Mapped[str | None] = mapped_column(String(64))
    resource: Mapped[str | None] = mapped_column(String(320))
    channel: Mapped[str | None] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(32), index=True)
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


GLOBAL_MODELS: dict[type[Base], str] = {
    Organization: "the tenant itself; reached only by the id in the caller's credential",
    User: "a person may belong to several organisations; reached through Membership",
    SigningKey: "platform key material shared by every tenant; public halves are published",
}

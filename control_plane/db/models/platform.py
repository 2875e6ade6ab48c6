"""Shared platform gateways (ADR 0012): the operator's gateway fleet that serves many
organisations, and which organisation is placed on which one."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class PlatformGateway(Base):
    """A gateway the operator runs for many organisations; its credential is `kgp_…`,
    stored as SHA-256, and reads only the bundles of the organisations placed on it."""

    __tablename__ = "platform_gateways"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    url: Mapped[str] = mapped_column(String(2048))
    credential_prefix: Mapped[str] = mapped_column(String(16))
    credential_hash: Mapped[str] = mapped_column(String(64), unique=True)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PlatformPlacement(TenantScoped, Base):
    """The organisation is served by this platform gateway (at most one per organisation).

    `gateway_id` is the organisation's own handle on it: a `Gateway` row of mode `platform`
    (no usable credential) that its deployments name, so deploying to the shared gateway
    is the ordinary deploy, with its price and provider-key checks."""

    __tablename__ = "platform_placements"
    __table_args__ = (UniqueConstraint("organization_id"),)

    platform_gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("platform_gateways.id", ondelete="CASCADE"), index=True
    )
    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE")
    )

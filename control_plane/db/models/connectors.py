"""Data connectors (M14): a named connection, its immutable settings versions."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class Connector(TenantScoped, Base):
    """A connector by name; its settings live in versions, its password in the secret store
    (`connectors/<name>/password`), never in a row of its own."""

    __tablename__ = "connectors"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(63))
    type: Mapped[str] = mapped_column(String(32))
    latest_version: Mapped[int] = mapped_column(Integer)
    credential_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ConnectorVersion(TenantScoped, Base):
    """One immutable set of connection settings (no secret in it)."""

    __tablename__ = "connector_versions"
    __table_args__ = (UniqueConstraint("connector_id", "version"),)

    connector_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("connectors.id", ondelete="CASCADE"), index=True
    )
    version: Mapped[int] = mapped_column(Integer)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_by: Mapped[str | None] = mapped_column(String(320))

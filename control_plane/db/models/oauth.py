"""MCP clients of the OAuth authorization server (M11): the clients an organisation knows,
the grants its users gave them, and whether dynamic registration is open."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class OAuthClient(TenantScoped, Base):
    """A public OAuth client: registered dynamically (RFC 7591) or known by its Client ID
    Metadata Document (`client_id` is then the document's https URL)."""

    __tablename__ = "oauth_clients"
    __table_args__ = (UniqueConstraint("organization_id", "client_id"),)

    client_id: Mapped[str] = mapped_column(String(2048))
    kind: Mapped[str] = mapped_column(String(32))  # dynamic | metadata_document
    client_name: Mapped[str] = mapped_column(String(200))
    redirect_uris: Mapped[list[str]] = mapped_column(JSON)
    client_metadata: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    blocked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OAuthGrant(TenantScoped, Base):
    """One user's consent for one client at one gateway's MCP resource, with the scopes
    shown; its tokens live while it does (`session_id` is the `sid` they carry)."""

    __tablename__ = "oauth_grants"

    client_ref: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("oauth_clients.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    gateway_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("gateways.id", ondelete="CASCADE"), index=True
    )
    resource: Mapped[str] = mapped_column(String(2048))
    scope: Mapped[str] = mapped_column(String(1000))
    session_id: Mapped[str] = mapped_column(String(64), unique=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OAuthSettings(TenantScoped, Base):
    """The organisation's authorization-server switches (absent row: the defaults)."""

    __tablename__ = "oauth_settings"
    __table_args__ = (UniqueConstraint("organization_id"),)

    dynamic_registration: Mapped[bool] = mapped_column(default=False)
    metadata_documents: Mapped[bool] = mapped_column(default=True)

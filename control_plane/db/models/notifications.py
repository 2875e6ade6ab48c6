"""Approval requests, webhooks, their deliveries and notification counters."""

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
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime

# -- approvals, webhooks and notifications (M5) -----------------------------------------------


class ApprovalRequest(TenantScoped, Base):
    """A held call (a `require_approval` decision) waiting for an approver; `request_id` is the
    decision id the sidecar answered with as `approval_request_id`."""

    __tablename__ = "approval_requests"
    __table_args__ = (UniqueConstraint("organization_id", "request_id"),)

    request_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending|approved|denied|expired
    principal: Mapped[str] = mapped_column(String(320), index=True)
    action: Mapped[str] = mapped_column(String(64))
    resource: Mapped[str] = mapped_column(String(320))
    args_hash: Mapped[str] = mapped_column(String(64))
    reasons: Mapped[list[str]] = mapped_column(JSON, default=list)
    approver_roles: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Attributed by the control plane (services/approval_sources.py), never taken as text:
    # the requester's user id, the gateway that shipped the held decision, the body hash a
    # grant binds (`/invoke`, `/run`) and the bundle revision whose approvers apply.
    requester_user_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    gateway_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    body_hash: Mapped[str | None] = mapped_column(String(64))
    bundle_revision: Mapped[int | None] = mapped_column(BigInteger)
    decision_time: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    decided_by: Mapped[str | None] = mapped_column(String(320))
    comment: Mapped[str | None] = mapped_column(String(2000))
    # The grant's claims are kept, never the signed token: it is re-signed for its requester.
    grant_jti: Mapped[str | None] = mapped_column(String(64))
    grant_issued_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grant_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Set when a sidecar without shared Redis redeems the grant here (single use).
    grant_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Email to approvers is sent from here by the notification worker (an outbox of one).
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class Webhook(TenantScoped, Base):
    """An HTTPS endpoint subscribed to events; its signing secret is in the secret store."""

    __tablename__ = "webhooks"

    url: Mapped[str] = mapped_column(String(2048))
    events: Mapped[list[str]] = mapped_column(JSON)
    description: Mapped[str] = mapped_column(String(1000), default="")
    enabled: Mapped[bool] = mapped_column(default=True)
    secret_prefix: Mapped[str] = mapped_column(String(16))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class WebhookDelivery(TenantScoped, Base):
    """One event for one webhook: the durable outbox row and, once sent, its delivery log."""

    __tablename__ = "webhook_deliveries"

    webhook_id: Mapped[uuid.UUID] = mapped_column(
        Uuid, ForeignKey("webhooks.id", ondelete="CASCADE"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), index=True)  # pending | delivered | failed
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class NotificationCounter(TenantScoped, Base):
    """Counts toward a threshold in one window (denials of a principal, a budget's limit) and
    remembers when its event fired, so each fires once per window."""

    __tablename__ = "notification_counters"
    __table_args__ = (UniqueConstraint("organization_id", "key"),)

    key: Mapped[str] = mapped_column(String(400))
    count: Mapped[int] = mapped_column(BigInteger, default=0)
    fired_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

"""Billing with Stripe (M12): an organisation's Stripe customer and subscription, and the
Stripe webhook events already applied (idempotency by event id)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, Uuid
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class BillingAccount(TenantScoped, Base):
    """One row per organisation that started a Stripe checkout: its customer, and the
    subscription state the signed webhooks reported last."""

    __tablename__ = "billing_accounts"
    __table_args__ = (UniqueConstraint("organization_id"), UniqueConstraint("customer_id"))

    customer_id: Mapped[str] = mapped_column(String(255))
    subscription_id: Mapped[str | None] = mapped_column(String(255))
    subscription_status: Mapped[str | None] = mapped_column(String(32))
    price_id: Mapped[str | None] = mapped_column(String(255))
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # Executions over the plan already sent to Stripe as meter events, for `metered_window`.
    metered_window: Mapped[str | None] = mapped_column(String(32))
    metered_reported: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class StripeEvent(Base):
    """A Stripe webhook event applied once: its id is unique across the platform, so a
    replayed delivery (the same id) has no second effect."""

    __tablename__ = "stripe_events"
    __table_args__ = (UniqueConstraint("event_id"),)

    event_id: Mapped[str] = mapped_column(String(255))
    type: Mapped[str] = mapped_column(String(128))
    # The organisation it applied to (None: an event about no customer of ours).
    organization_id: Mapped[uuid.UUID | None] = mapped_column(
        Uuid, ForeignKey("organizations.id", ondelete="CASCADE"), index=True
    )
    outcome: Mapped[str] = mapped_column(String(200))

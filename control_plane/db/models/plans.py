"""An organisation's plan (M12): which of the catalogue's plans it is on, and an Enterprise
contract's own limits. The catalogue itself is code (`services/plans/catalogue.py`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime


class OrganizationPlan(TenantScoped, Base):
    """One row per organisation. No row reads as Free (fail closed): sign-up writes one,
    and the migration that introduced plans put every existing organisation on Enterprise
    (ADR 0007)."""

    __tablename__ = "organization_plans"
    __table_args__ = (UniqueConstraint("organization_id"),)

    plan: Mapped[str] = mapped_column(String(32))
    # Per-organisation overrides of the plan's limits (Enterprise contracts only):
    # limit name -> a whole number, or None for unlimited.
    overrides: Mapped[dict[str, int | None]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    # A downgrade (by Stripe) that left the organisation over a limit: the previous
    # effective limits hold until `grace_until`, then the plan's own (ADR 0010).
    grace_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    grace_limits: Mapped[dict[str, int | None] | None] = mapped_column(JSON)


class PlanWarning(TenantScoped, Base):
    """The executions-per-month warning at 90 % of the plan's limit: one row per organisation
    and month window (the unique key makes it fire once), also the email's outbox."""

    __tablename__ = "plan_warnings"
    __table_args__ = (UniqueConstraint("organization_id", "window"),)

    window: Mapped[str] = mapped_column(String(32))  # "month:2026-12"
    plan: Mapped[str] = mapped_column(String(32))
    used: Mapped[int] = mapped_column(BigInteger)
    limit: Mapped[int] = mapped_column(BigInteger)
    emailed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    email_attempts: Mapped[int] = mapped_column(Integer, default=0)
    email_next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

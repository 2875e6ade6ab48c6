"""An organisation's plan (M12): which of the catalogue's plans it is on, and an Enterprise
contract's own limits. The catalogue itself is code (`services/plans/catalogue.py`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, String, UniqueConstraint
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

"""The database backend of the secrets interface."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    LargeBinary,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from control_plane.db.base import Base, TenantScoped, UTCDateTime

# -- secrets (M7): the database backend of the secrets interface ------------------------------


class Secret(TenantScoped, Base):
    """One secret, envelope-encrypted: `ciphertext` under its own data key, and that data key
    wrapped by the master key named by `key_id` (rotatable without touching `ciphertext`)."""

    __tablename__ = "secrets"
    __table_args__ = (UniqueConstraint("organization_id", "name"),)

    name: Mapped[str] = mapped_column(String(300))
    ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(128), index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

"""The organisation's row lock: one writer at a time for what must be serialised per
organisation (the audit chain, bundle revisions, plan quotas and billing).

`FOR NO KEY UPDATE`, not `FOR UPDATE`. Every insert of a row that references the
organisation takes a KEY SHARE lock on its row (the foreign-key check), and FOR UPDATE
conflicts with KEY SHARE: two transactions that each inserted such a row and then asked
for the lock waited for each other until PostgreSQL ended one as a deadlock. FOR NO KEY
UPDATE conflicts with itself (appenders still queue) and not with KEY SHARE. We never
change an organisation's key, so nothing weaker is traded. SQLite has one writer at a
time and renders no lock clause.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Organization

__all__ = ["lock_organization"]


async def lock_organization(session: AsyncSession, organization_id: uuid.UUID) -> None:
    """Hold the organisation's row until the transaction ends (see the module's note)."""
    await session.execute(
        select(Organization.id)
        .where(Organization.id == organization_id)
        .with_for_update(key_share=True)
    )

"""Re-signing the published bundle after a change it carries, and telling the sidecars.

Deployments, gateways (their MCP URLs and credential bindings) and API keys live in the
organisation's signed bundle, so a change to one re-signs the current revision in the
caller's transaction (the change and the bundle that carries it commit together) and,
once committed, announces the new revision to the sidecars listening for it.
"""

from __future__ import annotations

from fastapi import Request
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.deps import Tenant, get_bundle_events, get_key_ring, get_settings
from control_plane.db.models import BundleRevision
from control_plane.services import policies


async def resign(
    request: Request, tenant: Tenant, session: AsyncSession, why: str
) -> BundleRevision | None:
    """The current revision re-signed with what `session` changed; None before any publish."""
    return await policies.refresh(
        session,
        tenant.organization_id,
        tenant.actor,
        get_key_ring(request),
        why=why,
        issuer=get_settings(request).issuer,
    )


async def announce(request: Request, row: BundleRevision | None) -> None:
    """Tell the sidecars about `row` (after its transaction committed)."""
    if row is not None:
        await get_bundle_events(request).notify(str(row.organization_id), row.revision)

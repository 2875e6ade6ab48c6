from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from control_plane import observability
from control_plane.api.deps import Limit, Tenant, requires
from control_plane.schemas.base import Page, QueryText
from control_plane.schemas.identity import AuditChainVerification, AuditEventOut
from control_plane.services import audit

router = APIRouter(prefix="/api/v1/audit-events", tags=["audit"])

Read = Annotated[Tenant, Depends(requires("audit_events", "read"))]
Verify = Annotated[Tenant, Depends(requires("audit_events", "verify"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 422: {}}


@router.get("", responses=ERRORS)
async def list_audit_events(
    tenant: Read,
    cursor: Annotated[str | None, Query(pattern=r"^\d{1,18}$")] = None,
    limit: Limit = 100,
    action: Annotated[QueryText | None, Query()] = None,
    actor_id: Annotated[QueryText | None, Query()] = None,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> Page[AuditEventOut]:
    """The organisation's admin actions in chain order (oldest first)."""
    async with tenant.session() as session:
        events = await audit.list_events(
            session,
            after_seq=int(cursor or 0),
            limit=limit,
            action=action,
            actor_id=actor_id,
            since=since,
            until=until,
        )
    items = [AuditEventOut.model_validate(e) for e in events]
    next_cursor = str(items[-1].seq) if len(items) == limit else None
    return Page(items=items, next_cursor=next_cursor)


@router.get("/verify", responses=ERRORS)
async def verify_audit_chain(tenant: Verify) -> AuditChainVerification:
    """Recompute the hash chain; names the first event that was altered or removed."""
    async with tenant.session() as session:
        report = await audit.verify_chain(session)
    observability.chain_verified("audit", report.valid)
    return AuditChainVerification.model_validate(report)

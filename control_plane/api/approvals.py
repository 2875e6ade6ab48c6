"""Approval requests: approvers decide; the requester fetches the grant."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from control_plane import observability
from control_plane.api.deps import (
    Cursor,
    DatabaseDep,
    GatewayDep,
    KeyRingDep,
    Limit,
    PrincipalDep,
    Tenant,
    client_ip,
    get_settings,
    requires,
)
from control_plane.schemas import approvals as schemas
from control_plane.schemas.base import Page
from control_plane.services import approvals
from control_plane.services.audit import Actor
from control_plane.settings import Settings
from policy.runtime.logs import request_id_var

router = APIRouter(prefix="/api/v1/approvals", tags=["approvals"])
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}
RequestId = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[\w.:-]+$")]


async def member(request: Request, principal: PrincipalDep, db: DatabaseDep) -> Tenant:
    """Any member: who may see or decide a request depends on the request itself."""
    return Tenant(principal, Actor.of(principal, client_ip(request), request_id_var.get()), db)


Member = Annotated[Tenant, Depends(member)]
ReadApprovals = Annotated[Tenant, Depends(requires("approvals", "read"))]


def _settings(request: Request) -> Settings:
    settings: Settings = get_settings(request)
    return settings


@router.get("", responses=ERRORS)
async def list_approvals(
    tenant: ReadApprovals,
    status: Annotated[Literal["pending", "approved", "denied", "expired"] | None, Query()] = None,
    cursor: Cursor = None,
    limit: Limit = 100,
) -> Page[schemas.Approval]:
    """Approval requests, oldest first (needs `approvals:read`)."""
    async with tenant.session() as session:
        rows, next_cursor = await approvals.list_requests(session, status, cursor, limit)
        items = [schemas.Approval(**approvals.view(r)) for r in rows]
    return Page(items=items, next_cursor=next_cursor)


@router.get("/{approval_id}", responses=ERRORS)
async def get_approval(
    approval_id: RequestId, tenant: Member, request: Request, keys: KeyRingDep
) -> schemas.ApprovalDetail:
    """One request. Its requester may always read it, and gets the grant once approved;
    anyone else needs `approvals:read` and never sees the grant."""
    async with tenant.session() as session:
        found = await approvals.detail(
            session, tenant.principal, tenant.actor, approval_id, keys, _settings(request).issuer
        )
        return schemas.ApprovalDetail(
            **approvals.view(found.request),
            grant=found.grant,
            grant_expires_at=found.request.grant_expires_at if found.grant else None,
        )


async def _decide(
    approval_id: str, body: schemas.Decide, tenant: Tenant, request: Request, approve: bool
) -> schemas.Approval:
    ttl = timedelta(seconds=_settings(request).approval_grant_ttl_seconds)
    async with tenant.session() as session:
        decided = await approvals.decide(
            session,
            tenant.principal,
            tenant.actor,
            approval_id,
            approve=approve,
            comment=body.comment,
            grant_ttl=ttl,
        )
        observability.approvals("approved" if approve else "denied", 1)
        return schemas.Approval(**approvals.view(decided))


@router.post("/{approval_id}/approve", responses=ERRORS)
async def approve(
    approval_id: RequestId, tenant: Member, request: Request, body: schemas.Decide | None = None
) -> schemas.Approval:
    """Approve (approvers only, never the requester); mints the requester's grant."""
    return await _decide(approval_id, body or schemas.Decide(), tenant, request, True)


@router.post("/{approval_id}/deny", responses=ERRORS)
async def deny(
    approval_id: RequestId, tenant: Member, request: Request, body: schemas.Decide | None = None
) -> schemas.Approval:
    """Deny (approvers only, never the requester)."""
    return await _decide(approval_id, body or schemas.Decide(), tenant, request, False)


@router.post("/grants/redeem", responses=ERRORS)
async def redeem_grant(
    body: schemas.GrantRedeem, identity: GatewayDep, db: DatabaseDep
) -> schemas.GrantRedeemed:
    """A sidecar without shared Redis spends a grant here (its gateway's credential): 200 the
    first time, 409 once used or expired, 403 for another gateway's grant, 404 unknown."""
    async with db.session(identity.organization_id) as session:
        request = await approvals.redeem_grant(session, identity, body.jti)
        assert request.grant_used_at is not None
        return schemas.GrantRedeemed(
            approval_request_id=request.request_id, used_at=request.grant_used_at
        )

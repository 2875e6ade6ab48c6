from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from control_plane.api.deployments import deployment_out
from control_plane.api.deps import (
    Cursor,
    DatabaseDep,
    GatewayDep,
    Limit,
    Tenant,
    requires,
)
from control_plane.api.resign import announce, resign
from control_plane.db.base import utcnow
from control_plane.db.models import Gateway
from control_plane.schemas import fleet as schemas
from control_plane.schemas.base import Page
from control_plane.schemas.workloads import GatewayWithDeployments
from control_plane.services import gateways

router = APIRouter(prefix="/api/v1/gateways", tags=["gateways"])

Read = Annotated[Tenant, Depends(requires("gateways", "read"))]
Create = Annotated[Tenant, Depends(requires("gateways", "create"))]
Update = Annotated[Tenant, Depends(requires("gateways", "update"))]
Delete = Annotated[Tenant, Depends(requires("gateways", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


def _created(gateway: Gateway, credential: str) -> schemas.GatewayCreated:
    return schemas.GatewayCreated(
        **schemas.Gateway.model_validate(gateway).model_dump(), credential=credential
    )


# -- the gateway's own view (its credential) ------------------------------------------------


@router.get("/self", responses=ERRORS)
async def whoami(identity: GatewayDep, db: DatabaseDep) -> schemas.GatewaySelf:
    """Who this credential belongs to, and the bundle scope its sidecar follows."""
    async with db.session(identity.organization_id) as session:
        gateway = await gateways.get(session, identity.gateway_id)
        return schemas.GatewaySelf(
            id=gateway.id,
            organization_id=gateway.organization_id,
            name=gateway.name,
            environment=gateway.environment,
            url=gateway.url,
            bundle_scope=str(gateway.organization_id),
        )


@router.post("/self/status", status_code=204, responses=ERRORS)
async def report_status(
    body: schemas.StatusReport, identity: GatewayDep, db: DatabaseDep
) -> Response:
    """A sidecar's (or gateway's) periodic report: bundle revision, sync, counts, backlog."""
    async with db.session(identity.organization_id) as session:
        await gateways.report_status(session, identity, body.model_dump(mode="json"))
    return Response(status_code=204)


@router.post("", status_code=201, responses={**ERRORS, 402: {}})
async def create_gateway(
    body: schemas.GatewayCreate, tenant: Create, request: Request
) -> schemas.GatewayCreated:
    """Register a gateway; `credential` (shown once) is what it and its sidecar present. The
    bundle is re-signed with the gateway's MCP URL, so its sidecar knows which OAuth
    audience is its own."""
    async with tenant.session() as session:
        gateway, credential = await gateways.create(
            session,
            tenant.organization_id,
            tenant.actor,
            name=body.name,
            environment=body.environment,
            url=body.url,
            mode=body.mode,
        )
        row = await resign(request, tenant, session, f"gateway {body.name} registered")
    await announce(request, row)
    return _created(gateway, credential)


@router.get("", responses=ERRORS)
async def list_gateways(
    tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[schemas.Gateway]:
    async with tenant.session() as session:
        rows, next_cursor = await gateways.list_gateways(session, cursor, limit)
    return Page(items=[schemas.Gateway.model_validate(g) for g in rows], next_cursor=next_cursor)


@router.get("/{gateway_id}", responses=ERRORS)
async def get_gateway(gateway_id: uuid.UUID, tenant: Read) -> GatewayWithDeployments:
    """The gateway with each reporting sidecar instance and what is deployed to it; `stale`
    flags an instance silent for a minute or serving an older bundle than the current one."""
    async with tenant.session() as session:
        found = await gateways.detail(session, gateway_id)
    gateway, revision = found.gateway, found.current_revision
    now = utcnow()
    return GatewayWithDeployments(
        **schemas.Gateway.model_validate(gateway).model_dump(),
        deployments=[deployment_out(d, gateway) for d in found.deployments],
        current_revision=revision,
        instances=[
            schemas.Instance(
                instance=r.instance,
                bundle_revision=r.bundle_revision,
                key_id=r.key_id,
                last_sync=r.last_sync,
                decisions=r.decisions,
                log_backlog=r.log_backlog,
                started_at=r.started_at,
                reported_at=r.reported_at,
                stale=gateways.is_stale(r, revision, now),
            )
            for r in found.instances
        ],
    )


@router.post("/{gateway_id}/credential", status_code=201, responses=ERRORS)
async def rotate_credential(
    gateway_id: uuid.UUID, tenant: Update, request: Request
) -> schemas.GatewayCreated:
    """Issue a new credential; the old one stops working at once (and the bundle names the
    gateway's MCP URL under the new credential's binding only)."""
    async with tenant.session() as session:
        gateway, credential = await gateways.rotate_credential(
            session, tenant.organization_id, tenant.actor, gateway_id
        )
        row = await resign(request, tenant, session, f"gateway {gateway.name} credential rotated")
    await announce(request, row)
    return _created(gateway, credential)


@router.delete("/{gateway_id}", status_code=204, responses=ERRORS)
async def delete_gateway(gateway_id: uuid.UUID, tenant: Delete, request: Request) -> Response:
    """Delete a gateway, its credential and its deployments; the bundle is re-signed without
    them (and without the gateway's MCP URL)."""
    async with tenant.session() as session:
        await gateways.delete(session, tenant.organization_id, tenant.actor, gateway_id)
        row = await resign(request, tenant, session, f"gateway {gateway_id} deleted")
    await announce(request, row)
    return Response(status_code=204)

"""`/api/v1/deployments`: put an agent or pipeline version on a gateway, through the bundle."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from control_plane.api.deps import (
    Cursor,
    Limit,
    SecretsDep,
    Tenant,
    requires,
)
from control_plane.api.resign import announce, resign
from control_plane.db.models import Deployment, Gateway
from control_plane.schemas import workloads as schemas
from control_plane.schemas.base import Page
from control_plane.services import deployments, platform_gateways, provider_hosts

router = APIRouter(prefix="/api/v1/deployments", tags=["deployments"])

Read = Annotated[Tenant, Depends(requires("deployments", "read"))]
Create = Annotated[Tenant, Depends(requires("deployments", "create"))]
Delete = Annotated[Tenant, Depends(requires("deployments", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


def deployment_out(deployment: Deployment, gateway: Gateway) -> schemas.Deployment:
    return schemas.Deployment(
        id=deployment.id,
        gateway_id=gateway.id,
        gateway_name=gateway.name,
        kind=deployment.kind,
        name=deployment.name,
        version=deployment.version,
        requires=deployment.requires or {},
        endpoints=schemas.Endpoints.model_validate(
            deployments.endpoints(_base_url(gateway), deployment.kind, deployment.name)
        ),
        created_at=deployment.created_at,
        updated_at=deployment.updated_at,
        created_by=deployment.created_by,
    )


def _base_url(gateway: Gateway) -> str:
    """Where callers reach the gateway's agents: a shared platform gateway namespaces them
    by organisation (ADR 0012)."""
    if gateway.mode == platform_gateways.PLATFORM_MODE:
        return f"{gateway.url.rstrip('/')}/o/{gateway.organization_id}"
    return gateway.url


@router.post("", status_code=201, responses={**ERRORS, 200: {"model": schemas.DeploymentCreated}})
async def deploy(
    body: schemas.DeploymentCreate,
    tenant: Create,
    request: Request,
    secret_store: SecretsDep,
    response: Response,
) -> schemas.DeploymentCreated:
    """Deploy a version (default: the latest) of an agent or pipeline to a gateway.

    The agents it references ride along at pinned versions. The published bundle is
    re-signed at once and its revision returned; `bundle_revision` is null when nothing was
    ever published (the deployment rides the first publish). Deploying another version of
    what a gateway already serves moves it (200); one version per name per organisation.
    """
    async with tenant.session() as session:
        deployment, gateway, created = await deployments.create(
            session,
            tenant.organization_id,
            tenant.actor,
            gateway_id=body.gateway_id,
            kind=body.kind,
            name=body.name,
            version=body.version,
        )
        # Provider keys only to their bound hosts; custom base_url only from admins.
        await provider_hosts.check_deployment(
            session,
            secret_store,
            tenant.principal,
            kind=deployment.kind,
            name=deployment.name,
            version=deployment.version,
            pins=deployment.requires or {},
        )
        out = deployment_out(deployment, gateway)
        row = await resign(
            request,
            tenant,
            session,
            f"{body.kind} {body.name} v{deployment.version} deployed to gateway {gateway.name}",
        )
        revision = row.revision if row is not None else None
    await announce(request, row)
    if not created:
        response.status_code = 200
    return schemas.DeploymentCreated(**out.model_dump(), bundle_revision=revision)


@router.get("", responses=ERRORS)
async def list_deployments(
    tenant: Read,
    cursor: Cursor = None,
    limit: Limit = 100,
    gateway_id: Annotated[uuid.UUID | None, Query()] = None,
    kind: Annotated[Literal["agent", "pipeline"] | None, Query()] = None,
    name: Annotated[schemas.WorkloadName | None, Query()] = None,
) -> Page[schemas.Deployment]:
    async with tenant.session() as session:
        rows, next_cursor = await deployments.list_deployments(
            session, cursor, limit, gateway_id=gateway_id, kind=kind, name=name
        )
    return Page(items=[deployment_out(d, g) for d, g in rows], next_cursor=next_cursor)


@router.get("/{deployment_id}", responses=ERRORS)
async def get_deployment(deployment_id: uuid.UUID, tenant: Read) -> schemas.Deployment:
    async with tenant.session() as session:
        deployment, gateway = await deployments.get(session, deployment_id)
        return deployment_out(deployment, gateway)


@router.delete("/{deployment_id}", status_code=204, responses=ERRORS)
async def undeploy(deployment_id: uuid.UUID, tenant: Delete, request: Request) -> Response:
    """Undeploy; the bundle revision signed at once no longer carries it for that gateway."""
    async with tenant.session() as session:
        deployment = await deployments.delete(
            session, tenant.organization_id, tenant.actor, deployment_id
        )
        row = await resign(
            request, tenant, session, f"{deployment.kind} {deployment.name} undeployed"
        )
    await announce(request, row)
    return Response(status_code=204)

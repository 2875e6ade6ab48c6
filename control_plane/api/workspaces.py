from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.schemas.base import Page
from control_plane.schemas.identity import Workspace, WorkspaceCreate, WorkspaceUpdate
from control_plane.services import workspaces

router = APIRouter(prefix="/api/v1/workspaces", tags=["workspaces"])

Read = Annotated[Tenant, Depends(requires("workspaces", "read"))]
Create = Annotated[Tenant, Depends(requires("workspaces", "create"))]
Update = Annotated[Tenant, Depends(requires("workspaces", "update"))]
Delete = Annotated[Tenant, Depends(requires("workspaces", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


@router.get("", responses=ERRORS)
async def list_workspaces(
    tenant: Read, cursor: Cursor = None, limit: Limit = 100
) -> Page[Workspace]:
    async with tenant.session() as session:
        rows, next_cursor = await workspaces.list_workspaces(session, cursor, limit)
    return Page(items=[Workspace.model_validate(r) for r in rows], next_cursor=next_cursor)


@router.post("", status_code=201, responses=ERRORS)
async def create_workspace(body: WorkspaceCreate, tenant: Create) -> Workspace:
    async with tenant.session() as session:
        row = await workspaces.create_workspace(session, tenant.organization_id, tenant.actor, body)
    return Workspace.model_validate(row)


@router.get("/{workspace_id}", responses=ERRORS)
async def get_workspace(workspace_id: uuid.UUID, tenant: Read) -> Workspace:
    async with tenant.session() as session:
        return Workspace.model_validate(await workspaces.get_workspace(session, workspace_id))


@router.patch("/{workspace_id}", responses=ERRORS)
async def update_workspace(
    workspace_id: uuid.UUID, body: WorkspaceUpdate, tenant: Update
) -> Workspace:
    async with tenant.session() as session:
        row = await workspaces.update_workspace(
            session, tenant.organization_id, tenant.actor, workspace_id, body
        )
    return Workspace.model_validate(row)


@router.delete("/{workspace_id}", status_code=204, responses=ERRORS)
async def delete_workspace(workspace_id: uuid.UUID, tenant: Delete) -> Response:
    async with tenant.session() as session:
        await workspaces.delete_workspace(
            session, tenant.organization_id, tenant.actor, workspace_id
        )
    return Response(status_code=204)

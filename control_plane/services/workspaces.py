"""Workspaces: an organisation's environments (dev, stage, prod, …); policy domains."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Workspace
from control_plane.errors import Conflict, NotFound
from control_plane.schemas import identity as schemas
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate

FIELDS = ("name", "environment", "description")


async def _workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    workspace = await session.get(Workspace, workspace_id)
    if workspace is None:
        raise NotFound("no such workspace")
    return workspace


async def _unique_name(session: AsyncSession, name: str) -> None:
    if await session.scalar(select(Workspace.id).where(Workspace.name == name)):
        raise Conflict(f"a workspace named {name!r} already exists", details=[{"field": "name"}])


async def list_workspaces(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[Workspace], str | None]:
    rows, next_cursor = await paginate(session, select(Workspace), Workspace, cursor, limit)
    return list(rows), next_cursor


async def get_workspace(session: AsyncSession, workspace_id: uuid.UUID) -> Workspace:
    return await _workspace(session, workspace_id)


async def create_workspace(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, body: schemas.WorkspaceCreate
) -> Workspace:
    await _unique_name(session, body.name)
    workspace = Workspace(id=uuid.uuid4(), **body.model_dump())
    session.add(workspace)
    await session.flush()
    await audit.record(
        session,
        org_id,
        actor,
        "workspace.create",
        "workspace",
        workspace.id,
        after=body.model_dump(),
    )
    return workspace


async def update_workspace(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    workspace_id: uuid.UUID,
    body: schemas.WorkspaceUpdate,
) -> Workspace:
    workspace = await _workspace(session, workspace_id)
    before = {f: getattr(workspace, f) for f in FIELDS}
    changes = body.model_dump(exclude_none=True)
    if changes.get("name", workspace.name) != workspace.name:
        await _unique_name(session, changes["name"])
    for name, value in changes.items():
        setattr(workspace, name, value)
    after = {f: getattr(workspace, f) for f in FIELDS}
    await audit.record(
        session,
        org_id,
        actor,
        "workspace.update",
        "workspace",
        workspace.id,
        before=before,
        after=after,
    )
    return workspace


async def delete_workspace(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, workspace_id: uuid.UUID
) -> None:
    workspace = await _workspace(session, workspace_id)
    await session.delete(workspace)
    await audit.record(
        session,
        org_id,
        actor,
        "workspace.delete",
        "workspace",
        workspace.id,
        before={"name": workspace.name},
    )

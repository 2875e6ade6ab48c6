from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from control_plane.api.deps import Cursor, Limit, Tenant, requires
from control_plane.schemas.base import Page
from control_plane.schemas.identity import Team, TeamCreate, TeamMemberAdd, TeamUpdate
from control_plane.services import teams

router = APIRouter(prefix="/api/v1/teams", tags=["teams"])

Read = Annotated[Tenant, Depends(requires("teams", "read"))]
Create = Annotated[Tenant, Depends(requires("teams", "create"))]
Update = Annotated[Tenant, Depends(requires("teams", "update"))]
Delete = Annotated[Tenant, Depends(requires("teams", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


@router.get("", responses=ERRORS)
async def list_teams(tenant: Read, cursor: Cursor = None, limit: Limit = 100) -> Page[Team]:
    async with tenant.session() as session:
        items, next_cursor = await teams.list_teams(session, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, responses=ERRORS)
async def create_team(body: TeamCreate, tenant: Create) -> Team:
    async with tenant.session() as session:
        return await teams.create_team(session, tenant.organization_id, tenant.actor, body)


@router.get("/{team_id}", responses=ERRORS)
async def get_team(team_id: uuid.UUID, tenant: Read) -> Team:
    async with tenant.session() as session:
        return await teams.get_team(session, team_id)


@router.patch("/{team_id}", responses=ERRORS)
async def update_team(team_id: uuid.UUID, body: TeamUpdate, tenant: Update) -> Team:
    async with tenant.session() as session:
        return await teams.update_team(session, tenant.organization_id, tenant.actor, team_id, body)


@router.delete("/{team_id}", status_code=204, responses=ERRORS)
async def delete_team(team_id: uuid.UUID, tenant: Delete) -> Response:
    async with tenant.session() as session:
        await teams.delete_team(session, tenant.organization_id, tenant.actor, team_id)
    return Response(status_code=204)


@router.post("/{team_id}/members", status_code=201, responses=ERRORS)
async def add_member(team_id: uuid.UUID, body: TeamMemberAdd, tenant: Update) -> Team:
    async with tenant.session() as session:
        return await teams.add_team_member(
            session, tenant.organization_id, tenant.actor, team_id, body.user_id
        )


@router.delete("/{team_id}/members/{user_id}", status_code=204, responses=ERRORS)
async def remove_member(team_id: uuid.UUID, user_id: uuid.UUID, tenant: Update) -> Response:
    async with tenant.session() as session:
        await teams.remove_team_member(
            session, tenant.organization_id, tenant.actor, team_id, user_id
        )
    return Response(status_code=204)

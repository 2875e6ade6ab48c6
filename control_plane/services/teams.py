"""Teams: named groups of members, used as policy subjects (`team:<name>`)."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Membership, Team, TeamMember
from control_plane.errors import Conflict, NotFound
from control_plane.schemas import identity as schemas
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.pagination import paginate


async def _team(session: AsyncSession, team_id: uuid.UUID) -> Team:
    team = await session.get(Team, team_id)
    if team is None:
        raise NotFound("no such team")
    return team


async def _out(session: AsyncSession, team: Team) -> schemas.Team:
    members = await session.scalars(select(TeamMember.user_id).where(TeamMember.team_id == team.id))
    out = schemas.Team.model_validate(team)
    out.member_ids = sorted(members)
    return out


async def _unique_name(session: AsyncSession, name: str) -> None:
    if await session.scalar(select(Team.id).where(Team.name == name)):
        raise Conflict(f"a team named {name!r} already exists", details=[{"field": "name"}])


async def list_teams(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[schemas.Team], str | None]:
    teams, next_cursor = await paginate(session, select(Team), Team, cursor, limit)
    return [await _out(session, t) for t in teams], next_cursor


async def get_team(session: AsyncSession, team_id: uuid.UUID) -> schemas.Team:
    return await _out(session, await _team(session, team_id))


async def create_team(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, body: schemas.TeamCreate
) -> schemas.Team:
    await _unique_name(session, body.name)
    team = Team(id=uuid.uuid4(), name=body.name, description=body.description)
    session.add(team)
    await session.flush()
    await audit.record(
        session, org_id, actor, "team.create", "team", team.id, after=body.model_dump()
    )
    return await _out(session, team)


async def update_team(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    team_id: uuid.UUID,
    body: schemas.TeamUpdate,
) -> schemas.Team:
    team = await _team(session, team_id)
    before = {"name": team.name, "description": team.description}
    if body.name is not None and body.name != team.name:
        await _unique_name(session, body.name)
        team.name = body.name
    if body.description is not None:
        team.description = body.description
    after = {"name": team.name, "description": team.description}
    await audit.record(
        session, org_id, actor, "team.update", "team", team.id, before=before, after=after
    )
    return await _out(session, team)


async def delete_team(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, team_id: uuid.UUID
) -> None:
    team = await _team(session, team_id)
    await session.delete(team)
    await audit.record(
        session, org_id, actor, "team.delete", "team", team.id, before={"name": team.name}
    )


async def add_team_member(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, team_id: uuid.UUID, user_id: uuid.UUID
) -> schemas.Team:
    team = await _team(session, team_id)
    if not await session.scalar(select(Membership.id).where(Membership.user_id == user_id)):
        raise NotFound("no such user in this organisation", details=[{"field": "user_id"}])
    exists = await session.scalar(
        select(TeamMember.id).where(TeamMember.team_id == team.id, TeamMember.user_id == user_id)
    )
    if exists:
        raise Conflict("already a member of this team", details=[{"field": "user_id"}])
    session.add(TeamMember(team_id=team.id, user_id=user_id))
    await session.flush()
    await audit.record(
        session, org_id, actor, "team.member.add", "team", team.id, user_id=str(user_id)
    )
    return await _out(session, team)


async def remove_team_member(
    session: AsyncSession, org_id: uuid.UUID, actor: Actor, team_id: uuid.UUID, user_id: uuid.UUID
) -> None:
    team = await _team(session, team_id)
    row = await session.scalar(
        select(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == user_id)
    )
    if row is None:
        raise NotFound("that user is not in this team")
    await session.delete(row)
    await audit.record(
        session, org_id, actor, "team.member.remove", "team", team.id, user_id=str(user_id)
    )

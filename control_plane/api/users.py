from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.api.deps import AuthenticatorDep, Cursor, Limit, Tenant, get_kv, requires
from control_plane.schemas.base import Page
from control_plane.schemas.identity import Member, UserCreate, UserUpdate
from control_plane.services import members, sessions
from control_plane.services.auth import Authenticator

router = APIRouter(prefix="/api/v1/users", tags=["users"])

Read = Annotated[Tenant, Depends(requires("users", "read"))]
Create = Annotated[Tenant, Depends(requires("users", "create"))]
Update = Annotated[Tenant, Depends(requires("users", "update"))]
Delete = Annotated[Tenant, Depends(requires("users", "delete"))]
ERRORS: dict[int | str, dict[str, object]] = {401: {}, 403: {}, 404: {}, 409: {}, 422: {}}


@router.get("", responses=ERRORS)
async def list_users(tenant: Read, cursor: Cursor = None, limit: Limit = 100) -> Page[Member]:
    async with tenant.session() as session:
        items, next_cursor = await members.list_members(session, cursor, limit)
    return Page(items=items, next_cursor=next_cursor)


@router.post("", status_code=201, responses={**ERRORS, 402: {}})
async def create_user(body: UserCreate, tenant: Create) -> Member:
    """Add a member: a new user with a password, or an existing user by email."""
    async with tenant.session() as session:
        return await members.add_member(session, tenant.principal, tenant.actor, body)


@router.get("/{user_id}", responses=ERRORS)
async def get_user(user_id: uuid.UUID, tenant: Read) -> Member:
    async with tenant.session() as session:
        return await members.get_member(session, user_id)


def _ender(request: Request, auth: Authenticator) -> members.SessionEnder:
    async def end(session: AsyncSession, user_ids: list[uuid.UUID]) -> int:
        return await sessions.revoke_members(session, get_kv(request), auth, user_ids)

    return end


@router.patch("/{user_id}", responses=ERRORS)
async def update_user(
    user_id: uuid.UUID, body: UserUpdate, tenant: Update, request: Request, auth: AuthenticatorDep
) -> Member:
    """Change a member. A demotion ends their sessions in this organisation: the sidecars
    refuse their tokens within about a second (revoked sessions ride the bundle)."""
    async with tenant.session() as session:
        return await members.update_member(
            session, tenant.principal, tenant.actor, user_id, body, ended=_ender(request, auth)
        )


@router.delete("/{user_id}", status_code=204, responses=ERRORS)
async def remove_user(
    user_id: uuid.UUID, tenant: Delete, request: Request, auth: AuthenticatorDep
) -> Response:
    """Remove the user from this organisation (their account stays; their sessions here end)."""
    async with tenant.session() as session:
        await members.remove_member(
            session, tenant.principal, tenant.actor, user_id, ended=_ender(request, auth)
        )
    return Response(status_code=204)

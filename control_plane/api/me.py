from __future__ import annotations

from fastapi import APIRouter

from control_plane.api.deps import DatabaseDep, PrincipalDep
from control_plane.schemas.identity import Me
from control_plane.services import identity

router = APIRouter(prefix="/api/v1", tags=["identity"])


@router.get("/me", responses={401: {}})
async def me(principal: PrincipalDep, db: DatabaseDep) -> Me:
    """Who you are, the organisation you act for, and what you may do there."""
    return await identity.me(db, principal)

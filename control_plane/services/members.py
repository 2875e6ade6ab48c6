"""Members of an organisation: admin-created users and their organisation roles."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Membership, TeamMember, User
from control_plane.errors import Conflict, Forbidden, Invalid, NotFound
from control_plane.schemas.identity import Member, UserCreate, UserUpdate
from control_plane.services import audit, passwords, roles
from control_plane.services.audit import Actor
from control_plane.services.identity import normalize_email
from control_plane.services.pagination import paginate
from control_plane.services.plans import quotas
from control_plane.services.principal import Principal

# Ends the given members' sessions in the session's organisation; how many ended
# (sessions.revoke_members with the key-value store and authenticator bound).
SessionEnder = Callable[[AsyncSession, list[uuid.UUID]], Awaitable[int]]


def _member(membership: Membership, user: User) -> Member:
    return Member(
        id=user.id,
        email=user.email,
        display_name=user.display_name,
        role=membership.role,
        joined_at=membership.created_at,
    )


async def _get(session: AsyncSession, user_id: uuid.UUID) -> tuple[Membership, User]:
    membership = await session.scalar(select(Membership).where(Membership.user_id == user_id))
    if membership is None:
        raise NotFound("no such user in this organisation")
    user = await session.get(User, user_id)
    assert user is not None
    return membership, user


def _check_grant(principal: Principal, role: str) -> None:
    if role == "owner" and not principal.can("users", "grant_owner"):
        raise Forbidden("only an owner can make someone an owner")


async def list_members(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[Member], str | None]:
    memberships, next_cursor = await paginate(
        session, select(Membership), Membership, cursor, limit
    )
    users = {
        u.id: u
        for u in await session.scalars(
            select(User).where(User.id.in_([m.user_id for m in memberships]))
        )
    }
    return [_member(m, users[m.user_id]) for m in memberships], next_cursor


async def get_member(session: AsyncSession, user_id: uuid.UUID) -> Member:
    return _member(*await _get(session, user_id))


async def add_member(
    session: AsyncSession, principal: Principal, actor: Actor, body: UserCreate
) -> Member:
    _check_grant(principal, body.role)
    email = normalize_email(body.email)
    user = await session.scalar(select(User).where(User.email == email))
    password_hash = None
    if user is None:
        if body.password is None:
            raise Invalid(
                "a password is required for a new user",
                details=[{"field": "password", "message": "required for a new user"}],
            )
        passwords.check_strength(body.password, email=email)
        password_hash = passwords.hash_password(body.password)
    elif body.password is not None:
        raise Conflict(
            "this email already has an account; omit the password to add it as a member",
            details=[{"field": "email"}],
        )
    elif await session.scalar(select(Membership.id).where(Membership.user_id == user.id)):
        raise Conflict("already a member of this organisation", details=[{"field": "email"}])
    # The plan's user limit, checked (and the organisation locked) before the first write.
    await quotas.ensure_room(session, principal.organization_id, "users")
    if user is None:
        user = User(
            id=uuid.uuid4(),
            email=email,
            password_hash=password_hash,
            display_name=body.display_name,
        )
        session.add(user)
        await session.flush()
    membership = Membership(user_id=user.id, role=body.role)
    session.add(membership)
    await session.flush()
    await audit.record(
        session,
        principal.organization_id,
        actor,
        "user.add",
        "user",
        user.id,
        after={"email": email, "role": body.role},
    )
    return _member(membership, user)


async def _owner_count(session: AsyncSession) -> int:
    return int(
        await session.scalar(select(func.count(Membership.id)).where(Membership.role == "owner"))
        or 0
    )


async def update_member(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    user_id: uuid.UUID,
    body: UserUpdate,
    *,
    ended: SessionEnder,
) -> Member:
    """Change a member; a demotion also ends their sessions here (`ended`), because their
    access tokens carry the old role to the sidecars until they expire."""
    membership, user = await _get(session, user_id)
    before = {"role": membership.role, "display_name": user.display_name}
    demoted = False
    if body.role is not None and body.role != membership.role:
        _check_grant(principal, body.role)
        if membership.role == "owner":
            _check_grant(principal, "owner")
            if await _owner_count(session) == 1:
                raise Conflict("an organisation needs at least one owner")
        demoted = not roles.role_within(membership.role, body.role)
        membership.role = body.role
    if body.display_name is not None:
        if user.id != principal.id:
            raise Forbidden("only the user can change their display name")
        user.display_name = body.display_name
    after = {"role": membership.role, "display_name": user.display_name}
    sessions_ended = await ended(session, [user.id]) if demoted else 0
    await audit.record(
        session,
        principal.organization_id,
        actor,
        "user.update",
        "user",
        user.id,
        before=before,
        after=after,
        **({"sessions_ended": sessions_ended} if demoted else {}),
    )
    return _member(membership, user)


async def remove_member(
    session: AsyncSession,
    principal: Principal,
    actor: Actor,
    user_id: uuid.UUID,
    *,
    ended: SessionEnder,
) -> None:
    """Remove a member and end their sessions here (their tokens would otherwise keep
    working at the sidecars until they expire)."""
    membership, user = await _get(session, user_id)
    if membership.role == "owner":
        _check_grant(principal, "owner")
        if await _owner_count(session) == 1:
            raise Conflict("an organisation needs at least one owner")
    await session.delete(membership)
    await session.execute(delete(TeamMember).where(TeamMember.user_id == user.id))
    await ended(session, [user.id])
    await audit.record(
        session,
        principal.organization_id,
        actor,
        "user.remove",
        "user",
        user.id,
        before={"email": user.email, "role": membership.role},
    )

"""Sign-up, log-in and who-am-I: the flows that create or prove an identity."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Membership, Organization, OrganizationPlan, User
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Unauthenticated
from control_plane.schemas.identity import LoginRequest, Me, OrganizationRef, SignupRequest
from control_plane.services import audit, passwords, platform_gateways, roles
from control_plane.services.audit import Actor
from control_plane.services.plans import catalogue
from control_plane.services.principal import Principal


async def email_of(session: AsyncSession, user_id: uuid.UUID) -> str | None:
    """The user's address, or None when the account no longer exists."""
    email: str | None = await session.scalar(select(User.email).where(User.id == user_id))
    return email


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def signup(
    db: Database,
    body: SignupRequest,
    source_ip: str | None,
    request_id: str | None,
    *,
    plan: str = "free",
) -> tuple[uuid.UUID, uuid.UUID]:
    """Create an organisation on `plan` and its owner; returns (user id, organisation id)."""
    email = normalize_email(body.email)
    passwords.check_strength(body.password, email=email)
    password_hash = passwords.hash_password(body.password)
    async with db.session(SYSTEM) as session:
        if await session.scalar(select(User.id).where(User.email == email)):
            raise Conflict(
                "an account with this email already exists; log in instead",
                details=[{"field": "email"}],
            )
        org = Organization(id=uuid.uuid4(), name=body.organization)
        user = User(id=uuid.uuid4(), email=email, password_hash=password_hash)
        session.add_all([org, user])
        await session.flush()
        session.add(Membership(organization_id=org.id, user_id=user.id, role="owner"))
        session.add(
            OrganizationPlan(organization_id=org.id, plan=plan, overrides={}, updated_at=utcnow())
        )
        actor = Actor("user", str(user.id), email, source_ip, request_id)
        await audit.record(
            session,
            org.id,
            actor,
            "organization.create",
            "organization",
            org.id,
            name=org.name,
            plan=plan,
        )
        await platform_gateways.place_new(session, org.id, catalogue.plan_named(plan), actor)
    return user.id, org.id


async def login(db: Database, body: LoginRequest) -> tuple[uuid.UUID, uuid.UUID]:
    """Check the password; returns (user id, organisation id to act for)."""
    email = normalize_email(body.email)
    async with db.session(SYSTEM) as session:
        user = await session.scalar(select(User).where(User.email == email))
        valid = passwords.verify_password(user.password_hash if user else None, body.password)
        if user is None or not valid or not user.is_active:
            raise Unauthenticated("wrong email or password")
        query = select(Membership.organization_id).where(Membership.user_id == user.id)
        if body.organization_id:
            query = query.where(Membership.organization_id == body.organization_id)
        org_id = await session.scalar(query.order_by(Membership.created_at).limit(1))
    if org_id is None:
        raise Unauthenticated("you are not a member of that organisation")
    return user.id, org_id


async def me(db: Database, principal: Principal) -> Me:
    async with db.session(SYSTEM) as session:
        org = await session.get(Organization, principal.organization_id)
        memberships = []
        if principal.kind == "user":
            rows = await session.execute(
                select(Organization.id, Organization.name, Membership.role)
                .join(Membership, Membership.organization_id == Organization.id)
                .where(Membership.user_id == principal.id)
                .order_by(Membership.created_at)
            )
            memberships = [OrganizationRef(id=r.id, name=r.name, role=r.role) for r in rows]
    assert org is not None
    permissions = sorted(
        f"{resource.removesuffix(':*')}:{action}"
        for resource, action in roles.role_permissions()[principal.role]
        if principal.can(resource.removesuffix(":*"), action)
    )
    return Me(
        kind=principal.kind,
        id=principal.id,
        label=principal.label,
        organization_id=org.id,
        organization_name=org.name,
        role=principal.role,
        scopes=list(principal.scopes),
        permissions=permissions,
        organizations=memberships,
    )

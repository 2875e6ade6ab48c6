"""Single sign-on's account side: whom a login may sign in, link or provision.

A provider signs in only addresses of domains its organisation verified by DNS. A login
resolves to an account through the provider's link for the IdP subject, else by email; an
existing account is attached only with proof — its own password (the link flow), or being a
member of this provider's organisation alone — and a member of another organisation is
never signed in, linked or changed without that password. Just-in-time provisioning needs
a group mapping that names a role; there is no default role.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import delete, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.models import Membership, SsoLink, SsoProvider, Team, TeamMember, User
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Forbidden, Unauthenticated
from control_plane.services import audit, passwords, roles
from control_plane.services import domains as org_domains
from control_plane.services.audit import Actor
from control_plane.services.identity import normalize_email
from control_plane.services.plans import quotas
from control_plane.services.sso.identity import ExternalIdentity
from control_plane.services.sso.providers import provider_domains


async def check_account_password(db: Database, user_id: uuid.UUID, password: str) -> None:
    """The proof the link flow asks for: the account's own password."""
    async with db.session(SYSTEM) as session:
        user = await session.get(User, user_id)
    valid = passwords.verify_password(user.password_hash if user else None, password)
    if user is None or not valid or not user.is_active:
        raise Unauthenticated(
            "wrong password for the account being linked",
            details=[{"field": "password", "message": "wrong password"}],
        )


_PRIVILEGE = {role: rank for rank, role in enumerate(reversed(roles.ROLES))}


class SsoLinkRequired(Forbidden):
    """The address has a Kaizen account this provider has no proven link to."""

    code = "sso_link_required"

    def __init__(self, message: str, *, user_id: uuid.UUID, can_link: bool):
        super().__init__(message)
        self.user_id = user_id
        self.can_link = can_link


def maps_roles(provider: SsoProvider) -> bool:
    """Whether the provider's configuration names any role (JIT provisioning is on)."""
    return any(m.get("role") for m in provider.group_mapping)


def mapped_access(
    provider: SsoProvider, groups: Sequence[str]
) -> tuple[str | None, set[str], set[str]]:
    """(role, teams to be in, teams the mapping manages) for these IdP groups; no default."""
    have = set(groups)
    matched = [m for m in provider.group_mapping if m["group"] in have]
    granted = [m["role"] for m in matched if m.get("role")]
    role = max(granted, key=_PRIVILEGE.__getitem__) if granted else None
    wanted = {t for m in matched for t in m.get("teams", [])}
    managed = {t for m in provider.group_mapping for t in m.get("teams", [])}
    return role, wanted, managed


async def check_email_domain(session: AsyncSession, provider: SsoProvider, email: str) -> None:
    """Only addresses of domains this organisation verified by DNS (none ⇒ nobody)."""
    domain = email.rpartition("@")[2]
    allowed = await org_domains.verified(session)
    routed = await provider_domains(session, provider.id)
    if domain not in allowed or (routed and domain not in routed):
        raise Forbidden(
            f"{provider.name} may not sign in addresses of {domain}: the domain is not "
            "verified by this organisation (POST /api/v1/domains)"
            if domain not in allowed
            else f"{provider.name} may not sign in addresses of {domain}",
            details=[{"field": "email", "message": f"{domain} is not this provider's"}],
        )


async def memberships_elsewhere(
    db: Database, provider: SsoProvider, identity: ExternalIdentity
) -> dict[uuid.UUID, int]:
    """For the accounts this login could resolve to (linked subject, same email): how many
    other organisations each belongs to. A SYSTEM read across tenants, made before the
    provisioning transaction opens (SQLite has one writer)."""
    email = normalize_email(identity.email)
    async with db.session(SYSTEM) as session:
        linked = select(SsoLink.user_id).where(
            SsoLink.provider_id == provider.id, SsoLink.subject == identity.subject
        )
        by_email = select(User.id).where(User.email == email)
        rows = await session.execute(
            select(Membership.user_id, func.count(Membership.id))
            .where(
                Membership.user_id.in_(linked.union(by_email).scalar_subquery()),
                Membership.organization_id != provider.organization_id,
            )
            .group_by(Membership.user_id)
        )
        return {user_id: int(count) for user_id, count in rows}


def _without_proof(provider: SsoProvider, user: User, elsewhere: int) -> SsoLinkRequired:
    can_link = user.password_hash is not None
    how = (
        "; to link it, prove it is yours: POST /api/v1/auth/sso/link with the link_code "
        "and the account's password"
        if can_link
        else ""
    )
    if elsewhere:
        reason = "is a member of another organisation"
        verb = "may not sign it in, link it or change it"
    else:
        reason = "is not linked to this provider"
        verb = "may not attach it without proof"
    return SsoLinkRequired(
        f"{user.email} already has a Kaizen account that {reason}; {provider.name} {verb}{how}",
        user_id=user.id,
        can_link=can_link,
    )


async def _account_for_link(
    session: AsyncSession,
    provider: SsoProvider,
    link: SsoLink,
    elsewhere: Mapping[uuid.UUID, int],
    proven: bool,
) -> User | None:
    """The linked account. A link made without the account's password holds only while the
    account belongs to no other organisation."""
    user = await session.get(User, link.user_id)
    if user is None or link.proof == "password" or proven:
        return user
    if count := elsewhere.get(user.id, 0):
        raise _without_proof(provider, user, count)
    return user


async def _check_existing_account(
    session: AsyncSession,
    elsewhere: Mapping[uuid.UUID, int],
    provider: SsoProvider,
    user: User,
    subject: str,
    proven: bool,
) -> None:
    """Refuse to attach an account this provider has no proof for — proof is the account's
    password (`proven`) or this being the account's own organisation's IdP."""
    other_subject = await session.scalar(
        select(SsoLink.subject).where(
            SsoLink.provider_id == provider.id, SsoLink.user_id == user.id
        )
    )
    if other_subject is not None and other_subject != subject:
        raise Forbidden(
            f"{user.email} is linked to another identity at {provider.name}; refused",
            details=[{"field": "sub", "message": "a different subject is linked"}],
        )
    if proven:
        return
    mine = await session.scalar(select(Membership.id).where(Membership.user_id == user.id))
    count = elsewhere.get(user.id, 0)
    if mine is None or count:
        raise _without_proof(provider, user, count)
    # A member of this organisation alone: its IdP is the account's own.


async def provision(
    session: AsyncSession,
    provider: SsoProvider,
    identity: ExternalIdentity,
    actor: Actor,
    elsewhere: Mapping[uuid.UUID, int],
    *,
    proven_user: uuid.UUID | None = None,
) -> uuid.UUID:
    """Sign in (and create or update) the member the IdP vouched for; returns the user id.

    `elsewhere` is `memberships_elsewhere` for this login. Every refusal is raised before
    the first write. `proven_user` is an account whose password the caller has just checked
    (the link flow). Audited."""
    org_id = provider.organization_id
    email = normalize_email(identity.email)
    await check_email_domain(session, provider, email)
    link = await session.scalar(
        select(SsoLink).where(
            SsoLink.provider_id == provider.id, SsoLink.subject == identity.subject
        )
    )
    if link is not None:
        user = await _account_for_link(
            session, provider, link, elsewhere, link.user_id == proven_user
        )
    else:
        user = await session.scalar(select(User).where(User.email == email))
        if user is not None:
            await _check_existing_account(
                session, elsewhere, provider, user, identity.subject, user.id == proven_user
            )
    if user is not None and not user.is_active:
        raise Unauthenticated("this account is disabled")
    role, wanted_teams, managed_teams = mapped_access(provider, identity.groups)
    membership = None
    if user is not None:
        membership = await session.scalar(select(Membership).where(Membership.user_id == user.id))
    if role is None and (membership is None or maps_roles(provider)):
        if not maps_roles(provider):
            raise Forbidden(
                f"just-in-time provisioning is off for {provider.name}: its group mapping "
                "names no role, so it signs in existing members only"
            )
        raise Forbidden("none of your identity provider groups grants a role in this organisation")
    if membership is None:
        # A new member (just-in-time): the plan's user limit, before the first write.
        await quotas.ensure_room(session, org_id, "users")
    if user is None:
        user = User(id=uuid.uuid4(), email=email, display_name=identity.display_name)
        session.add(user)
        await session.flush()
    proof = "password" if user.id == proven_user else "organisation"
    if link is not None and proof == "password" and link.proof != "password":
        link.proof = proof
    if link is None:
        link = SsoLink(
            provider_id=provider.id, subject=identity.subject, user_id=user.id, proof=proof
        )
        session.add(link)
        await session.flush()
        await audit.record(
            session,
            org_id,
            actor,
            "sso.link",
            "user",
            user.id,
            provider=provider.name,
            subject=identity.subject[:200],
            proof=proof,
        )
    if membership is None:
        assert role is not None  # refused above otherwise
        membership = Membership(user_id=user.id, role=role)
        session.add(membership)
        await session.flush()
        await audit.record(
            session,
            org_id,
            actor,
            "sso.user.create",
            "user",
            user.id,
            after={
                "email": email,
                "role": role,
                "provider": provider.name,
                "groups": list(identity.groups)[:50],
            },
        )
    elif role is not None and membership.role != role and membership.role != "owner":
        # Owners are made and unmade in Kaizen only; every other role follows the IdP.
        before = membership.role
        membership.role = role
        await audit.record(
            session,
            org_id,
            actor,
            "sso.role.change",
            "user",
            user.id,
            before={"role": before},
            after={"role": role},
            provider=provider.name,
        )
    await _sync_teams(session, org_id, actor, user.id, wanted_teams, managed_teams)
    await audit.record(
        session,
        org_id,
        actor,
        "sso.login",
        "user",
        user.id,
        email=email,
        provider=provider.name,
        protocol=provider.type,
        groups=list(identity.groups)[:50],
    )
    return user.id


async def _sync_teams(
    session: AsyncSession,
    org_id: uuid.UUID,
    actor: Actor,
    user_id: uuid.UUID,
    wanted: set[str],
    managed: set[str],
) -> None:
    """Teams named by the mapping follow the IdP groups; other teams are left alone."""
    if not managed:
        return
    teams = {t.name: t for t in await session.scalars(select(Team).where(Team.name.in_(managed)))}
    for name in sorted(wanted - teams.keys()):
        team = Team(id=uuid.uuid4(), name=name, description="created by SSO group mapping")
        session.add(team)
        await session.flush()
        teams[name] = team
        await audit.record(session, org_id, actor, "team.create", "team", team.id, name=name)
    current = set(
        await session.scalars(
            select(TeamMember.team_id).where(
                TeamMember.user_id == user_id,
                TeamMember.team_id.in_([t.id for t in teams.values()]),
            )
        )
    )
    for name, team in sorted(teams.items()):
        if name in wanted and team.id not in current:
            session.add(TeamMember(team_id=team.id, user_id=user_id))
            await audit.record(
                session, org_id, actor, "sso.team.add", "team", team.id, user_id=str(user_id)
            )
        elif name not in wanted and team.id in current:
            await session.execute(
                delete(TeamMember).where(
                    TeamMember.team_id == team.id, TeamMember.user_id == user_id
                )
            )
            await audit.record(
                session, org_id, actor, "sso.team.remove", "team", team.id, user_id=str(user_id)
            )
    await session.flush()

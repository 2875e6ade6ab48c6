"""Consent records: what a user approved for which client at which gateway, and their end.

A grant's tokens carry its `sid`; revoking the grant (its user, or an administrator
blocking the client) ends the refresh tokens at once and the access tokens at the sidecars
through the revoked-session list the bundle carries (services/revocations.py). Every grant,
revocation and block is in the audit chain.
"""

from __future__ import annotations

import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Gateway, OAuthClient, OAuthGrant, User
from control_plane.errors import NotFound
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.oauth import mcp_resource


async def gateway_for_resource(session: AsyncSession, resource: str) -> Gateway | None:
    """The organisation's gateway whose MCP resource URL is exactly `resource`."""
    for gateway in await session.scalars(select(Gateway)):
        if mcp_resource(gateway.url) == resource:
            return gateway
    return None


async def create(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    client_ref: uuid.UUID,
    user_id: uuid.UUID,
    gateway: Gateway,
    scope: str,
) -> OAuthGrant:
    grant = OAuthGrant(
        organization_id=organization_id,
        client_ref=client_ref,
        user_id=user_id,
        gateway_id=gateway.id,
        resource=mcp_resource(gateway.url),
        scope=scope,
        session_id="oauth-" + secrets.token_urlsafe(16),
    )
    session.add(grant)
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "oauth_grant.created",
        "oauth_grant",
        grant.id,
        client=str(client_ref),
        gateway=gateway.name,
        scope=scope,
    )
    return grant


async def active(session: AsyncSession, grant_id: uuid.UUID) -> OAuthGrant | None:
    """The grant when it and its client still stand."""
    row = (
        await session.execute(
            select(OAuthGrant, OAuthClient.blocked_at)
            .join(OAuthClient, OAuthClient.id == OAuthGrant.client_ref)
            .where(OAuthGrant.id == grant_id)
        )
    ).first()
    if row is None or row[0].revoked_at is not None or row[1] is not None:
        return None
    grant: OAuthGrant = row[0]
    grant.last_used_at = utcnow()
    return grant


async def for_user(
    session: AsyncSession, user_id: uuid.UUID | None
) -> Sequence[tuple[OAuthGrant, OAuthClient, Gateway, str]]:
    """Live grants (a user's, or all the organisation's) with client, gateway and user email."""
    query = (
        select(OAuthGrant, OAuthClient, Gateway, User.email)
        .join(OAuthClient, OAuthClient.id == OAuthGrant.client_ref)
        .join(Gateway, Gateway.id == OAuthGrant.gateway_id)
        .join(User, User.id == OAuthGrant.user_id)
        .where(OAuthGrant.revoked_at.is_(None))
        .order_by(OAuthGrant.created_at.desc())
    )
    if user_id is not None:
        query = query.where(OAuthGrant.user_id == user_id)
    return [(r[0], r[1], r[2], r[3]) for r in (await session.execute(query)).all()]


async def revoke(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    grant_id: uuid.UUID,
    *,
    user_id: uuid.UUID | None,
    why: str,
) -> str:
    """Revoke one grant (only the user's own when `user_id` is given); its session id."""
    grant = await session.get(OAuthGrant, grant_id)
    if grant is None or grant.revoked_at is not None or (user_id and grant.user_id != user_id):
        raise NotFound(f"no active OAuth grant {grant_id}")
    grant.revoked_at = utcnow()
    await audit.record(
        session, organization_id, actor, "oauth_grant.revoked", "oauth_grant", grant.id, why=why
    )
    return grant.session_id


async def clients(session: AsyncSession) -> Sequence[OAuthClient]:
    return list(await session.scalars(select(OAuthClient).order_by(OAuthClient.created_at)))


@dataclass(frozen=True)
class OrganizationClients:
    """Every MCP client the organisation knows and every live grant (as `for_user` lists)."""

    clients: Sequence[OAuthClient]
    grants: Sequence[tuple[OAuthGrant, OAuthClient, Gateway, str]]


async def organization_clients(session: AsyncSession) -> OrganizationClients:
    return OrganizationClients(await clients(session), await for_user(session, None))


async def block(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    client_ref: uuid.UUID,
    *,
    blocked: bool,
) -> tuple[OAuthClient, list[str]]:
    """Block (or unblock) a client; blocking revokes its grants. The ended session ids."""
    client = await session.get(OAuthClient, client_ref)
    if client is None:
        raise NotFound(f"no OAuth client {client_ref}")
    ended: list[str] = []
    if blocked and client.blocked_at is None:
        client.blocked_at = utcnow()
        for grant in await session.scalars(
            select(OAuthGrant).where(
                OAuthGrant.client_ref == client.id, OAuthGrant.revoked_at.is_(None)
            )
        ):
            grant.revoked_at = client.blocked_at
            ended.append(grant.session_id)
    elif not blocked:
        client.blocked_at = None
    await audit.record(
        session,
        organization_id,
        actor,
        "oauth_client.blocked" if blocked else "oauth_client.unblocked",
        "oauth_client",
        client.id,
        client_id=client.client_id,
        grants_revoked=len(ended),
    )
    return client, ended

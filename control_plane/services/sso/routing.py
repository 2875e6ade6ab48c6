"""Which provider a login goes to: the one a public login route names, or the one that routes
an email address's domain (verified by its organisation)."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from control_plane.db.models import OrganizationDomain, SsoDomain, SsoProvider
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import NotFound
from control_plane.services.identity import normalize_email


async def provider_for_login(db: Database, provider_id: uuid.UUID, kind: str) -> SsoProvider:
    """The enabled provider a public login route names (its id is the tenant's locator)."""
    async with db.session(SYSTEM) as session:
        provider = await session.get(SsoProvider, provider_id)
    if provider is None or provider.type != kind or not provider.enabled:
        raise NotFound(f"no such {kind.upper()} provider")
    return provider


async def provider_by_id(db: Database, provider_id: uuid.UUID) -> SsoProvider:
    async with db.session(SYSTEM) as session:
        provider = await session.get(SsoProvider, provider_id)
    if provider is None or not provider.enabled:
        raise NotFound("no such SSO provider")
    return provider


async def discover(db: Database, email: str) -> SsoProvider:
    """Email-domain routing: the enabled provider of the organisation that owns the domain."""
    domain = normalize_email(email).rpartition("@")[2]
    async with db.session(SYSTEM) as session:
        provider = await session.scalar(
            select(SsoProvider)
            .join(SsoDomain, SsoDomain.provider_id == SsoProvider.id)
            .join(
                OrganizationDomain,
                (OrganizationDomain.domain == SsoDomain.domain)
                & (OrganizationDomain.organization_id == SsoProvider.organization_id),
            )
            .where(
                SsoDomain.domain == domain,
                SsoProvider.enabled.is_(True),
                OrganizationDomain.verified_at.is_not(None),
            )
        )
    if provider is None:
        raise NotFound("no single sign-on is configured for this email domain")
    return provider

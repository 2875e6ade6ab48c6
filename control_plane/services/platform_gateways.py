"""Shared platform gateways (ADR 0012): the operator's gateway, its `kgp_…` credential,
the organisations placed on it and the manifest its sidecars follow.

A platform credential is not any organisation's: it reads the bundles of the
organisations placed on its gateway and files their decision records, nothing else. Which
organisations those are is the control plane's placement, never the gateway's word.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import Gateway, Organization, PlatformGateway, PlatformPlacement
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import (
    Conflict,
    Forbidden,
    Invalid,
    NotFound,
    QuotaExceeded,
    Unauthenticated,
)
from control_plane.services import audit
from control_plane.services.audit import Actor
from control_plane.services.auth import sha256_hex
from control_plane.services.bundle_events import newest_revision
from control_plane.services.plans.catalogue import Plan

CREDENTIAL_PREFIX = "kgp_"


@dataclass(frozen=True)
class PlatformIdentity:
    """A platform gateway (or its sidecar) authenticated by its credential."""

    gateway_id: uuid.UUID
    name: str


def is_platform_credential(token: str) -> bool:
    return token.startswith(CREDENTIAL_PREFIX)


async def create(session: AsyncSession, *, name: str, url: str) -> tuple[PlatformGateway, str]:
    """Register a platform gateway (the operator's act; a SYSTEM session)."""
    name, url = name.strip(), url.strip()
    if not name or len(name) > 100:
        raise Invalid("name: 1 to 100 characters", details=[{"field": "name"}])
    if not url.startswith(("https://", "http://")) or len(url) > 2048:
        raise Invalid("url: an http(s) URL", details=[{"field": "url"}])
    if await session.scalar(select(PlatformGateway.id).where(PlatformGateway.name == name)):
        raise Conflict(f"a platform gateway named {name!r} exists", details=[{"field": "name"}])
    credential = CREDENTIAL_PREFIX + secrets.token_urlsafe(32)
    gateway = PlatformGateway(
        name=name,
        url=url,
        credential_prefix=credential[:10],
        credential_hash=sha256_hex(credential),
    )
    session.add(gateway)
    await session.flush()
    return gateway, credential


async def named(session: AsyncSession, name: str) -> PlatformGateway:
    gateway = await session.scalar(select(PlatformGateway).where(PlatformGateway.name == name))
    if gateway is None:
        raise NotFound(f"no platform gateway named {name!r}", details=[{"field": "gateway"}])
    return gateway


async def first(session: AsyncSession) -> PlatformGateway | None:
    """The platform gateway new Free organisations are placed on: the one serving the
    fewest organisations (ties: the oldest)."""
    gateways = list(
        await session.scalars(select(PlatformGateway).order_by(PlatformGateway.created_at))
    )
    if not gateways:
        return None
    load = {g.id: 0 for g in gateways}
    for gateway_id in await session.scalars(select(PlatformPlacement.platform_gateway_id)):
        load[gateway_id] = load.get(gateway_id, 0) + 1
    return min(gateways, key=lambda g: load[g.id])


PLATFORM_MODE = "platform"  # a Gateway row that is an organisation's handle on a shared one


def _handle(organization_id: uuid.UUID, shared: PlatformGateway) -> Gateway:
    """The organisation's `Gateway` row standing for `shared`: deployments name it; its
    credential hash is of a random secret nobody holds, so nothing authenticates as it."""
    return Gateway(
        organization_id=organization_id,
        name=shared.name,
        environment="prod",
        url=shared.url,
        mode=PLATFORM_MODE,
        credential_prefix=CREDENTIAL_PREFIX + "shared",
        credential_hash=sha256_hex(secrets.token_urlsafe(32)),
    )


async def _placed(
    session: AsyncSession,
    organization_id: uuid.UUID,
    shared: PlatformGateway,
    actor: Actor,
    placement: PlatformPlacement | None,
) -> PlatformPlacement:
    taken = await session.scalar(
        select(Gateway).where(
            Gateway.organization_id == organization_id, Gateway.name == shared.name
        )
    )
    if taken is not None and taken.mode != PLATFORM_MODE:
        raise Conflict(
            f"the organisation has a gateway named {shared.name!r} of its own; rename it first",
            details=[{"field": "gateway"}],
        )
    handle = taken or _handle(organization_id, shared)
    handle.url = shared.url
    session.add(handle)
    await session.flush()
    if placement is None:
        placement = PlatformPlacement(
            organization_id=organization_id, platform_gateway_id=shared.id, gateway_id=handle.id
        )
        session.add(placement)
    else:
        placement.platform_gateway_id, placement.gateway_id = shared.id, handle.id
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "gateway.place_shared",
        "platform_gateway",
        shared.id,
        name=shared.name,
        gateway_id=str(handle.id),
    )
    return placement


async def place(
    session: AsyncSession, organization_id: uuid.UUID, gateway: PlatformGateway, actor: Actor
) -> PlatformPlacement:
    """Serve the session's organisation from `gateway` (replacing an earlier placement)."""
    placement = await session.scalar(select(PlatformPlacement))
    return await _placed(session, organization_id, gateway, actor, placement)


async def place_new(
    session: AsyncSession, organization_id: uuid.UUID, plan: Plan, actor: Actor
) -> PlatformGateway | None:
    """At sign-up (a SYSTEM session): a new organisation on a shared-gateway plan goes on
    the least-loaded platform gateway, when the operator registered one."""
    if not plan.shared_gateway:
        return None
    gateway = await first(session)
    if gateway is None:
        return None
    await _placed(session, organization_id, gateway, actor, None)
    return gateway


async def refuse_dedicated(session: AsyncSession, plan: Plan) -> None:
    """On a shared-gateway plan, an organisation the operator placed on a platform gateway
    registers no gateway of its own (402 naming the plan and the shared gateway)."""
    if not plan.shared_gateway:
        return
    shared = await placement_of(session)
    if shared is not None:
        raise QuotaExceeded(
            f"the {plan.title} plan's gateway is the shared platform gateway {shared.name!r}: "
            "this organisation registers no gateway of its own; upgrade the plan for a "
            "dedicated one",
            details=[{"field": "gateways", "limit": "gateways", "plan": plan.name, "allowed": 0}],
        )


async def placement_of(session: AsyncSession) -> PlatformGateway | None:
    """The platform gateway serving the session's organisation, if any."""
    gateway_id = await session.scalar(select(PlatformPlacement.platform_gateway_id))
    if gateway_id is None:
        return None
    gateway: PlatformGateway | None = await session.get(PlatformGateway, gateway_id)
    return gateway


async def authenticate(db: Database, token: str) -> PlatformIdentity:
    if not is_platform_credential(token) or len(token) > 128:
        raise Unauthenticated("not a platform gateway credential")
    async with db.session(SYSTEM) as session:
        gateway = await session.scalar(
            select(PlatformGateway).where(PlatformGateway.credential_hash == sha256_hex(token))
        )
        if gateway is None:
            raise Unauthenticated("unknown or revoked platform gateway credential")
        gateway.last_seen_at = utcnow()
        return PlatformIdentity(gateway.id, gateway.name)


async def served(db: Database, identity: PlatformIdentity) -> list[uuid.UUID]:
    """The organisations placed on this platform gateway, in a stable order."""
    async with db.session(SYSTEM) as session:
        rows = await session.scalars(
            select(PlatformPlacement.organization_id)
            .where(PlatformPlacement.platform_gateway_id == identity.gateway_id)
            .order_by(PlatformPlacement.organization_id)
        )
        return list(rows)


async def served_organization(db: Database, identity: PlatformIdentity, scope: str) -> uuid.UUID:
    """`scope` as an organisation this platform gateway serves; NotFound otherwise (an
    organisation it does not serve is none of its business, not even whether it exists)."""
    try:
        organization_id = uuid.UUID(scope)
    except ValueError:
        raise NotFound("no such bundle scope") from None
    if organization_id not in await served(db, identity):
        raise NotFound("no such bundle scope")
    return organization_id


async def check_served(
    db: Database, identity: PlatformIdentity, organizations: set[uuid.UUID]
) -> None:
    """Forbidden naming the first organisation in `organizations` this gateway does not serve."""
    foreign = sorted(organizations - set(await served(db, identity)), key=str)
    if foreign:
        raise Forbidden(
            f"platform gateway {identity.name} does not serve organization {foreign[0]}: "
            "its decisions are refused",
            details=[{"field": "organization", "message": "not served by this gateway"}],
        )


async def handle_of(
    db: Database, identity: PlatformIdentity, organization_id: uuid.UUID
) -> uuid.UUID:
    """The id of the organisation's handle on this platform gateway; Forbidden when the
    gateway does not serve it."""
    async with db.session(organization_id) as session:
        handle = await session.scalar(
            select(PlatformPlacement.gateway_id).where(
                PlatformPlacement.platform_gateway_id == identity.gateway_id
            )
        )
    if handle is None:
        raise Forbidden(
            f"platform gateway {identity.name} does not serve organization {organization_id}: "
            "its reports are refused",
            details=[{"field": "organization", "message": "not served by this gateway"}],
        )
    return handle


async def manifest(db: Database, identity: PlatformIdentity) -> dict[str, object]:
    """What the platform gateway's sidecars and gateways load: each served organisation,
    its newest bundle revision (None before its first publish) and the id of its handle
    on this gateway (the `Gateway` its deployments name)."""
    async with db.session(SYSTEM) as session:
        rows = list(
            await session.execute(
                select(PlatformPlacement.organization_id, PlatformPlacement.gateway_id)
                .where(PlatformPlacement.platform_gateway_id == identity.gateway_id)
                .order_by(PlatformPlacement.organization_id)
            )
        )
    organizations = []
    for organization_id, gateway_id in rows:
        revision = await newest_revision(db, organization_id)
        organizations.append(
            {
                "organization": str(organization_id),
                "revision": revision,
                "gateway_id": str(gateway_id),
            }
        )
    return {"gateway": identity.name, "organizations": organizations}


async def organization_named(session: AsyncSession, name_or_id: str) -> uuid.UUID:
    """An organisation by id or exact name (operator commands)."""
    try:
        return uuid.UUID(name_or_id)
    except ValueError:
        pass
    found = list(
        await session.scalars(select(Organization.id).where(Organization.name == name_or_id))
    )
    if len(found) != 1:
        why = "no organisation" if not found else f"{len(found)} organisations"
        raise Invalid(
            f"{why} named {name_or_id!r}; give the organisation's id",
            details=[{"field": "ORG"}],
        )
    return found[0]

"""Gateways, their credential (`kgw_…`, shown once, stored as SHA-256) and fleet status."""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete as sa_delete
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane import observability
from control_plane.db.base import utcnow
from control_plane.db.models import Deployment, Gateway, GatewayInstance
from control_plane.db.session import SYSTEM, Database
from control_plane.errors import Conflict, Forbidden, NotFound, Unauthenticated
from control_plane.services import (
    audit,
    deployments,
    notifications,
    platform_gateways,
    policies,
    usage,
)
from control_plane.services.audit import Actor
from control_plane.services.auth import sha256_hex
from control_plane.services.oauth import mcp_resource
from control_plane.services.pagination import paginate
from control_plane.services.plans import quotas, warnings
from policy.bundles.gateway_binding import binding_of_hash

CREDENTIAL_PREFIX = "kgw_"
# An instance that has not reported for this long is flagged stale.
STALE_AFTER = timedelta(seconds=60)


def new_credential() -> str:
    return CREDENTIAL_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True)
class GatewayIdentity:
    """A gateway (or its sidecar) authenticated by its credential."""

    gateway_id: uuid.UUID
    organization_id: uuid.UUID
    name: str

    @property
    def actor(self) -> Actor:
        return Actor("gateway", str(self.gateway_id), self.name, None, None)


async def mcp_resources(session: AsyncSession) -> dict[str, str]:
    """Each gateway's canonical MCP URL by binding, for the bundle (the session's tenant)."""
    rows = await session.execute(select(Gateway.credential_hash, Gateway.url))
    return {binding_of_hash(credential_hash): mcp_resource(url) for credential_hash, url in rows}


async def authenticate(db: Database, token: str) -> GatewayIdentity:
    if not token.startswith(CREDENTIAL_PREFIX) or len(token) > 128:
        raise Unauthenticated("not a gateway credential")
    async with db.session(SYSTEM) as session:
        gateway = await session.scalar(
            select(Gateway).where(Gateway.credential_hash == sha256_hex(token))
        )
        if gateway is None:
            raise Unauthenticated("unknown or revoked gateway credential")
        now = utcnow()
        if _should_mark_seen(gateway.id, gateway.last_seen_at, now):
            gateway.last_seen_at = now
        observability.gateway_seen(str(gateway.organization_id), gateway.name)
        return GatewayIdentity(gateway.id, gateway.organization_id, gateway.name)


# When this process last wrote each gateway's `last_seen_at`. A publish wakes every sidecar
# of a gateway at once; without this, each of their requests would update the same row and
# queue on its lock. With it, one request per process per interval writes.
_SEEN_WRITTEN: dict[uuid.UUID, float] = {}
_SEEN_INTERVAL = 5.0


def _should_mark_seen(gateway_id: uuid.UUID, last_seen: datetime | None, now: datetime) -> bool:
    if last_seen is not None and now - last_seen <= timedelta(seconds=_SEEN_INTERVAL):
        return False
    tick = time.monotonic()
    if tick - _SEEN_WRITTEN.get(gateway_id, -_SEEN_INTERVAL) < _SEEN_INTERVAL:
        return False
    if len(_SEEN_WRITTEN) > 10_000:
        _SEEN_WRITTEN.clear()
    _SEEN_WRITTEN[gateway_id] = tick
    return True


async def _gateway(session: AsyncSession, gateway_id: uuid.UUID) -> Gateway:
    gateway = await session.get(Gateway, gateway_id)
    if gateway is None:
        raise NotFound("no such gateway")
    return gateway


def _own(gateway: Gateway, doing: str) -> None:
    """The handle on a shared platform gateway (ADR 0012) is the operator's to run: no
    credential of the organisation's to rotate, nothing of its own to delete."""
    if gateway.mode == platform_gateways.PLATFORM_MODE:
        raise Forbidden(
            f"gateway {gateway.name} is the operator's shared gateway: you cannot {doing} it "
            "(the operator removes the placement)",
            details=[{"field": "gateway_id"}],
        )


async def create(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    name: str,
    environment: str,
    url: str,
    mode: str,
) -> tuple[Gateway, str]:
    if await session.scalar(select(Gateway.id).where(Gateway.name == name)):
        raise Conflict(f"a gateway named {name!r} exists", details=[{"field": "name"}])
    await quotas.ensure_room(session, organization_id, "gateways")
    await platform_gateways.refuse_dedicated(session, (await quotas.plan_of(session)).plan)
    credential = new_credential()
    gateway = Gateway(
        name=name,
        environment=environment,
        url=url,
        mode=mode,
        credential_prefix=credential[:10],
        credential_hash=sha256_hex(credential),
    )
    session.add(gateway)
    await session.flush()
    await audit.record(
        session,
        organization_id,
        actor,
        "gateway.create",
        "gateway",
        gateway.id,
        name=name,
        environment=environment,
        url=url,
        mode=mode,
    )
    return gateway, credential


async def list_gateways(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[Gateway], str | None]:
    rows, next_cursor = await paginate(session, select(Gateway), Gateway, cursor, limit)
    return list(rows), next_cursor


async def get(session: AsyncSession, gateway_id: uuid.UUID) -> Gateway:
    return await _gateway(session, gateway_id)


async def rotate_credential(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, gateway_id: uuid.UUID
) -> tuple[Gateway, str]:
    gateway = await _gateway(session, gateway_id)
    _own(gateway, "rotate the credential of")
    credential = new_credential()
    gateway.credential_prefix, gateway.credential_hash = credential[:10], sha256_hex(credential)
    await audit.record(
        session, organization_id, actor, "gateway.rotate_credential", "gateway", gateway.id
    )
    return gateway, credential


async def delete(
    session: AsyncSession, organization_id: uuid.UUID, actor: Actor, gateway_id: uuid.UUID
) -> int:
    """Delete the gateway and its deployments; how many deployments went with it (the
    caller re-signs the bundle when any did, so no entry names a gateway that is gone)."""
    gateway = await _gateway(session, gateway_id)
    _own(gateway, "delete")
    deployed = await session.scalar(
        select(func.count()).select_from(Deployment).where(Deployment.gateway_id == gateway_id)
    )
    await session.execute(sa_delete(Deployment).where(Deployment.gateway_id == gateway_id))
    await session.delete(gateway)
    await audit.record(
        session,
        organization_id,
        actor,
        "gateway.delete",
        "gateway",
        gateway_id,
        name=gateway.name,
        deployments=int(deployed or 0),
    )
    return int(deployed or 0)


async def instances(session: AsyncSession, gateway_id: uuid.UUID) -> list[GatewayInstance]:
    rows = await session.scalars(
        select(GatewayInstance)
        .where(GatewayInstance.gateway_id == gateway_id)
        .order_by(GatewayInstance.instance)
    )
    return list(rows)


@dataclass(frozen=True)
class GatewayDetail:
    """A gateway with its reporting instances, what is deployed to it, and the current
    bundle revision the instances are compared with (None before the first publish)."""

    gateway: Gateway
    instances: list[GatewayInstance]
    deployments: list[Deployment]
    current_revision: int | None


async def detail(session: AsyncSession, gateway_id: uuid.UUID) -> GatewayDetail:
    gateway = await _gateway(session, gateway_id)
    current = await policies.current_revision(session)
    return GatewayDetail(
        gateway,
        await instances(session, gateway_id),
        await deployments.for_gateway(session, gateway_id),
        current.revision if current else None,
    )


def is_stale(instance: GatewayInstance, current_revision: int | None, now: datetime) -> bool:
    """Silent for too long, or serving an older bundle than the current one."""
    if now - instance.reported_at > STALE_AFTER:
        return True
    return current_revision is not None and (instance.bundle_revision or 0) < current_revision


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else None


async def report_status(
    session: AsyncSession, identity: GatewayIdentity, report: dict[str, Any]
) -> None:
    """Upsert the reporting instance's row (one per gateway and instance name)."""
    name = str(report["instance"])
    row = await session.scalar(
        select(GatewayInstance).where(
            GatewayInstance.gateway_id == identity.gateway_id, GatewayInstance.instance == name
        )
    )
    if row is None:
        row = GatewayInstance(gateway_id=identity.gateway_id, instance=name)
        session.add(row)
    row.bundle_revision = report.get("bundle_revision")
    row.key_id = report.get("key_id")
    row.last_sync = _time(report.get("last_sync"))
    row.started_at = _time(report.get("started_at"))
    row.decisions = dict(report.get("decisions") or {})
    row.log_backlog = int(report.get("log_backlog") or 0)
    row.reported_at = utcnow()
    await usage.record(
        session, identity.organization_id, identity.gateway_id, report.get("budgets") or []
    )
    await warnings.check_report(session, identity.organization_id, report.get("budgets") or [])
    await notifications.bundle_verification_report(session, identity, report)

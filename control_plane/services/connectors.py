"""Data connectors: a name, a type, versioned connection settings and a write-only password
(for an object store, its secret key: the S3 secret access key, the Azure account key).

A changed set of settings is the next version (unchanged ones stay, like agents); the
password lives in the secret store as `connectors/<name>/password` (written in the same
transaction, never returned, never in an audit event or a version). The host (an object
store's endpoint URL) is the tenant's word: it passes the outbound guard when saved (422
naming `settings.host`, `settings.endpoint_url` or `settings.account_url`) and
again on every connection (`policy.connectors.network`). Every change is audited.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from control_plane.db.base import utcnow
from control_plane.db.models import BundleRevision, Connector, ConnectorVersion, Workload
from control_plane.errors import Conflict, Invalid, NotFound
from control_plane.services import audit, deployments, policies, workloads
from control_plane.services.audit import Actor
from control_plane.services.keys import KeyRing
from control_plane.services.pagination import paginate
from control_plane.services.secrets import SecretStore
from policy.connectors import TYPES, ConnectorError, test_connection
from policy.connectors.objects import ObjectStoreSettings
from policy.connectors.registry import Settings, endpoint_url, settings_from_dict
from policy.net.outbound import OutboundGuard, OutboundRefused


@dataclass(frozen=True)
class ConnectorView:
    """A connector as the API shows it: its latest settings and the agents naming it."""

    connector: Connector
    settings: dict[str, Any]
    agents: list[str]


@dataclass(frozen=True)
class Updated:
    """An updated connector and the bundle revision re-signed for it, if any."""

    view: ConnectorView
    revision: BundleRevision | None


def password_name(name: str) -> str:
    return f"connectors/{name}/password"


def connection_settings(kind: str, raw: dict[str, Any]) -> Settings:
    """The stored form of API settings: a database type's default port filled in, all
    validated for the connector's type."""
    values = {k: v for k, v in raw.items() if v is not None}
    if kind in TYPES:
        values.setdefault("port", TYPES[kind].default_port)
    try:
        return settings_from_dict({"type": kind, **values})
    except ValueError as error:
        raise Invalid(str(error), details=[{"field": "settings", "message": str(error)}]) from None


async def check_host(guard: OutboundGuard, settings: Settings) -> None:
    """Refuse a host (an object store: its endpoint) the platform would not contact (a name
    that does not resolve yet is accepted: every connection is checked again)."""
    field = "settings.host"
    if isinstance(settings, ObjectStoreSettings):
        field = f"settings.{settings.ENDPOINT_FIELD}"
    try:
        await guard.check(endpoint_url(settings), allow_unresolved=True)
    except OutboundRefused as refused:
        raise Invalid(
            f"{field}: {refused.message}",
            details=[{"field": field, "message": refused.message}],
        ) from None


async def _connector(session: AsyncSession, connector_id: uuid.UUID) -> Connector:
    connector = await session.get(Connector, connector_id)
    if connector is None:
        raise NotFound("no such connector")
    return connector


async def latest(session: AsyncSession, connector: Connector) -> ConnectorVersion:
    row = await session.scalar(
        select(ConnectorVersion).where(
            ConnectorVersion.connector_id == connector.id,
            ConnectorVersion.version == connector.latest_version,
        )
    )
    assert row is not None, "a connector always has its latest version"
    return row


async def create(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    *,
    name: str,
    kind: str,
    settings: dict[str, Any],
    password: str | None,
    guard: OutboundGuard,
) -> ConnectorView:
    stored = connection_settings(kind, settings)
    await check_host(guard, stored)
    if await session.scalar(select(Connector.id).where(Connector.name == name)) is not None:
        raise Invalid(
            f"name: a connector named {name!r} exists",
            details=[{"field": "name", "message": "already exists"}],
        )
    now = utcnow()
    connector = Connector(
        name=name,
        type=kind,
        latest_version=1,
        credential_updated_at=now if password else None,
        updated_at=now,
    )
    session.add(connector)
    await session.flush()
    session.add(
        ConnectorVersion(
            connector_id=connector.id,
            version=1,
            settings=stored.to_dict(),
            created_by=actor.label,
        )
    )
    if password:
        await store.put(organization_id, password_name(name), password, session=session)
    await audit.record(
        session,
        organization_id,
        actor,
        "connector.create",
        "connector",
        connector.id,
        name=name,
        type=kind,
        host=stored.host if not isinstance(stored, ObjectStoreSettings) else stored.endpoint,
        read_only=stored.read_only,
        credential=bool(password),
    )
    return await _view(session, connector)


async def in_bundle(session: AsyncSession, name: str) -> bool:
    """Whether a deployed agent names the connector (its settings then ride in the bundle)."""
    agents, _pipelines = await deployments.bundle_entries(session)
    return name in named_by(agents)


async def update(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    connector_id: uuid.UUID,
    *,
    settings: dict[str, Any] | None,
    password: str | None,
    guard: OutboundGuard,
    keys: KeyRing,
    issuer: str,
) -> Updated:
    """New settings are the next version (unchanged ones keep it); a password replaces the
    stored one. When a deployed agent names the connector and its version changed, the
    published bundle is re-signed with the new settings in the same transaction."""
    connector = await _connector(session, connector_id)
    before = connector.latest_version
    changed: dict[str, Any] = {}
    if settings is not None:
        stored = connection_settings(connector.type, settings)
        await check_host(guard, stored)
        current = await latest(session, connector)
        if stored.to_dict() != current.settings:
            connector.latest_version += 1
            session.add(
                ConnectorVersion(
                    connector_id=connector.id,
                    version=connector.latest_version,
                    settings=stored.to_dict(),
                    created_by=actor.label,
                )
            )
            changed["version"] = connector.latest_version
            changed["host"] = (
                stored.endpoint if isinstance(stored, ObjectStoreSettings) else stored.host
            )
            changed["read_only"] = stored.read_only
    if password:
        await store.put(organization_id, password_name(connector.name), password, session=session)
        connector.credential_updated_at = utcnow()
        changed["credential"] = "replaced"
    if changed:
        connector.updated_at = utcnow()
        await audit.record(
            session,
            organization_id,
            actor,
            "connector.update",
            "connector",
            connector.id,
            name=connector.name,
            **changed,
        )
    view = await _view(session, connector)
    revision = None
    if connector.latest_version != before and await in_bundle(session, connector.name):
        revision = await policies.refresh(
            session,
            organization_id,
            actor,
            keys,
            why=f"connector {connector.name} v{connector.latest_version}",
            issuer=issuer,
        )
    return Updated(view, revision)


async def list_connectors(
    session: AsyncSession, cursor: str | None, limit: int
) -> tuple[list[ConnectorView], str | None]:
    rows, next_cursor = await paginate(session, select(Connector), Connector, cursor, limit)
    settings = await _latest_settings(session, rows)
    agents = await agents_naming(session)
    views = [ConnectorView(c, settings[c.id], agents.get(c.name, [])) for c in rows]
    return views, next_cursor


async def _latest_settings(
    session: AsyncSession, connectors: Sequence[Connector]
) -> dict[uuid.UUID, dict[str, Any]]:
    if not connectors:
        return {}
    rows = await session.execute(
        select(
            ConnectorVersion.connector_id, ConnectorVersion.version, ConnectorVersion.settings
        ).where(ConnectorVersion.connector_id.in_([c.id for c in connectors]))
    )
    wanted = {c.id: c.latest_version for c in connectors}
    return {cid: s for cid, version, s in rows if wanted[cid] == version}


async def _view(session: AsyncSession, connector: Connector) -> ConnectorView:
    row = await latest(session, connector)
    agents = await agents_naming(session)
    return ConnectorView(connector, row.settings, agents.get(connector.name, []))


async def get(session: AsyncSession, connector_id: uuid.UUID) -> ConnectorView:
    return await _view(session, await _connector(session, connector_id))


async def versions(session: AsyncSession, connector_id: uuid.UUID) -> Sequence[ConnectorVersion]:
    connector = await _connector(session, connector_id)
    rows = await session.scalars(
        select(ConnectorVersion)
        .where(ConnectorVersion.connector_id == connector.id)
        .order_by(ConnectorVersion.version)
    )
    return rows.all()


async def get_version(
    session: AsyncSession, connector_id: uuid.UUID, version: int
) -> ConnectorVersion:
    connector = await _connector(session, connector_id)
    row = await session.scalar(
        select(ConnectorVersion).where(
            ConnectorVersion.connector_id == connector.id, ConnectorVersion.version == version
        )
    )
    if row is None:
        raise NotFound(f"connector {connector.name} has no version {version}")
    return row


async def delete(
    session: AsyncSession,
    store: SecretStore,
    organization_id: uuid.UUID,
    actor: Actor,
    connector_id: uuid.UUID,
) -> None:
    connector = await _connector(session, connector_id)
    agents, _pipelines = await deployments.bundle_entries(session)
    users = named_by(agents).get(connector.name)
    if users:
        raise Conflict(
            f"connector {connector.name} is named by deployed agents ({', '.join(users)}); "
            "undeploy them first"
        )
    await session.delete(connector)
    await store.delete(organization_id, password_name(connector.name), session=session)
    await audit.record(
        session,
        organization_id,
        actor,
        "connector.delete",
        "connector",
        connector_id,
        name=connector.name,
    )


@dataclass(frozen=True)
class Prepared:
    """What a connection test needs, read in one transaction and used outside any."""

    connector_id: uuid.UUID
    name: str
    settings: Settings
    password: str | None


async def prepare_test(
    session: AsyncSession, store: SecretStore, organization_id: uuid.UUID, connector_id: uuid.UUID
) -> Prepared:
    connector = await _connector(session, connector_id)
    row = await latest(session, connector)
    password = None
    if connector.credential_updated_at is not None:
        try:
            password = await store.get(
                organization_id, password_name(connector.name), session=session
            )
        except NotFound:
            password = None
    settings = settings_from_dict(dict(row.settings))
    return Prepared(connector.id, connector.name, settings, password)


@dataclass(frozen=True)
class TestOutcome:
    ok: bool
    code: str | None
    message: str
    server_version: str | None = None


async def run_test(prepared: Prepared, guard: OutboundGuard) -> TestOutcome:
    """Connect and authenticate with the stored password; the error says what failed."""
    try:
        version = await test_connection(prepared.settings, prepared.password, guard)
    except ConnectorError as error:
        return TestOutcome(False, error.code, error.message)
    return TestOutcome(True, None, "connected and authenticated", version)


async def record_test(
    session: AsyncSession,
    organization_id: uuid.UUID,
    actor: Actor,
    prepared: Prepared,
    outcome: TestOutcome,
) -> None:
    await audit.record(
        session,
        organization_id,
        actor,
        "connector.test",
        "connector",
        prepared.connector_id,
        name=prepared.name,
        ok=outcome.ok,
        code=outcome.code,
    )


def named_by(agents: Mapping[str, Mapping[str, Any]]) -> dict[str, list[str]]:
    """connector name → the agents (stored configs) whose tools name it."""
    out: dict[str, list[str]] = {}
    for agent, config in sorted(agents.items()):
        for tool in (config.get("spec") or {}).get("tools") or []:
            if isinstance(tool, Mapping) and isinstance(tool.get("connector"), Mapping):
                out.setdefault(str(tool["connector"].get("name")), []).append(agent)
    return out


async def agents_naming(session: AsyncSession) -> dict[str, list[str]]:
    """connector name → the agents whose latest config names it (deployed or not)."""
    rows = list(await session.scalars(select(Workload).where(Workload.kind == "agent")))
    configs = await workloads.latest_configs(session, rows)
    return named_by({w.name: configs[w.id] for w in rows if w.id in configs})


async def bundle_entries(
    session: AsyncSession, agents: Mapping[str, Mapping[str, Any]]
) -> dict[str, dict[str, Any]]:
    """`kaizen.connectors` for the bundle: the latest settings of each connector a deployed
    agent names (no password: gateways read it at run time). A name without a connector is
    left out; the gateway then refuses the call saying so."""
    names = sorted(named_by(agents))
    if not names:
        return {}
    rows = await session.execute(
        select(Connector.name, ConnectorVersion.settings)
        .join(
            ConnectorVersion,
            (ConnectorVersion.connector_id == Connector.id)
            & (ConnectorVersion.version == Connector.latest_version),
        )
        .where(Connector.name.in_(names))
    )
    return {name: dict(settings) for name, settings in rows}
